//! Servers survive: daemon restarts, containers removed behind peon's back, concurrent actions,
//! a Docker engine that goes away and comes back, and a daemon killed at any moment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};

use crate::support::{self, Daemon, Opts, wait_for};

#[tokio::test]
async fn daemon_restart_keeps_servers_and_states() {
    let mut d = Daemon::start().await;
    let (game, _) = d.new_game(2);
    let (up, down) = (format!("{game}.up"), format!("{game}.down"));
    d.create_running(&up).await;
    d.create_running(&down).await;
    let (s, _) = d.put(&format!("/server/stop/{down}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let started = d
        .engine
        .inspect(&format!("peon.warcamp.{up}"))
        .await
        .unwrap()
        .unwrap()
        .started_at;

    d.restart().await;
    let (s, list) = d.get("/servers").await;
    assert_eq!(s, StatusCode::OK);
    let state = |uid: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["uid"] == uid)
            .map(|s| s["container_state"].clone())
    };
    assert_eq!(state(&up), Some(json!("running")), "{list}");
    assert_eq!(state(&down), Some(json!("exited")), "{list}");
    // The running game was left alone, not restarted.
    let again = d
        .engine
        .inspect(&format!("peon.warcamp.{up}"))
        .await
        .unwrap()
        .unwrap()
        .started_at;
    assert_eq!(started, again);
}

#[tokio::test]
async fn a_container_removed_behind_peons_back_is_rebuilt() {
    let mut d = Daemon::start().await;
    let (game, ports) = d.new_game(1);
    let uid = format!("{game}.gone");
    d.create_running(&uid).await;
    d.engine
        .remove_container(&format!("peon.warcamp.{uid}"))
        .await
        .unwrap();

    // The live model sees the removal from the engine's events.
    let v = d
        .wait_server(&uid, Duration::from_secs(20), |v| {
            v["container_state"] == "missing"
        })
        .await;
    assert_eq!(v["server_state"], "missing", "{v}");

    // Start recreates the container from the server's saved config; the world is still there.
    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running");
    let boots = std::fs::read_to_string(d.server_dir(&uid).join("user/boots")).unwrap();
    assert_eq!(boots.trim(), "2");
    let greeting = wait_for(Duration::from_secs(10), "the game", || {
        support::game_greeting(ports[0])
    })
    .await;
    assert_eq!(greeting, "hello");

    // The host wants it running: after another removal, a restarted daemon brings it back.
    d.engine
        .remove_container(&format!("peon.warcamp.{uid}"))
        .await
        .unwrap();
    d.restart().await;
    d.wait_server(&uid, Duration::from_secs(30), |v| {
        v["container_state"] == "running"
    })
    .await;
}

#[tokio::test]
async fn concurrent_actions_on_one_server_are_serialized() {
    let d = Arc::new(Daemon::start().await);
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.busy");
    d.create_running(&uid).await;
    let actions = [
        "stop", "start", "restart", "stop", "start", "restart", "start", "stop",
    ];
    let mut tasks = Vec::new();
    for a in actions {
        let d = d.clone();
        let uid = uid.clone();
        tasks.push(tokio::spawn(async move {
            (a, d.put(&format!("/server/{a}/{uid}"), json!({})).await)
        }));
    }
    for t in tasks {
        let (a, (s, v)) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{a}: {v}");
        let want = if a == "stop" { "exited" } else { "running" };
        assert_eq!(
            v["container_state"], want,
            "{a} answered the state it produced: {v}"
        );
    }
    let cs = d.engine.list_labelled("peon.uid", &uid).await.unwrap();
    assert_eq!(cs.len(), 1, "exactly one container");
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["container_state"], cs[0].state);
}

/// A unix socket that forwards to the real engine and can be switched off and on.
struct EngineProxy {
    path: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Live connections, cut when the proxy goes down (as an engine restart cuts them).
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl EngineProxy {
    fn new(dir: &Path) -> EngineProxy {
        let mut p = EngineProxy {
            path: dir.join("docker.sock"),
            task: None,
            conns: Default::default(),
        };
        p.up();
        p
    }

    fn up(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        let conns = self.conns.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let t = tokio::spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                conns.lock().unwrap().push(t.abort_handle());
            }
        }));
    }

    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test]
