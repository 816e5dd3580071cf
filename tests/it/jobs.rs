//! Jobs against the real engine: every action is recorded with its steps and who asked,
//! `?wait=false` answers 202 with the job, failures are recorded, the history survives a
//! daemon restart, and jobs appear on the event stream.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Daemon, Events, wait_for};

fn step_names(job: &Value) -> Vec<String> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends `method path?wait=false`; asserts 202 and returns the job id and its Location.
async fn no_wait(d: &Daemon, method: reqwest::Method, path: &str, body: Value) -> (String, String) {
    let res = d
        .http
        .request(method, format!("{}{path}?wait=false", d.base))
        .header("X-Api-Key", &d.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{path}");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "accepted", "{v}");
    let id = v["job_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/job/{id}"));
    (id, location)
}

/// Polls `GET /job/<id>` until it ended.
async fn job_done(d: &Daemon, id: &str) -> Value {
    wait_for(Duration::from_secs(60), "the job to end", || async {
        let (s, v) = d.get(&format!("/job/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        matches!(v["state"].as_str(), Some("succeeded" | "failed")).then_some(v)
    })
    .await
}

#[tokio::test]
async fn every_action_is_a_job_with_steps_and_requester() {
    let d = Daemon::start().await;
    let mut events = Events::open(&d, None).await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.jobs");
    d.create_running(&uid).await;
    let e = events
        .wait(Duration::from_secs(30), "the create job's end", |e| {
            e["type"] == "job" && e["job"]["kind"] == "create" && e["job"]["state"] == "succeeded"
        })
        .await;
    assert_eq!(e["uid"], uid.as_str(), "{e}");
    assert_eq!(e["job"]["requester"], "admin", "{e}");

    for (m, path, body) in [
        ("PUT", "stop", json!({})),
        ("PUT", "start", json!({})),
        ("PUT", "restart", json!({})),
        ("PUT", "kill", json!({})),
        ("PUT", "update", json!({"mode": "server", "watch": 1})),
        ("DELETE", "destroy", json!({})),
    ] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let (s, v) = d
            .call(method, &format!("/server/{path}/{uid}"), Some(body))
            .await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }

    let (s, jobs) = d.get(&format!("/jobs?uid={uid}")).await;
    assert_eq!(s, StatusCode::OK, "{jobs}");
    let jobs = jobs.as_array().unwrap();
    let kinds: Vec<&str> = jobs.iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "destroy", "update", "kill", "restart", "start", "stop", "create"
        ],
        "newest first"
    );
    for j in jobs {
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(j["requester"], "admin", "{j}");
        assert_eq!(j["uid"], uid.as_str(), "{j}");
        assert!(j["started"].is_string() && j["finished"].is_string(), "{j}");
        for s in j["steps"].as_array().unwrap() {
            assert_eq!(s["state"], "succeeded", "{j}");
            assert!(s["finished"].is_string(), "{j}");
        }
    }
    let by = |k: &str| jobs.iter().find(|j| j["kind"] == k).unwrap();
    assert_eq!(
        step_names(by("create")),
        ["plan", "files", "container", "start"]
    );
    assert_eq!(
        step_names(by("start")),
        ["prepare container", "attach console", "start", "settle"]
    );
    assert!(step_names(by("stop")).ends_with(&["signal".into(), "wait for exit".into()]));
    assert_eq!(
        step_names(by("restart"))[..],
        [
            "signal",
            "wait for exit",
            "prepare container",
            "attach console",
            "start",
            "settle"
        ]
    );
    assert_eq!(step_names(by("kill")), ["signal", "wait for exit"]);
    assert_eq!(
        step_names(by("update")),
        [
            "record",
            "stop",
            "reinstall marker",
            "recreate",
            "start",
            "watch"
        ]
    );
    assert_eq!(
        step_names(by("destroy")),
        ["remove container", "forget schedules"]
    );

    // Filters, limit, one job, an unknown one.
    let (_, v) = d
        .get(&format!("/jobs?uid={uid}&kind=start&state=succeeded"))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (_, v) = d.get("/jobs?limit=2").await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v[0]["kind"], "destroy", "{v}");
    let id = jobs[0]["id"].as_str().unwrap();
    let (s, v) = d.get(&format!("/job/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, jobs[0]);
    let (s, v) = d.get("/job/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["err_code"], "job.notfound", "{v}");
    let (s, v) = d.get("/jobs?state=sleeping").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Step progress is on the event stream too.
    events
        .wait(Duration::from_secs(5), "a step event", |e| {
            e["type"] == "job" && e["job"]["step"]["name"] == "remove container"
        })
        .await;
}

#[tokio::test]
async fn wait_false_runs_in_the_background_and_failures_are_recorded() {
    let mut d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.bg");

    let (id, location) = no_wait(
        &d,
        reqwest::Method::PUT,
        &format!("/server/create/{uid}"),
        json!({"SERVER_NAME": "Test"}),
    )
    .await;
    let (s, v) = d
        .http
        .get(format!("{}{location}", d.root))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|v| (StatusCode::OK, v))
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], id.as_str(), "{v}");
    let job = job_done(&d, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "create");
    assert_eq!(job["uid"], uid.as_str());
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["container_state"], "running", "{v}");

    let (id, _) = no_wait(
        &d,
        reqwest::Method::PUT,
        &format!("/server/stop/{uid}"),
        json!({}),
    )
    .await;
    assert_eq!(job_done(&d, &id).await["state"], "succeeded");

    // A game that exits at once: the start fails, and so does its job.
    std::fs::write(
        d.server_dir(&uid).join("actions/server_start"),
        "echo boom; exit 3\n",
    )
    .unwrap();
    let (failed, _) = no_wait(
        &d,
        reqwest::Method::PUT,
        &format!("/server/start/{uid}"),
        json!({}),
    )
    .await;
    let job = job_done(&d, &failed).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("exit code 3"),
        "{job}"
    );
    let settle = job["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(settle["name"], "settle", "{job}");
    assert_eq!(settle["state"], "failed", "{job}");

    // Without ?wait the same failure is answered as before, and recorded.
    let (s, _) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let (_, v) = d.get(&format!("/jobs?uid={uid}&state=failed")).await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");

    // The history survives a daemon restart.
    let (_, before) = d.get(&format!("/jobs?uid={uid}")).await;
    d.restart().await;
    let (_, after) = d.get(&format!("/jobs?uid={uid}")).await;
    assert_eq!(before, after);
    assert_eq!(after[1]["id"], failed.as_str(), "{after}");

    let (id, _) = no_wait(
        &d,
        reqwest::Method::DELETE,
        &format!("/server/eradicate/{uid}"),
        json!({"eradicate": true}),
    )
    .await;
    let job = job_done(&d, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "eradicate");
    assert!(!d.server_dir(&uid).exists());
}

