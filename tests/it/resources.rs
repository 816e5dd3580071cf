//! Resource limits and the disk quota: limits applied at create and changed in place (read back
//! from the engine), an exceeded memory limit is an out-of-memory exit, the quota's warning and
//! refusals.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

fn custom_game(d: &Daemon, change: impl FnOnce(&mut Value)) -> String {
    let game = unique("g");
    let mut plan = game_plan(&game, &[&[free_port()]]);
    change(&mut plan);
    d.add_plan(&game, &plan);
    game
}

async fn engine_limits(d: &Daemon, uid: &str) -> (peon::runtime::Limits, Option<String>) {
    let c = d
        .engine
        .inspect(&format!("peon.warcamp.{uid}"))
        .await
        .unwrap()
        .expect("the container exists");
    (c.limits, c.started_at)
}

#[tokio::test]
async fn limits_at_create_changed_in_place_and_kept_by_a_rebuilt_container() {
    let d = Daemon::start().await;
    let game = custom_game(&d, |p| p["limits"] = json!({"memory": "64m", "pids": 100}));
    let uid = format!("{game}.lim");
    // The plan's memory, the server's own cpus and pids.
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "L", "limits": {"cpus": 0.5, "pids": 64}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["limits"],
        json!({"memory_bytes": 64 << 20, "cpus": 0.5, "pids": 64})
    );
    let (l, started) = engine_limits(&d, &uid).await;
    assert_eq!(l.memory_bytes, Some(64 << 20));
    assert_eq!(l.nano_cpus, Some(500_000_000));
    assert_eq!(l.pids, Some(64));

    // Changed in place: the same run goes on.
    let (s, v) = d
        .put(
            &format!("/server/limits/{uid}"),
            json!({"memory": "96m", "cpus": "1.25", "pids": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["limits"],
        json!({"memory_bytes": 96 << 20, "cpus": 1.25, "pids": 100})
    );
    let (l, started_after) = engine_limits(&d, &uid).await;
    assert_eq!(l.memory_bytes, Some(96 << 20));
    assert_eq!(l.nano_cpus, Some(1_250_000_000));
    assert_eq!(l.pids, Some(100), "null puts the plan's back");
    assert_eq!(started, started_after, "no restart");
    assert_eq!(v["server_state"], "running");

    // Stats report use against the limits.
    let (s, st) = d.get(&format!("/server/stats/{uid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(st["memory_limit_percent"].as_f64().is_some(), "{st}");
    assert!(st["cpu_limit_percent"].as_f64().is_some(), "{st}");
    assert!(st["pids_limit_percent"].as_f64().is_some(), "{st}");

    // Bad input names the key.
    let (s, v) = d
        .put(&format!("/server/limits/{uid}"), json!({"memory": "1k"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["info"].as_str().unwrap().contains("memory"), "{v}");

    // A rebuilt container (update) keeps them: they are in .peon.json.
    let (s, v) = d
        .put(&format!("/server/update/{uid}"), json!({"mode": "server"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (l, _) = engine_limits(&d, &uid).await;
    assert_eq!(l.memory_bytes, Some(96 << 20));
    assert_eq!(l.nano_cpus, Some(1_250_000_000));
    let state: Value =
        serde_json::from_slice(&std::fs::read(d.server_dir(&uid).join(".peon.json")).unwrap())
            .unwrap();
    assert_eq!(state["limits"]["memory_bytes"], 96 << 20, "{state}");
    d.cleanup().await;
}

#[tokio::test]
async fn a_memory_limit_lowered_in_place_that_the_game_exceeds_is_an_out_of_memory_exit() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.oom");
    d.create_running(&uid).await;
    let (l, _) = engine_limits(&d, &uid).await;
    assert_eq!(l.memory_bytes, None);
    let (s, v) = d
        .put(&format!("/server/limits/{uid}"), json!({"memory": "32m"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut ev = Events::open(&d, Some(&uid)).await;
    let (s, _) = d
        .post(&format!("/server/command/{uid}"), json!({"command": "oom"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let e = ev
        .wait(LONG, "the out-of-memory exit", |e| e["type"] == "exit")
        .await;
    assert_eq!(e["exit"]["class"], "out_of_memory", "{e}");
    d.cleanup().await;
}

#[tokio::test]
async fn the_disk_quota_warns_at_90_percent_and_refuses_start_update_and_backup_over_it() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.disk");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "D", "limits": {"disk": "4m"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let user = d.server_dir(&uid).join("user");
    let mut ev = Events::open(&d, Some(&uid)).await;

    // 3.7 MiB of 4 (92 %): a warning, and the restart goes ahead.
    std::fs::write(user.join("big"), vec![7u8; 3_870_000]).unwrap();
    let (s, v) = d.put(&format!("/server/restart/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = ev
        .wait(LONG, "the quota warning", |e| e["type"] == "quota")
        .await;
    assert_eq!(e["quota_bytes"], 4 << 20, "{e}");
    assert!(e["used_bytes"].as_u64().unwrap() >= 3_870_000, "{e}");
    assert!(e["percent"].as_f64().unwrap() >= 90.0, "{e}");

    // Over it: start and update are refused with the use and the quota named.
    std::fs::write(user.join("big2"), vec![7u8; 1_000_000]).unwrap();
    let (s, _) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["err_code"], "srv.quota", "{v}");
    let info = v["info"].as_str().unwrap();
    assert!(
        info.contains("4.0 MiB") && info.contains("4194304"),
        "{info}"
    );
    let (s, v) = d
        .put(&format!("/server/update/{uid}"), json!({"mode": "server"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["err_code"], "srv.quota", "{v}");
    let (s, v) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "a backup too: {v}");
    assert_eq!(v["err_code"], "srv.quota", "{v}");

    // The use is in the server object and the capacity, from the last measure.
    let v = d
        .wait_server(&uid, LONG, |v| {
            v["disk_bytes"].as_u64().is_some_and(|b| b > 4_700_000)
        })
        .await;
    assert_eq!(v["limits"]["disk_bytes"], 4 << 20);
    let (s, c) = d.get("/capacity").await;
    assert_eq!(s, StatusCode::OK);
    let mine = c["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["uid"] == uid.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["quota_bytes"], 4 << 20, "{mine}");
    assert!(mine["bytes"].as_u64().unwrap() > 4_700_000, "{mine}");

    // Raised, the start goes.
    let (s, v) = d
        .put(&format!("/server/limits/{uid}"), json!({"disk": "10m"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    d.cleanup().await;
}
