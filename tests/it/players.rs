//! Players: A2S_INFO and the Minecraft Server List Ping answered by peon's own responder in the
//! test game image, the counts in the server object and stats, the idle stop (and when it must
//! not happen), and wake on connect over UDP and TCP with its ports released.

use std::time::Duration;

use peon::players::{Players, a2s, query};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// A game whose plan has a query on `QUERY_PORT` (tcp and udp); returns it, its game port and
/// its query port.
async fn query_game(d: &Daemon, protocol: &str) -> (String, u16, u16) {
    let image = ensure_query_image().await;
    let game = unique("q");
    let (p, q) = (fresh_port(), fresh_port());
    let mut plan = game_plan(&game, &[&[p]]);
    plan["metadata"]["image"] = json!(image);
    plan["ports"] =
        json!([[{"PORT": [p.to_string(), "tcp"]}, {"QUERY_PORT": [q.to_string(), "tcp/udp"]}]]);
    plan["query"] = json!({"protocol": protocol, "port": "QUERY_PORT"});
    plan["lifecycle"] = json!({"say_command": "say {message}"});
    d.add_plan(&game, &plan);
    (game, p, q)
}

/// A free port never handed out before in this process: a published port is not always bound
/// on the host, so `free_port` alone may give a port a running test game already publishes.
fn fresh_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let p = free_port();
        let udp_free = std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok();
        if udp_free && !given.contains(&p) {
            given.push(p);
            return p;
        }
    }
}

