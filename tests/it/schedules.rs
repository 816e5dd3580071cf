//! Timers and schedules against the real engine: PEON stop timers, cron schedules, firing
//! records, persistence across a daemon restart, and input errors.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Daemon, wait_for};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The schedules view of a server.
async fn schedules(d: &Daemon, uid: &str) -> Value {
    let (s, v) = d.get(&format!("/server/schedules/{uid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// Waits until `uid` has at least `n` firing records; returns them (newest first).
async fn wait_results(d: &Daemon, uid: &str, n: usize, within: Duration) -> Vec<Value> {
    wait_for(within, &format!("{n} firings of {uid}"), || async {
        let v = schedules(d, uid).await;
        let r = v["results"].as_array().cloned().unwrap_or_default();
        (r.len() >= n).then_some(r)
    })
    .await
}

/// Seconds from `due` to when the container last finished, from the engine's own record.
async fn stopped_after_due(d: &Daemon, uid: &str, due: i64) -> f64 {
    let c = d
        .engine
        .inspect(&format!("peon.warcamp.{uid}"))
        .await
        .unwrap()
        .expect("container");
    let finished = chrono::DateTime::parse_from_rfc3339(c.finished_at.as_deref().unwrap())
        .unwrap()
        .timestamp_millis();
    (finished - due * 1000) as f64 / 1000.0
}

#[tokio::test]
async fn start_with_interval_stops_the_container_on_time() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.timer");
    d.create_running(&uid).await;

    let (s, v) = d
        .put(&format!("/server/start/{uid}"), json!({"interval": "3s"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let due = v["time"]
        .as_i64()
        .expect("time is the due Unix second, an int");
    assert!((now() + 1..=now() + 4).contains(&due), "{v}");
    let listed = schedules(&d, &uid).await;
    assert_eq!(listed["schedules"][0]["source"], "timer", "{listed}");
    assert_eq!(listed["schedules"][0]["next"], due);

    d.wait_server(&uid, Duration::from_secs(15), |v| {
        v["container_state"] == "exited"
    })
    .await;
    // Measured after the fact: the engine's finish time and the scheduler's record.
    let late = stopped_after_due(&d, &uid, due).await;
    let r = wait_results(&d, &uid, 1, Duration::from_secs(5)).await;
    let fired_ms = r[0]["delay_ms"].as_i64().unwrap();
    println!("stop timer: fired {fired_ms} ms after due, container stopped {late:.3} s after due");
    assert_eq!(r[0]["outcome"], "done", "{r:?}");
    assert_eq!(r[0]["action"], "stop");
    assert!(late >= 0.0, "stopped {late} s before it was due");
    assert!(late <= 2.0, "stopped {late} s after due, more than 2 s");
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["time"], Value::Null, "a fired timer is gone: {v}");
}

#[tokio::test]
async fn manual_stop_cancels_the_timer_and_epoch_time_is_shown_as_given() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.cancel");
    d.create_running(&uid).await;

    // A timed stop keeps the server running and shows the time as the client gave it.
    let later = (now() + 3600).to_string();
    let (s, v) = d
        .put(&format!("/server/stop/{uid}"), json!({"epoch_time": later}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running");
    assert_eq!(v["time"], later.as_str());

    // Start with a timer replaces the pending stop.
    let (s, v) = d
        .put(&format!("/server/start/{uid}"), json!({"interval": "3s"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let due = v["time"].as_i64().expect("int time");
    assert_eq!(
        schedules(&d, &uid).await["schedules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A manual stop removes it; a start without a timer sets none.
    let (s, v) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["time"], Value::Null);
    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["time"], Value::Null);
    assert!(
        schedules(&d, &uid).await["schedules"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Past the old due time (plus the 2 s it may take), the server still runs, unfired.
    wait_for(
        Duration::from_secs(15),
        "the old due time to pass",
        || async {
            let (_, v) = d.get(&format!("/server/get/{uid}")).await;
            assert_eq!(
                v["container_state"], "running",
                "the cancelled timer fired: {v}"
            );
            (now() > due + 2).then_some(())
        },
    )
    .await;
    assert!(
        schedules(&d, &uid).await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn recurring_restart_fires_repeatedly_until_deleted() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.cron");
    d.create_running(&uid).await;

    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "restart", "cron": "*/3 * * * * *"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["cron"], "*/3 * * * * *");
    let (_, all) = d.get("/schedules").await;
    assert!(
        all["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "{all}"
    );

    let r = wait_results(&d, &uid, 2, Duration::from_secs(20)).await;
    for x in &r[..2] {
        assert_eq!(x["outcome"], "done", "{r:?}");
        assert_eq!(x["schedule_id"], id.as_str());
        println!("cron restart fired {} ms after due", x["delay_ms"]);
    }
    assert_ne!(r[0]["due"], r[1]["due"], "two distinct occurrences");

    let (s, v) = d
        .delete(&format!("/server/schedules/{uid}/{id}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        schedules(&d, &uid).await["schedules"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (s, _) = d
        .delete(&format!("/server/schedules/{uid}/{id}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn recurring_start_is_done_then_recorded_as_noop() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.noop");
    d.create_running(&uid).await;
    let (s, v) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "start", "cron": "*/2 * * * * *"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = wait_results(&d, &uid, 2, Duration::from_secs(20)).await;
    // Newest first: the first firing started the server, the next found it running.
    let last = r.len() - 1;
    assert_eq!(r[last]["outcome"], "done", "{r:?}");
    assert_eq!(r[last - 1]["outcome"], "noop", "{r:?}");
    assert_eq!(r[last - 1]["state"], "running", "{r:?}");

    // Destroy removes every schedule of the server and its records.
    let (s, v) = d.delete(&format!("/server/destroy/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = schedules(&d, &uid).await;
    assert!(v["schedules"].as_array().unwrap().is_empty(), "{v}");
    let (_, all) = d.get("/schedules").await;
    assert!(all["schedules"].as_array().unwrap().is_empty(), "{all}");
}

#[tokio::test]
async fn daemon_restart_keeps_timers_and_fires_a_missed_stop_once() {
    let mut d = Daemon::start().await;
    let (game, _) = d.new_game(2);
    let (a, b) = (format!("{game}.missed"), format!("{game}.later"));
    d.create_running(&a).await;
    d.create_running(&b).await;
    let (s, v) = d
        .put(&format!("/server/start/{a}"), json!({"interval": "2s"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let due = v["time"].as_i64().unwrap();
    let later = (now() + 3600).to_string();
    let (s, v) = d
        .put(&format!("/server/stop/{b}"), json!({"epoch_time": later}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    d.stop().await;
    // The stop of `a` falls due while the daemon is down; its container keeps running.
    wait_for(Duration::from_secs(10), "the due time to pass", || async {
        (now() > due + 1).then_some(())
    })
    .await;
    let name = format!("peon.warcamp.{a}");
    assert!(d.engine.inspect(&name).await.unwrap().unwrap().running);

    d.restart().await;
    d.wait_server(&a, Duration::from_secs(30), |v| {
        v["container_state"] == "exited"
    })
    .await;
    let r = wait_results(&d, &a, 1, Duration::from_secs(5)).await;
    assert_eq!(r.len(), 1, "fired once: {r:?}");
    assert_eq!(r[0]["outcome"], "done");
    assert_eq!(r[0]["due"], due);
    // The pending timer of `b` survived, shown as given.
    let (_, v) = d.get(&format!("/server/get/{b}")).await;
    assert_eq!(v["time"], later.as_str(), "{v}");
    assert_eq!(v["container_state"], "running");

    // Another restart fires nothing again.
    d.restart().await;
    let (_, v) = d.get(&format!("/server/get/{a}")).await;
    assert_eq!(v["time"], Value::Null);
    let r = schedules(&d, &a).await["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(r.len(), 1, "{r:?}");
}

#[tokio::test]
async fn bad_times_and_schedules_are_400s_that_say_what_is_accepted() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.bad");
    // Create-with-start takes a timer too.
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "Test", "interval": "1h"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let due = v["time"].as_i64().expect("int time");
    assert!((now() + 3590..=now() + 3600).contains(&due), "{v}");

    let start = format!("/server/start/{uid}");
    for (body, says) in [
        (json!({"interval": "90"}), "interval"),
        (json!({"interval": "abc"}), "interval"),
        (json!({"interval": 5}), "interval"),
        (json!({"epoch_time": "12345"}), "epoch_time"),
        (json!({"epoch_time": "1600000000"}), "past"),
        (json!({"epoch_time": 1.5}), "epoch_time"),
    ] {
        let (s, v) = d.put(&start, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let info = v["info"].as_str().unwrap();
        assert!(info.contains(says), "{body}: {info}");
    }
    let (s, v) = d
        .put(
            &format!("/server/stop/{uid}"),
            json!({"epoch_time": "soon"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let path = format!("/server/schedules/{uid}");
    for (body, says) in [
        (json!({"action": "stop", "cron": "61 * * * *"}), "cron"),
        (json!({"action": "stop", "cron": "* * *"}), "cron"),
        (json!({"action": "stop", "cron": 5}), "cron"),
        (json!({"action": "explode", "cron": "* * * * *"}), "action"),
        (json!({"cron": "* * * * *"}), "action"),
        (json!({"action": "stop"}), "cron or at"),
        (json!({"action": "stop", "at": "tomorrow"}), "RFC 3339"),
        (json!({"action": "stop", "at": 1_000_000_000}), "past"),
        (
            json!({"action": "stop", "at": 1_900_000_000, "cron": "* * * * *"}),
            "not both",
        ),
    ] {
        let (s, v) = d.post(&path, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        let info = v["info"].as_str().unwrap();
        assert!(info.contains(says), "{body}: {info}");
    }
    // Nothing was added: only the timer from the create is there.
    let v = schedules(&d, &uid).await;
    let list = v["schedules"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(
        (&list[0]["source"], &list[0]["next"]),
        (&json!("timer"), &json!(due))
    );

    // `at` in RFC 3339 works; an unknown server is a 404.
    let (s, v) = d
        .post(
            &path,
            json!({"action": "stop", "at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["at"], 4_070_908_800_i64);
    let (s, _) = d.get(&format!("/server/schedules/{game}.nobody")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = d
        .post(
            &format!("/server/schedules/{game}.nobody"),
            json!({"action": "stop", "cron": "* * * * *"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = d
        .delete(&format!("/server/schedules/{uid}/s000000000000"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