async fn docker_outage_actions_are_503_lists_from_memory_and_consoles_reattach() {
    let sock_dir = tempfile::tempdir().unwrap();
    let mut proxy = EngineProxy::new(sock_dir.path());
    let d = Daemon::start_with(Opts {
        docker_host: Some(format!("unix://{}", proxy.path.display())),
        ..Default::default()
    })
    .await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.outage");
    d.create_running(&uid).await;

    let mut console = support::Console::connect(&d, &uid).await;

    proxy.down();
    // Lists answer from the live model, with no engine call.
    let (s, v) = d.get("/servers").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["container_state"], "running", "{v}");
    // Actions need the engine.
    let (s, v) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["err_code"], "docker.unavailable");
    assert!(v["info"].as_str().unwrap().contains("unreachable"), "{v}");
    // The daemon itself keeps serving what needs no engine.
    let (s, _) = d.get(&format!("/plan/{game}")).await;
    assert_eq!(s, StatusCode::OK);
    let h: Value = d
        .http
        .get(format!("{}/health", d.root))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["docker"], false);

    proxy.up();
    // peon reconnects, resyncs and re-attaches the console by itself: a command sent through
    // the API reaches the game, and the client that stayed connected sees the echo.
    wait_for(
        Duration::from_secs(30),
        "the console to be re-attached",
        || async {
            let (s, _) = d
                .post(
                    &format!("/server/command/{uid}"),
                    json!({"command": "after-outage"}),
                )
                .await;
            (s == StatusCode::OK).then_some(())
        },
    )
    .await;
    console.wait_line("console: after-outage").await;
    let (s, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running");
    proxy.down();
}

/// Runs the real binary; killed and cleaned up on drop.
pub(crate) struct Proc {
    child: std::process::Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn spawn_daemon(data: &Path, instance: &str, key: &str) -> (Proc, String) {
    let port = support::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_peon"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args([
            "--api-key",
            key,
            "--instance",
            instance,
            "--publish-address",
            "127.0.0.1",
            "--stop-timeout",
            "5",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(20), "the daemon to listen", || async {
        http.get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    (Proc { child }, base)
}

#[tokio::test]
async fn a_daemon_killed_at_any_moment_leaves_every_server_readable() {
    support::ensure_image().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_owned();
    let instance = support::unique("k");
    let guard = Cleanup(instance.clone());
    let key = "kill-test-key";
    let game = support::unique("g");
    let ports: Vec<u16> = (0..6).map(|_| support::free_port()).collect();
    let groups: Vec<&[u16]> = ports.iter().map(std::slice::from_ref).collect();
    support::write_plan(
        &data.join("plans"),
        &game,
        &support::game_plan(&game, &groups),
    );
    std::fs::write(data.join("plans/plans.json"), "[]").unwrap();
    let http = peon::http::client_builder().build().unwrap();

    for round in 0..3u64 {
        let (proc_, base) = spawn_daemon(&data, &instance, key).await;
        // Fire creates, description rewrites and stops, and kill the daemon while they run.
        let mut reqs = Vec::new();
        for i in 0..2 {
            let (http, base) = (http.clone(), base.clone());
            let uid = format!("{game}.r{round}n{i}");
            reqs.push(tokio::spawn(async move {
                let _ = http
                    .put(format!("{base}/server/create/{uid}"))
                    .header("X-Api-Key", key)
                    .json(&json!({"SERVER_NAME": "k", "start_later": i == 0}))
                    .send()
                    .await;
                for n in 0..20 {
                    let _ = http
                        .put(format!("{base}/server/description/{uid}"))
                        .header("X-Api-Key", key)
                        .json(&json!({"description": format!("rewrite {n}")}))
                        .send()
                        .await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + 200 * round)).await;
        drop(proc_); // SIGKILL
        for r in reqs {
            let _ = r.await;
        }
    }

    // Every server folder left behind is readable, and a restarted daemon lists them all.
    let (_proc, base) = spawn_daemon(&data, &instance, key).await;
    let res = http
        .get(format!("{base}/servers"))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let list: Vec<Value> = res.json().await.unwrap();
    let mut on_disk = 0;
    for e in std::fs::read_dir(data.join("servers").join(&game))
        .into_iter()
        .flatten()
    {
        let e = e.unwrap();
        let cfg: Value =
            serde_json::from_slice(&std::fs::read(e.path().join("config.json")).unwrap())
                .unwrap_or_else(|err| panic!("{} unreadable: {err}", e.path().display()));
        assert!(cfg["metadata"]["description"].is_string());
        on_disk += 1;
    }
    assert_eq!(list.len(), on_disk, "{list:?}");
    assert!(on_disk > 0, "at least one create finished before a kill");
    // No temporary files are left next to configs, and staging was cleared.
    let leftovers = std::fs::read_dir(data.join("servers/.staging"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
    drop(guard);
}

/// Removes an instance's containers and networks when dropped.
pub(crate) struct Cleanup(pub(crate) String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        support::cleanup_instance_blocking(&self.0);
    }
}

#[tokio::test]
async fn a_daemon_started_while_the_engine_is_down_says_unknown_then_catches_up() {
    let sock_dir = tempfile::tempdir().unwrap();
    let mut proxy = EngineProxy::new(sock_dir.path());
    let mut d = Daemon::start_with(Opts {
        docker_host: Some(format!("unix://{}", proxy.path.display())),
        ..Default::default()
    })
    .await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.blind");
    d.create_running(&uid).await;

    proxy.down();
    d.restart().await;
    // peon never saw the engine since it started: it says so rather than guess.
    let (s, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "unknown", "{v}");
    assert_eq!(v["server_state"], "unknown", "{v}");

    proxy.up();
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["server_state"] == "running"
        })
        .await;
    assert_eq!(v["container_state"], "running");
    proxy.down();
}