async fn create(d: &Daemon, uid: &str, extra: Value) -> Value {
    let mut body = json!({"SERVER_NAME": "Q"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = d.put(&format!("/server/create/{uid}"), body).await;
    assert_eq!(s, StatusCode::OK, "create {uid}: {v}");
    v
}

async fn say(d: &Daemon, uid: &str, command: &str) {
    let (s, v) = d
        .post(
            &format!("/server/command/{uid}"),
            json!({"command": command}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn a2s_name(port: u16) -> Option<String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    sock.connect(("127.0.0.1", port)).await.ok()?;
    let mut challenge = None;
    let mut buf = [0u8; 1400];
    for _ in 0..3 {
        sock.send(&a2s::request(challenge)).await.ok()?;
        let n = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        match a2s::parse(&buf[..n]).ok()? {
            a2s::Reply::Challenge(c) => challenge = Some(c),
            a2s::Reply::Info { name, .. } => return Some(name),
        }
    }
    None
}

fn ports_free(tcp: u16, udp: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", tcp)).is_ok()
        && std::net::UdpSocket::bind(("127.0.0.1", udp)).is_ok()
}

#[tokio::test]
async fn a2s_and_server_list_ping_counts_are_shown() {
    let d = Daemon::start().await;
    let (g1, _, q1) = query_game(&d, "a2s").await;
    let (g2, _, q2) = query_game(&d, "minecraft").await;
    let (a, m) = (format!("{g1}.steam"), format!("{g2}.craft"));
    create(&d, &a, json!({})).await;
    create(&d, &m, json!({})).await;
    // The responders answer what the game's world says, through peon's own client too.
    let p = wait_for(LONG, "the a2s responder", || async {
        query::ask(
            query::Protocol::A2s,
            ([127, 0, 0, 1], q1).into(),
            Duration::from_secs(1),
        )
        .await
        .ok()
    })
    .await;
    assert_eq!(p, Players { online: 0, max: 16 });
    for uid in [&a, &m] {
        d.wait_server(uid, LONG, |v| v["players"] == 0 && v["max_players"] == 16)
            .await;
        say(&d, uid, "players 3/20").await;
        d.wait_server(uid, LONG, |v| v["players"] == 3 && v["max_players"] == 20)
            .await;
        let (s, st) = d.get(&format!("/server/stats/{uid}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(st["players"], 3, "{st}");
        assert_eq!(st["max_players"], 20, "{st}");
        // A game that does not answer: unknown, not zero.
        say(&d, uid, "mute").await;
        d.wait_server(uid, LONG, |v| v["players"].is_null()).await;
    }
    let (_, list) = d.get("/servers").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("players").is_some())
    );
    let _ = q2;
    d.cleanup().await;
}

#[tokio::test]
async fn idle_stop_after_the_idle_time_but_not_while_players_are_on_or_the_game_is_silent() {
    let d = Daemon::start().await;
    let (gb, _, _) = query_game(&d, "a2s").await;
    let (gc, _, _) = query_game(&d, "a2s").await;
    let (ga, _, _) = query_game(&d, "a2s").await;
    let idle = json!({"idle_stop": "2s", "idle_grace": "1s"});
    // B has players, C does not answer: both before A starts, so they are in those states
    // longer than A is idle.
    let (b, c, a) = (
        format!("{gb}.busy"),
        format!("{gc}.silent"),
        format!("{ga}.idle"),
    );
    create(&d, &b, idle.clone()).await;
    say(&d, &b, "players 2").await;
    d.wait_server(&b, LONG, |v| v["players"] == 2).await;
    create(&d, &c, idle.clone()).await;
    say(&d, &c, "mute").await;
    d.wait_server(&c, LONG, |v| v["players"].is_null()).await;

    let mut ev = Events::open(&d, None).await;
    let mut body = idle.clone();
    body["backup_before_idle_stop"] = json!(true);
    let v = create(&d, &a, body).await;
    assert_eq!(v["idle_stop_s"], 2);
    assert_eq!(v["idle_grace_s"], 1);
    let e = ev
        .wait(LONG, "the idle stop event", |e| {
            e["type"] == "idle_stop" && e["uid"] == a.as_str()
        })
        .await;
    assert!(e["idle_s"].as_u64().unwrap() >= 2, "{e}");
    let v = d
        .wait_server(&a, LONG, |v| v["last_exit"]["class"] == "idle_stop")
        .await;
    assert_ne!(v["container_state"], "running", "{v}");
    // The backup was taken first.
    let (_, backups) = d.get(&format!("/server/backups/{a}")).await;
    let backups = backups.as_array().cloned().unwrap_or_default();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["reason"], "idle", "{backups:?}");
    // The job of the stop names who asked.
    let (_, jobs) = d.get(&format!("/jobs?uid={a}")).await;
    assert!(
        jobs.to_string().contains("\"requester\":\"idle\""),
        "{jobs}"
    );

    for uid in [&b, &c] {
        let (_, v) = d.get(&format!("/server/get/{uid}")).await;
        assert_eq!(v["server_state"], "running", "{uid}: {v}");
        assert!(v["last_exit"].is_null(), "{uid}: {v}");
    }
    d.cleanup().await;
}

async fn sleeping(d: &Daemon, game: &str, name: &str) -> String {
    let uid = format!("{game}.{name}");
    let mut ev = Events::open(d, None).await;
    create(
        d,
        &uid,
        json!({"idle_stop": "1s", "idle_grace": "1s", "wake_on_connect": true}),
    )
    .await;
    let e = ev
        .wait(LONG, "the idle stop", |e| {
            e["type"] == "idle_stop" && e["uid"] == uid.as_str()
        })
        .await;
    assert_eq!(e["wake_on_connect"], true, "{e}");
    d.wait_server(&uid, LONG, |v| v["sleeping"] == true).await;
    uid
}

#[tokio::test]
async fn wake_on_connect_over_udp_answers_queries_meanwhile_and_releases_its_ports() {
    let d = Daemon::start().await;
    let (game, p, q) = query_game(&d, "a2s").await;
    let uid = sleeping(&d, &game, "udp").await;
    // peon holds the ports: a query is answered as starting, and does not wake the game.
    let name = wait_for(LONG, "peon's A2S answer", || a2s_name(q)).await;
    assert!(name.contains("starting"), "{name}");
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["sleeping"], true, "{v}");

    let mut ev = Events::open(&d, Some(&uid)).await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"hello, is anyone there", ("127.0.0.1", q))
        .unwrap();
    let e = ev.wait(LONG, "the wake", |e| e["type"] == "wake").await;
    assert!(e["by"].as_str().unwrap().starts_with("udp"), "{e}");
    let v = d
        .wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    assert_eq!(v["sleeping"], false, "{v}");
    // The game owns its ports now: its own responder answers.
    let name = wait_for(LONG, "the game's A2S answer", || a2s_name(q)).await;
    assert_eq!(name, "peon test game");
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}")).await;
    assert!(
        jobs.to_string().contains("\"requester\":\"wake\""),
        "{jobs}"
    );

    // Asleep again, then destroyed: nothing is bound.
    let e = ev
        .wait(LONG, "the next idle stop", |e| e["type"] == "idle_stop")
        .await;
    assert_eq!(e["wake_on_connect"], true);
    d.wait_server(&uid, LONG, |v| v["sleeping"] == true).await;
    assert!(!ports_free(p, q), "held while asleep");
    let (s, v) = d.delete(&format!("/server/destroy/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(ports_free(p, q), "released after destroy");
    d.cleanup().await;
}

#[tokio::test]
async fn wake_on_connect_over_tcp_starts_the_game_which_then_owns_its_port() {
    let d = Daemon::start().await;
    let (game, p, q) = query_game(&d, "minecraft").await;
    let uid = sleeping(&d, &game, "tcp").await;
    let mut ev = Events::open(&d, Some(&uid)).await;
    let _c = tokio::net::TcpStream::connect(("127.0.0.1", p))
        .await
        .expect("peon holds the game port");
    let e = ev.wait(LONG, "the wake", |e| e["type"] == "wake").await;
    assert!(
        e["by"].as_str().unwrap().starts_with(&format!("tcp {p}")),
        "{e}"
    );
    d.wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    let hello = wait_for(LONG, "the game's greeting", || game_greeting(p)).await;
    assert_eq!(hello, "hello");
    let (s, _) = d
        .delete(
            &format!("/server/eradicate/{uid}"),
            json!({"eradicate": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ports_free(p, q), "released after eradicate");
    d.cleanup().await;
}

#[tokio::test]
async fn a_when_empty_restart_announces_waits_for_nobody_then_runs() {
    let d = Daemon::start().await;
    let (game, _, _) = query_game(&d, "a2s").await;
    let uid = format!("{game}.maint");
    create(&d, &uid, json!({})).await;
    say(&d, &uid, "players 2").await;
    d.wait_server(&uid, LONG, |v| v["players"] == 2).await;
    let (_, before) = d.get(&format!("/server/get/{uid}")).await;
    let boots = || std::fs::read_to_string(d.server_dir(&uid).join("user/boots")).unwrap();
    let boots_before = boots();

    let res = d
        .http
        .put(format!("{}/server/restart/{uid}?wait=false", d.base))
        .header("X-Api-Key", &d.key)
        .json(&json!({"when_empty": {"deadline": "10m", "announce": "Restart when you leave"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job = res.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The players are told through the plan's say command.
    wait_for(LONG, "the announcement", || async {
        let (_, v) = d.get(&format!("/server/logs/{uid}?lines=50")).await;
        v.to_string()
            .contains("console: say Restart when you leave")
            .then_some(())
    })
    .await;
    // While players are on, the job waits in its step and the game runs on.
    let j = wait_for(LONG, "the job's wait step", || async {
        let (_, j) = d.get(&format!("/job/{job}")).await;
        (j["steps"].to_string().contains("wait for an empty server")).then_some(j)
    })
    .await;
    assert_eq!(j["state"], "running", "{j}");
    let (_, now) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(now["server_state"], "running");
    assert_eq!(boots(), boots_before, "not restarted while players are on");
    let _ = before;

    // Everybody leaves: the restart runs.
    say(&d, &uid, "players 0").await;
    let j = wait_for(LONG, "the job to end", || async {
        let (_, j) = d.get(&format!("/job/{job}")).await;
        matches!(j["state"].as_str(), Some("succeeded" | "failed")).then_some(j)
    })
    .await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_ne!(boots(), boots_before, "restarted");
    d.cleanup().await;
}

#[tokio::test]
async fn a_schedule_may_wait_for_an_empty_server() {
    let d = Daemon::start().await;
    let (game, _, _) = query_game(&d, "a2s").await;
    let uid = format!("{game}.sched");
    create(&d, &uid, json!({})).await;
    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "restart", "cron": "0 4 * * *", "when_empty": {"deadline": "20m"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["when_empty"], json!({"deadline_s": 1200}), "{v}");
    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "stop", "cron": "0 4 * * *", "when_empty": true}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let file: Value =
        serde_json::from_slice(&std::fs::read(d.data.join("schedules.json")).unwrap()).unwrap();
    assert!(
        file.to_string()
            .contains("\"when_empty\":{\"deadline_s\":1200}"),
        "{file}"
    );

    // A firing with nobody on: the restart runs through the wait at once.
    let boots = || std::fs::read_to_string(d.server_dir(&uid).join("user/boots")).unwrap();
    d.wait_server(&uid, LONG, |v| v["players"] == 0).await;
    let before = boots();
    let at = chrono::Utc::now().timestamp() + 2;
    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "restart", "at": at, "when_empty": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = wait_for(LONG, "the firing", || async {
        let (_, v) = d.get(&format!("/server/schedules/{uid}")).await;
        v["results"].as_array().and_then(|r| r.first().cloned())
    })
    .await;
    assert_eq!(r["outcome"], "done", "{r}");
    assert_ne!(boots(), before, "restarted");
    d.cleanup().await;
}

#[tokio::test]
async fn a_wake_that_fails_is_an_event_and_the_ports_are_held_again() {
    let d = Daemon::start().await;
    let (game, p, _) = query_game(&d, "a2s").await;
    let uid = sleeping(&d, &game, "fail").await;
    // Over its disk quota, the server cannot start.
    let (s, v) = d
        .put(&format!("/server/limits/{uid}"), json!({"disk": "1m"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    std::fs::write(d.server_dir(&uid).join("user/big"), vec![1u8; 2_000_000]).unwrap();
    let mut ev = Events::open(&d, Some(&uid)).await;
    let _c = tokio::net::TcpStream::connect(("127.0.0.1", p))
        .await
        .expect("peon holds the game port");
    let e = ev
        .wait(LONG, "the failed wake", |e| e["type"] == "wake_failed")
        .await;
    assert!(e["error"].as_str().unwrap().contains("quota"), "{e}");
    let v = d.wait_server(&uid, LONG, |v| v["sleeping"] == true).await;
    assert_ne!(v["container_state"], "running", "{v}");
    d.cleanup().await;
}
