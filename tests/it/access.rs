//! Named keys against a real daemon: each role allowed and refused on each route group,
//! scope filtering of lists and events, revocation, the lockout of wrong keys, the audit log.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Daemon, Events, Opts, wait_for};

async fn new_key(d: &Daemon, name: &str, role: &str, scope: Value) -> String {
    let mut body = json!({"name": name, "role": role});
    if !scope.is_null() {
        body["scope"] = scope;
    }
    let (s, v) = d.post("/keys", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], name);
    v["secret"].as_str().expect("secret").to_owned()
}

/// Creates `<game>.<name>` stopped (a container, no game process).
async fn create_stopped(d: &Daemon, uid: &str) {
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "Test", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "create {uid}: {v}");
}

#[tokio::test]
async fn each_role_is_allowed_and_refused_per_route_group_and_scope() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let (other, _) = d.new_game(1);
    let uid = format!("{game}.a");
    let out = format!("{other}.b");
    create_stopped(&d, &uid).await;
    create_stopped(&d, &out).await;
    let scope = json!({"games": [game]});
    let viewer = new_key(&d, "ro", "viewer", scope.clone()).await;
    let operator = new_key(&d, "ops", "operator", scope).await;
    let admin = new_key(&d, "boss", "admin", Value::Null).await;

    let read = (Method::GET, format!("/server/get/{uid}"), None);
    let operate = (
        Method::POST,
        format!("/server/schedules/{uid}"),
        Some(json!({"action": "start", "cron": "0 0 3 * * *"})),
    );
    let admin_route = (Method::GET, "/keys".to_owned(), None);
    // (key, name, role, read, operate, admin)
    for (key, name, role, want) in [
        (&viewer, "ro", "viewer", [true, false, false]),
        (&operator, "ops", "operator", [true, true, false]),
        (&admin, "boss", "admin", [true, true, true]),
        (&d.key, "admin", "admin", [true, true, true]),
    ] {
        for ((m, path, body), (allowed, what)) in
            [&read, &operate, &admin_route]
                .into_iter()
                .zip(
                    want.into_iter()
                        .zip(["read servers", "add schedules", "list keys"]),
                )
        {
            let (s, v) = d.call_as(key, m.clone(), path, body.clone()).await;
            if allowed {
                assert!(s.is_success(), "{name} {m} {path}: {s} {v}");
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{name} {m} {path}: {v}");
                assert_eq!(v["err_code"], "auth.forbidden", "{v}");
                assert_eq!(
                    v["info"],
                    format!("the key [{name}] ({role}) may not {what}"),
                    "{v}"
                );
            }
        }
    }
    // Out of scope: refused by uid, by game on create; the admin key reaches everything.
    for key in [&viewer, &operator] {
        let (s, v) = d
            .call_as(key, Method::GET, &format!("/server/get/{out}"), None)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["info"]
                .as_str()
                .unwrap()
                .ends_with(&format!("is not allowed on server [{out}]")),
            "{v}"
        );
    }
    let (s, v) = d
        .call_as(
            &operator,
            Method::POST,
            "/server/create",
            Some(json!({"game_uid": other, "servername": "c"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["info"],
        format!("the key [ops] is not allowed on game [{other}]")
    );
    let (s, _) = d
        .call_as(&operator, Method::PUT, &format!("/server/stop/{out}"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = d
        .call_as(&admin, Method::GET, &format!("/server/get/{out}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Lists show the scope only.
    let (s, v) = d.call_as(&viewer, Method::GET, "/servers", None).await;
    assert_eq!(s, StatusCode::OK);
    let uids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, [uid.as_str()], "{v}");
    let (_, v) = d.get("/servers").await;
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let (_, v) = d.call_as(&operator, Method::GET, "/schedules", None).await;
    assert!(
        v["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["server_uid"] == uid.as_str()),
        "{v}"
    );
    // The key list never shows a secret.
    let (_, v) = d.get("/keys").await;
    let text = v.to_string();
    for secret in [&viewer, &operator, &admin, &d.key] {
        assert!(!text.contains(secret.as_str()), "{text}");
    }
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ro", "ops", "boss"]);
    d.cleanup().await;
}

#[tokio::test]
async fn events_show_only_the_servers_in_scope() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let (other, _) = d.new_game(1);
    let viewer = new_key(
        &d,
        "watch",
        "viewer",
        json!({"uids": [format!("{game}.a")]}),
    )
    .await;
    let mut mine = Events::open_as(&d, None, &viewer).await;
    let mut all = Events::open(&d, None).await;
    let (s, v) = d
        .call_as(
            &viewer,
            Method::GET,
            &format!("/events?uid={other}.b"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let out = format!("{other}.b");
    d.create_running(&out).await;
    all.wait(
        Duration::from_secs(30),
        "an event of the other server",
        |e| e["uid"] == out.as_str(),
    )
    .await;
    let uid = format!("{game}.a");
    d.create_running(&uid).await;
    let first = mine.next(Duration::from_secs(30)).await.expect("an event");
    assert_eq!(first["uid"], uid.as_str(), "{first}");
    let until = Instant::now() + Duration::from_secs(1);
    while let Some(e) = mine
        .next(until.saturating_duration_since(Instant::now()))
        .await
    {
        assert_eq!(e["uid"], uid.as_str(), "{e}");
    }
    d.cleanup().await;
}

#[tokio::test]
async fn revocation_is_effective_on_the_next_request() {
    let d = Daemon::start().await;
    let k = new_key(&d, "temp", "operator", Value::Null).await;
    let (s, _) = d.call_as(&k, Method::GET, "/servers", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = d.delete("/key/temp", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d.call_as(&k, Method::GET, "/servers", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = d.delete("/key/admin", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d.delete("/key/temp", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // Keys survive a restart; the revoked one stays revoked.
    let k2 = new_key(&d, "kept", "viewer", Value::Null).await;
    let mut d = d;
    d.restart().await;
    let (s, _) = d.call_as(&k2, Method::GET, "/servers", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = d.call_as(&k, Method::GET, "/servers", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    d.stop().await;
}

#[tokio::test]
async fn wrong_keys_are_slowed_then_locked_out_until_the_lock_ends() {
    let d = Daemon::start_with(Opts {
        auth: Some((2, 5, 2)),
        ..Default::default()
    })
    .await;
    let url = format!("{}/servers", d.base);
    let mut statuses = Vec::new();
    let started = Instant::now();
    for _ in 0..4 {
        let r = d
            .http
            .get(&url)
            .header("X-Api-Key", "wrong")
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
    }
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED; 4]);
    // The 3rd and 4th wrong keys waited 250 ms and 500 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    let r = d
        .http
        .get(&url)
        .header("X-Api-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["err_code"], "auth.locked", "{v}");
    // A correct key from the locked address is refused too, until the lock ends.
    let (s, _) = d.get("/servers").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    wait_for(Duration::from_secs(20), "the lock to end", || async {
        (d.get("/servers").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let r = d
        .http
        .get(&url)
        .header("X-Api-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn mutating_requests_are_audited_without_secrets() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.a");
    create_stopped(&d, &uid).await;
    let ops = new_key(&d, "ops", "operator", Value::Null).await;
    let viewer = new_key(&d, "ro", "viewer", Value::Null).await;
    let (s, _) = d
        .call_as(
            &ops,
            Method::POST,
            &format!("/server/schedules/{uid}"),
            Some(json!({"action": "stop", "cron": "0 0 4 * * *"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = d
        .call_as(&viewer, Method::PUT, &format!("/server/start/{uid}"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d.call_as(&viewer, Method::GET, "/servers", None).await;
    assert_eq!(s, StatusCode::OK);

    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let (s, v) = d.get(&format!("/audit?uid={uid}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let list = v.as_array().unwrap().clone();
        if list.len() >= 3 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Newest first: the refused start, the schedule, the create (by the admin key).
    let seen: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["route"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ro".into(), "/api/v1/server/start/{uid}".into(), 403),
            ("ops".into(), "/api/v1/server/schedules/{uid}".into(), 201),
            ("admin".into(), "/api/v1/server/create/{uid}".into(), 200),
        ],
        "{entries:?}"
    );
    let e = &entries[1];
    assert_eq!(e["method"], "POST");
    assert_eq!(e["uid"], uid.as_str());
    assert_eq!(e["addr"], "127.0.0.1");
    assert!(e["job_id"].is_null() && e["time"].is_string(), "{e}");
    // The create ran a job: its entry names it, and the job history knows it.
    let job = entries[2]["job_id"].as_str().expect("the create's job id");
    let (s, j) = d.get(&format!("/job/{job}")).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        (j["kind"].as_str(), j["uid"].as_str()),
        (Some("create"), Some(uid.as_str()))
    );
    // Reads are not audited; key filters work; viewers may not read the log.
    let (_, v) = d.get("/audit?key=ro").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (_, v) = d.get("/audit?limit=1").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (s, _) = d.call_as(&viewer, Method::GET, "/audit", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = d.get("/audit?since=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let log = std::fs::read_to_string(d.data.join("audit.log")).unwrap();
    for secret in [&ops, &viewer, &d.key] {
        assert!(!log.contains(secret.as_str()));
    }
    d.cleanup().await;
}

#[tokio::test]
async fn jobs_name_the_key_that_asked_and_follow_its_scope() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.jobs");
    create_stopped(&d, &uid).await;
    let ops = new_key(&d, "ops", "operator", json!({"games": [game]})).await;
    let other = new_key(&d, "other", "viewer", json!({"games": ["elsewhere"]})).await;

    let (s, v) = d
        .call_as(
            &ops,
            reqwest::Method::PUT,
            &format!("/server/start/{uid}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, jobs) = d.get(&format!("/jobs?uid={uid}&kind=start")).await;
    assert_eq!(s, StatusCode::OK, "{jobs}");
    let job = &jobs[0];
    assert_eq!(job["requester"], "ops", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();

    // A key scoped elsewhere sees none of this server's jobs.
    let (s, v) = d.call_as(&other, reqwest::Method::GET, "/jobs", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|j| j["uid"] != uid.as_str()),
        "{v}"
    );
    let (s, v) = d
        .call_as(&other, reqwest::Method::GET, &format!("/job/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = d
        .call_as(&ops, reqwest::Method::GET, &format!("/job/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
