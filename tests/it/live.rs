//! The live model against the real engine: the console (WebSocket and SSE), commands, exits and
//! their classes, the restart policy, stop and kill, readiness, events, and what survives a
//! daemon restart. Each test has its own daemon, game and servers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{self, Console, Daemon, Events, free_port, game_plan, unique, wait_for};

/// A game whose plan `change` adjusts; returns the game id.
fn custom_game(d: &Daemon, change: impl FnOnce(&mut Value)) -> String {
    let game = unique("g");
    let mut plan = game_plan(&game, &[&[free_port()]]);
    change(&mut plan);
    d.add_plan(&game, &plan);
    game
}

const LONG: Duration = Duration::from_secs(30);

fn is_exit(e: &Value, class: &str) -> bool {
    e["type"] == "exit" && e["exit"]["class"] == class
}

#[tokio::test]
async fn console_round_trip_replay_and_two_clients() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.console");
    d.create_running(&uid).await;

    let mut a = Console::connect(&d, &uid).await;
    let first = a.next(LONG).await.expect("connected frame");
    assert_eq!(first, json!({"type": "connected", "server_uid": uid}));
    // The recent lines come first: the game's boot lines.
    a.wait_line("game: listening on port").await;
    a.send("hello-a").await;
    a.wait_line("console: hello-a").await;

    // A second client gets the replay, including what the first one did, and both see output.
    let mut b = Console::connect(&d, &uid).await;
    b.wait_line("console: hello-a").await;
    b.send("hello-b").await;
    a.wait_line("console: hello-b").await;
    b.wait_line("console: hello-b").await;

    // A command through the API reaches the game too.
    let (s, v) = d
        .post(
            &format!("/server/command/{uid}"),
            json!({"command": "save"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.wait_line("game: saved").await;
    b.wait_line("game: saved").await;

    // Server-Sent Events carry the same frames.
    let res = reqwest::Client::new()
        .get(format!("{}/server/console/{uid}?replay=5", d.base))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    // Errors before the upgrade: unknown server 404, wrong key 401; a command to a stopped
    // game is 409.
    assert_eq!(
        Console::try_connect(&d, &format!("{game}.nope"), &d.key)
            .await
            .err(),
        Some(404)
    );
    assert_eq!(
        Console::try_connect(&d, &uid, "wrong").await.err(),
        Some(401)
    );
    let (s, _) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    // The console clients saw the state change.
    loop {
        let f = a.next(LONG).await.expect("a status frame");
        if f["type"] == "status" && f["data"] == "exited" {
            break;
        }
    }
    assert!(
        a.frames
            .iter()
            .any(|f| f["type"] == "status" && f["data"] == "stopping"),
        "{:?}",
        a.frames
    );
    let (s, v) = d
        .post(
            &format!("/server/command/{uid}"),
            json!({"command": "save"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["err_code"], "srv.notrunning");
}

#[tokio::test]
async fn crash_is_restarted_and_exit_zero_stays_stopped() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.crashy");
    d.create_running(&uid).await;
    let mut ev = Events::open(&d, Some(&uid)).await;

    let (s, _) = d
        .post(
            &format!("/server/command/{uid}"),
            json!({"command": "crash"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let e = ev.wait(LONG, "the crash", |e| is_exit(e, "crash")).await;
    assert_eq!(e["uid"], uid.as_str());
    assert_eq!(e["exit"]["exit_code"], 3);
    assert!(
        e["exit"]["last_lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "game: crashing"),
        "{e}"
    );
    let r = ev
        .wait(LONG, "the restart", |e| e["type"] == "restart")
        .await;
    assert_eq!(r["attempt"], 1);
    assert_eq!(r["delay_ms"], 0);
    ev.wait(LONG, "ready again", |e| {
        e["type"] == "ready" && e["state"] == "running"
    })
    .await;
    let v = d
        .wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    assert_eq!(v["last_exit"]["class"], "crash");
    assert_eq!(v["exits"].as_array().unwrap().len(), 1);
    // The world survived: this is its second boot.
    let boots = std::fs::read_to_string(d.server_dir(&uid).join("user/boots")).unwrap();
    let logs = d.get(&format!("/server/logs/{uid}?lines=50")).await.1;
    assert_eq!(boots.trim(), "2", "{logs}");

    // An in-game stop (exit 0 nobody asked for) is not a crash and is not restarted.
    let (s, _) = d
        .post(
            &format!("/server/command/{uid}"),
            json!({"command": "quit"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    ev.wait(LONG, "the in-game stop", |e| is_exit(e, "in_game_stop"))
        .await;
    let v = d
        .wait_server(&uid, LONG, |v| v["container_state"] == "exited")
        .await;
    assert_eq!(v["last_exit"]["exit_code"], 0);
    // Nothing restarts it: the host no longer wants it running.
    let state_file = d.server_dir(&uid).join(".peon.json");
    wait_for(LONG, "wanted_running to become false", || async {
        let state: Value = serde_json::from_slice(&std::fs::read(&state_file).ok()?).ok()?;
        (state["wanted_running"] == false).then_some(())
    })
    .await;
    assert!(
        ev.next(Duration::from_secs(3))
            .await
            .is_none_or(|e| e["type"] != "restart"),
        "an in-game stop must not be restarted"
    );
}

#[tokio::test]
async fn outside_kill_is_a_crash_and_oom_is_classified() {
    let d = Daemon::start().await;
    let game = custom_game(&d, |p| p["limits"] = json!({"memory": "32m"}));
    let uid = format!("{game}.victim");
    d.create_running(&uid).await;
    let mut ev = Events::open(&d, Some(&uid)).await;

    // SIGKILL from outside peon.
    d.engine
        .kill_container(&format!("peon.warcamp.{uid}"), "KILL")
        .await
        .unwrap();
    let e = ev.wait(LONG, "the crash", |e| e["type"] == "exit").await;
    assert_eq!(e["exit"]["class"], "crash", "{e}");
    assert_eq!(e["exit"]["exit_code"], 137);
    ev.wait(LONG, "the restart", |e| e["type"] == "restart")
        .await;
    d.wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;

    // Over the memory limit.
    let c = d
        .engine
        .inspect(&format!("peon.warcamp.{uid}"))
        .await
        .unwrap()
        .unwrap();
    assert!(c.running);
    let (s, _) = d
        .post(&format!("/server/command/{uid}"), json!({"command": "oom"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let e = ev
        .wait(LONG, "the out-of-memory exit", |e| e["type"] == "exit")
        .await;
    assert_eq!(e["exit"]["class"], "out_of_memory", "{e}");
}

#[tokio::test]
async fn crash_loop_ends_stopped_after_the_limit() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.loop");
    d.create_running(&uid).await;
    let mut ev = Events::open(&d, Some(&uid)).await;
    for attempt in 1..=3 {
        d.wait_server(&uid, LONG, |v| v["server_state"] == "running")
            .await;
        // The console takes commands once the restarted game's run is the live one (a moment
        // after the container shows running, on a loaded machine).
        wait_for(LONG, "the console to take the crash command", || async {
            let (s, v) = d
                .post(
                    &format!("/server/command/{uid}"),
                    json!({"command": "crash"}),
                )
                .await;
            match s {
                StatusCode::OK => Some(()),
                StatusCode::CONFLICT if v["err_code"] == "srv.notrunning" => None,
                _ => panic!("{s}: {v}"),
            }
        })
        .await;
        let r = ev.wait(LONG, "a restart", |e| e["type"] == "restart").await;
        assert_eq!(r["attempt"], attempt);
    }
    d.wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    d.post(
        &format!("/server/command/{uid}"),
        json!({"command": "crash"}),
    )
    .await;
    let g = ev.wait(LONG, "giving up", |e| e["type"] == "gave_up").await;
    assert!(g["reason"].as_str().unwrap().contains("3 restarts"), "{g}");
    let v = d
        .wait_server(&uid, LONG, |v| v["container_state"] == "exited")
        .await;
    assert!(
        v["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("gave up"),
        "{v}"
    );
    assert_eq!(v["exits"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn restart_policy_never_and_options() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.calm");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "restart_policy": "never", "stop_grace": "7s"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["restart_policy"], "never");
    assert_eq!(v["stop_grace_s"], 7);
    let mut ev = Events::open(&d, Some(&uid)).await;
    d.post(
        &format!("/server/command/{uid}"),
        json!({"command": "crash"}),
    )
    .await;
    ev.wait(LONG, "the crash", |e| is_exit(e, "crash")).await;
    d.wait_server(&uid, LONG, |v| v["container_state"] == "exited")
        .await;
    assert!(
        ev.next(Duration::from_secs(3))
            .await
            .is_none_or(|e| e["type"] != "restart"),
        "policy never must not restart"
    );
    let (s, v) = d
        .put(
            &format!("/server/options/{uid}"),
            json!({"restart_policy": "always"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["restart_policy"], "always");
    assert_eq!(v["stop_grace_s"], 7);
    let (s, v) = d
        .put(
            &format!("/server/options/{uid}"),
            json!({"restart_policy": "sometimes"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // With `always`, even an in-game stop is restarted.
    d.put(&format!("/server/start/{uid}"), json!({})).await;
    d.post(
        &format!("/server/command/{uid}"),
        json!({"command": "quit"}),
    )
    .await;
    ev.wait(LONG, "the in-game stop", |e| is_exit(e, "in_game_stop"))
        .await;
    ev.wait(LONG, "the restart", |e| e["type"] == "restart")
        .await;
}

#[tokio::test]
async fn stop_runs_the_stop_command_and_kill_beats_a_stubborn_stop() {
    let d = Daemon::start().await;
    let game = custom_game(&d, |p| {
        p["lifecycle"] = json!({"stop_command": ["save", "quit"], "stop_grace": 20})
    });
    let uid = format!("{game}.polite");
    d.create_running(&uid).await;
    let mut con = Console::connect(&d, &uid).await;
    let (s, v) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "exited", "{v}");
    assert_eq!(v["last_exit"]["class"], "operator_stop", "{v}");
    // The stop commands reached the game: it saved and quit by itself.
    con.wait_line("console: save").await;
    con.wait_line("console: quit").await;

    // A game that ignores SIGTERM (and has no stop command that would make it quit): a stop
    // waits the grace period; a kill goes through at once, without waiting for the stop's power
    // lock.
    let plain = custom_game(&d, |p| p["lifecycle"] = json!({"stop_grace": 60}));
    let uid = format!("{plain}.stubborn");
    d.create_running(&uid).await;
    let mut con = Console::connect(&d, &uid).await;
    d.post(
        &format!("/server/command/{uid}"),
        json!({"command": "stubborn"}),
    )
    .await;
    con.wait_line("game: ignoring SIGTERM").await;
    let mut ev = Events::open(&d, Some(&uid)).await;
    let stopper = d.put_in_background(&format!("/server/stop/{uid}"));
    ev.wait(LONG, "the stop to begin", |e| {
        e["type"] == "action" && e["action"] == "stop" && e["phase"] == "start"
    })
    .await;
    let (s, v) = d.put(&format!("/server/kill/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(stopper.await.unwrap(), StatusCode::OK);
    let v = d
        .wait_server(&uid, LONG, |v| v["container_state"] == "exited")
        .await;
    // Had the kill waited for the stop's power lock, the stop would have run out its 60 s grace
    // and the exit would be `killed_after_grace`.
    assert_eq!(v["last_exit"]["class"], "operator_stop", "{v}");
}

#[tokio::test]
async fn stop_and_kill_while_starting_are_honoured() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    for (i, action) in ["stop", "kill"].iter().enumerate() {
        let uid = format!("{game}.s{i}");
        let (s, v) = d
            .put(
                &format!("/server/create/{uid}"),
                json!({"SERVER_NAME": "x", "start_later": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let mut ev = Events::open(&d, Some(&uid)).await;
        let starter = d.put_in_background(&format!("/server/start/{uid}"));
        ev.wait(LONG, "the start to begin", |e| {
            e["type"] == "action" && e["action"] == "start" && e["phase"] == "start"
        })
        .await;
        let (s, v) = d.put(&format!("/server/{action}/{uid}"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{action}: {v}");
        let _ = starter.await.unwrap();
        // Whatever the start answered, the server ends stopped, and stays stopped.
        let v = d
            .wait_server(&uid, LONG, |v| v["container_state"] != "running")
            .await;
        assert_ne!(v["server_state"], "running", "{action}: {v}");
        let state: Value =
            serde_json::from_slice(&std::fs::read(d.server_dir(&uid).join(".peon.json")).unwrap())
                .unwrap();
        assert_eq!(state["wanted_running"], false, "{action}: {state}");
        let c = d
            .engine
            .inspect(&format!("peon.warcamp.{uid}"))
            .await
            .unwrap();
        assert!(!c.is_some_and(|c| c.running), "{action} was dropped");
    }
}

#[tokio::test]
async fn readiness_pattern_and_unhealthy() {
    let d = Daemon::start().await;
    let game = custom_game(&d, |p| {
        p["lifecycle"] = json!({"ready_pattern": "listening on port"})
    });
    let uid = format!("{game}.ready");
    d.create_running(&uid).await;
    d.wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;

    // A game that never gets ready: unhealthy after the deadline, with the reason.
    let game = custom_game(&d, |p| {
        p["environment"]["READY"] = json!("no");
        p["lifecycle"] = json!({"ready_timeout": 2});
    });
    let uid = format!("{game}.slow");
    let mut ev = Events::open(&d, None).await;
    let v = d.create_running(&uid).await;
    assert_eq!(v["server_state"], "starting", "{v}");
    let e = ev
        .wait(LONG, "unhealthy", |e| {
            e["uid"] == uid.as_str() && e["type"] == "ready"
        })
        .await;
    assert_eq!(e["state"], "unhealthy");
    let v = d.get(&format!("/server/get/{uid}")).await.1;
    assert_eq!(v["server_state"], "unhealthy");
    assert!(
        v["state_reason"].as_str().unwrap().contains("not ready"),
        "{v}"
    );
}

#[tokio::test]
async fn burst_is_delivered_or_throttled_and_the_api_stays_up() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.burst");
    d.create_running(&uid).await;
    let mut con = Console::connect(&d, &uid).await;
    con.wait_line("listening on port").await;
    con.send("burst 20000").await;
    let mut lines = 0usize;
    let mut throttled = false;
    let mut list_ok = 0;
    let mut pings = 0;
    let mut frames = 0usize;
    loop {
        let Some(f) = con.next(Duration::from_secs(2)).await else {
            // Quiet: the burst is over, or its end was skipped while throttled. A command
            // shows when the console is live again.
            assert!(
                throttled,
                "the burst stalled at {lines} lines without a throttle notice"
            );
            pings += 1;
            assert!(pings < 15, "the console did not come back after the burst");
            con.send(&format!("ping{pings}")).await;
            continue;
        };
        frames += 1;
        if frames % 500 == 0 {
            // The API answers while the console is flooded.
            let (s, _) = d.get("/servers").await;
            assert_eq!(s, StatusCode::OK);
            list_ok += 1;
        }
        if f["type"] == "log" {
            let l = f["data"].as_str().unwrap();
            if l.starts_with("burst ") && l != "burst done" {
                lines += 1;
            }
            if l == "burst done" || l.starts_with("console: ping") {
                break;
            }
        }
        if f["type"] == "error" && f["message"].as_str().unwrap().contains("throttled") {
            throttled = true;
        }
    }
    assert!(list_ok > 0);
    assert!(
        lines == 20000 || throttled,
        "{lines} lines and no throttle notice"
    );
    // The console still works after the burst.
    con.send("after").await;
    con.wait_line("console: after").await;
}

#[tokio::test]
async fn a_slow_client_is_dropped_while_another_keeps_up() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.slow");
    d.create_running(&uid).await;
    let mut slow = Console::connect(&d, &uid).await;
    let mut fast = Console::connect(&d, &uid).await;
    fast.wait_line("listening on port").await;
    // 14,000 lines of 2 KiB (28 MiB, paced under the rate limit): far more than a client's
    // queue and the socket buffers hold.
    fast.send("wide 14000").await;
    let mut dropped = false;
    loop {
        let f = fast
            .next_raw(LONG)
            .await
            .expect("the fast client keeps receiving");
        if f.contains("\"wide done\"") || f.contains("output resumed") {
            break;
        }
        assert!(!f.contains("too slowly"), "the fast client was dropped");
    }
    // The slow one now reads what it had, then the notice, then the socket closes.
    while let Some(f) = slow.next(LONG).await {
        if f["type"] == "error" && f["message"].as_str().unwrap().contains("too slowly") {
            dropped = true;
        }
    }
    assert!(dropped, "the slow client was not told it was dropped");
    fast.send("still-here").await;
    fast.wait_line("console: still-here").await;
}

#[tokio::test]
async fn daemon_restart_reattaches_consoles_and_keeps_exits() {
    let mut d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.phoenix");
    d.create_running(&uid).await;
    let mut ev = Events::open(&d, Some(&uid)).await;
    d.post(
        &format!("/server/command/{uid}"),
        json!({"command": "crash"}),
    )
    .await;
    ev.wait(LONG, "the restart", |e| e["type"] == "restart")
        .await;
    d.wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    drop(ev);

    d.restart().await;
    let (s, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["container_state"], "running", "{v}");
    assert_eq!(v["exits"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["last_exit"]["class"], "crash");
    let mut con = Console::connect(&d, &uid).await;
    // The replay comes from the engine's log: the game's lines from before the restart.
    con.wait_line("listening on port").await;
    con.send("back").await;
    con.wait_line("console: back").await;
    support::cleanup_instance(&d.engine, &d.instance).await;
}

#[tokio::test]
async fn a_container_from_an_older_peon_gets_stdin_at_its_next_start() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.old");
    d.create_running(&uid).await;
    let (s, _) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    // The container as an older peon made it: no stdin, the engine's restart policy.
    let name = format!("peon.warcamp.{uid}");
    d.engine.remove_container(&name).await.unwrap();
    let out = std::process::Command::new("docker")
        .args(["create", "--name", &name, "--restart", "unless-stopped"])
        .args(["--label", &format!("peon.instance={}", d.instance)])
        .args(["--label", &format!("peon.uid={uid}")])
        .arg(support::GAME_IMAGE)
        .output()
        .expect("docker create");
    assert!(out.status.success(), "{out:?}");
    let old = d.engine.inspect(&name).await.unwrap().unwrap();
    assert!(!old.stdin_open);

    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new = d.engine.inspect(&name).await.unwrap().unwrap();
    assert!(new.stdin_open, "recreated with stdin");
    assert_eq!(new.restart_policy, "no");
    assert_ne!(new.id, old.id);
    let mut con = Console::connect(&d, &uid).await;
    let (s, v) = d
        .post(&format!("/server/command/{uid}"), json!({"command": "hi"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    con.wait_line("console: hi").await;
}