#[tokio::test]
async fn automatic_restarts_and_scheduled_firings_name_their_requester() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.who");
    d.create_running(&uid).await;

    // A crash: the restart policy restarts the game, as the job of `policy`.
    d.engine
        .kill_container(&format!("peon.warcamp.{uid}"), "KILL")
        .await
        .unwrap();
    let job = wait_for(
        Duration::from_secs(60),
        "the policy's restart job",
        || async {
            let (_, v) = d.get(&format!("/jobs?uid={uid}&kind=restart")).await;
            v.as_array()
                .and_then(|a| a.first().cloned())
                .filter(|j| j["state"] == "succeeded")
        },
    )
    .await;
    assert_eq!(job["requester"], "policy", "{job}");
    assert_eq!(
        step_names(&job)[..2],
        ["prepare container", "attach console"]
    );

    // A one-off schedule: the stop is the job of `schedule`.
    let at = chrono::Utc::now().timestamp() + 2;
    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "stop", "at": at}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let job = wait_for(
        Duration::from_secs(60),
        "the scheduled stop's job",
        || async {
            let (_, v) = d.get(&format!("/jobs?uid={uid}&kind=stop")).await;
            v.as_array()
                .and_then(|a| a.first().cloned())
                .filter(|j| j["state"] == "succeeded")
        },
    )
    .await;
    assert_eq!(job["requester"], "schedule", "{job}");
    assert!(step_names(&job).contains(&"signal".to_owned()), "{job}");
}
