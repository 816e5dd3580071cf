//! The `peon` CLI against a daemon started by the test: the real binary with PEON_URL and
//! PEON_API_KEY, every subcommand's happy path, and the failure modes with their exit codes
//! (1 API error, 2 usage, 3 daemon unreachable).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::support::{Daemon, Opts, free_port, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_peon");

/// What one run of the CLI did.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// A CLI command with only the given environment (no key or URL leaking in from the host).
fn command(env: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.args(args)
        .env_remove("PEON_URL")
        .env_remove("PEON_API_KEY")
        .env_remove("API_KEY")
        .env_remove("PEON_LISTEN")
        .env_remove("PEON_CONFIG")
        .env_remove("PEON_DATA_DIR")
        .env_remove("HOST_DIR")
        .env_remove("PEON_HOST_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

async fn run_env(env: &[(&str, &str)], args: &[&str]) -> Out {
    let o = command(env, args).output().await.expect("run peon");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `peon <args>` against `d`.
async fn peon(d: &Daemon, args: &[&str]) -> Out {
    run_env(&[("PEON_URL", &d.root), ("PEON_API_KEY", &d.key)], args).await
}

#[tokio::test]
async fn cli_server_lifecycle() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.cli");

    let o = peon(
        &d,
        &[
            "server",
            "create",
            &uid,
            "--set",
            "SERVER_NAME=Cli Test",
            "--description",
            "made by the cli",
        ],
    )
    .await
    .ok();
    assert!(o.stdout.contains(&uid), "{o:?}");
    assert!(o.stdout.contains("running"), "{o:?}");
    assert!(
        o.stderr.is_empty(),
        "no progress line when not a TTY: {o:?}"
    );

    let o = peon(&d, &["servers"]).await.ok();
    let header = o.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("UID") && header.contains("STATE"),
        "{o:?}"
    );
    let row = o.stdout.lines().find(|l| l.contains(&uid)).expect("row");
    assert!(
        row.contains("running") && row.contains("made by the cli"),
        "{row}"
    );

    let v = peon(&d, &["servers", "--json"]).await.ok().json();
    assert_eq!(v[0]["uid"], uid.as_str());

    let v = peon(&d, &["server", "get", &uid, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v["description"], "made by the cli");
    let o = peon(&d, &["server", "get", &uid]).await.ok();
    assert!(o.stdout.contains("config.server_name"), "{o:?}");

    let o = peon(&d, &["server", "stats", &uid]).await.ok();
    assert!(
        o.stdout.contains("cpu") && o.stdout.contains("memory"),
        "{o:?}"
    );
    let v = peon(&d, &["server", "stats", &uid, "--json"])
        .await
        .ok()
        .json();
    assert!(v["memory_bytes"].as_u64().unwrap_or(0) > 0, "{v}");

    let o = wait_for(Duration::from_secs(15), "the game's log", || async {
        let o = peon(&d, &["server", "logs", &uid, "--lines", "50"]).await;
        (o.code == 0 && o.stdout.contains("listening on port")).then_some(o)
    })
    .await;
    assert!(o.stdout.contains("booting (boot #1)"), "{o:?}");
    let v = peon(&d, &["server", "logs", &uid, "--json"])
        .await
        .ok()
        .json();
    assert!(v["logs"].is_array(), "{v}");

    let o = peon(&d, &["server", "describe", &uid, "a", "new", "text"])
        .await
        .ok();
    assert_eq!(o.stdout.trim(), format!("{uid}: a new text"));

    let o = peon(&d, &["server", "stop", &uid]).await.ok();
    assert_eq!(o.stdout.trim(), format!("{uid}: exited"));
    let o = peon(&d, &["server", "start", &uid, "--interval", "2h"])
        .await
        .ok();
    assert!(o.stdout.contains("running (stops at"), "{o:?}");
    let v = peon(&d, &["server", "restart", &uid, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v["container_state"], "running");
    let o = peon(&d, &["server", "update", &uid, "--mode", "server"])
        .await
        .ok();
    assert!(o.stdout.contains(&uid), "{o:?}");

    let dir = tempfile::tempdir().expect("tmp");
    let zip = dir.path().join("b.zip");
    let o = peon(
        &d,
        &[
            "server",
            "save",
            &uid,
            "--output",
            zip.to_str().expect("utf8"),
        ],
    )
    .await
    .ok();
    assert!(o.stdout.starts_with("saved "), "{o:?}");
    let bytes = std::fs::read(&zip).expect("zip written");
    assert_eq!(&bytes[..2], b"PK", "a zip file");
    // Into a directory: the daemon's file name.
    let o = peon(
        &d,
        &[
            "server",
            "save",
            &uid,
            "-o",
            dir.path().to_str().expect("utf8"),
            "--json",
        ],
    )
    .await
    .ok();
    let file = o.json()["file"].as_str().expect("file").to_owned();
    assert!(
        file.ends_with(".zip") && std::path::Path::new(&file).exists(),
        "{file}"
    );

    let o = peon(&d, &["server", "destroy", &uid]).await.ok();
    assert!(!o.stdout.trim().is_empty(), "{o:?}");
    assert!(d.server_dir(&uid).exists(), "destroy keeps the files");

    let o = peon(&d, &["server", "eradicate", &uid]).await;
    assert_eq!(o.code, 2, "eradicate needs --yes: {o:?}");
    assert!(o.stderr.contains("--yes"), "{o:?}");
    assert!(d.server_dir(&uid).exists());
    peon(&d, &["server", "eradicate", &uid, "--yes"]).await.ok();
    assert!(!d.server_dir(&uid).exists(), "eradicate removes the files");

    let o = peon(&d, &["server", "get", &uid]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("404"), "{o:?}");
}

#[tokio::test]
async fn cli_failure_modes_have_distinct_exit_codes() {
    let d = Daemon::start().await;

    // Unknown server: the API's info, exit 1.
    let o = peon(&d, &["server", "get", "nosuchgame.nobody"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.starts_with("peon: ") && o.stderr.contains("HTTP 404"),
        "{o:?}"
    );
    let o = peon(&d, &["server", "start", "nosuchgame.nobody"]).await;
    assert_eq!(o.code, 1, "{o:?}");

    // Bad key: exit 1, and says the key was refused.
    let o = run_env(
        &[("PEON_URL", &d.root), ("PEON_API_KEY", "wrong")],
        &["servers"],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("refused") && o.stderr.contains("401"),
        "{o:?}"
    );

    // No key at all: says where it looked.
    let empty = tempfile::tempdir().expect("tmp");
    let o = run_env(
        &[
            ("PEON_URL", &d.root),
            ("PEON_DATA_DIR", empty.path().to_str().expect("utf8")),
        ],
        &["servers"],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("api.key"), "{o:?}");

    // Daemon down: exit 3.
    let down = format!("http://127.0.0.1:{}", free_port());
    let o = run_env(&[("PEON_URL", &down), ("PEON_API_KEY", "k")], &["servers"]).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stderr.contains("cannot connect"), "{o:?}");
    let o = run_env(&[], &["status", "--url", &down]).await;
    assert_eq!(o.code, 3, "{o:?}");

    // Usage errors: exit 2, from clap and from the CLI's own checks.
    for args in [
        &["server", "frobnicate", "a.b"][..],
        &["server", "get"],
        &["server", "get", "not-a-uid"],
        &["server", "create", "demo.x", "--set", "NOEQUALS"],
        &["servers", "--url", "ftp://x"],
        &["plan"],
    ] {
        let o = peon(&d, args).await;
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
    }

    // Something that is not peon answers: a connection-class error.
    let o = run_env(
        &[
            ("PEON_URL", &format!("{}/nothing-here", d.root)),
            ("PEON_API_KEY", &d.key),
        ],
        &["servers"],
    )
    .await;
    assert_ne!(o.code, 0, "{o:?}");
}

#[tokio::test]
async fn cli_status_health_metrics_capacity() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.mon");
    d.create_running(&uid).await;

    let o = peon(&d, &["status"]).await.ok();
    assert!(o.stdout.starts_with("peon "), "{o:?}");
    assert!(o.stdout.contains("engine: Docker"), "{o:?}");
    assert!(o.stdout.contains("servers: 1 (1 running)"), "{o:?}");
    assert!(o.stdout.contains(&uid), "{o:?}");
    let o = peon(&d, &["status", "--quiet"]).await.ok();
    assert!(o.stdout.is_empty(), "{o:?}");
    let v = peon(&d, &["status", "--json"]).await.ok().json();
    assert_eq!(v["orchestrator"]["instance"], d.instance.as_str());

    let o = peon(&d, &["health"]).await.ok();
    assert!(o.stdout.starts_with("ok"), "{o:?}");
    // health needs no key.
    run_env(&[("PEON_URL", &d.root)], &["health"]).await.ok();

    let o = peon(&d, &["metrics"]).await.ok();
    let row = o.stdout.lines().find(|l| l.contains(&uid)).expect("row");
    assert!(row.contains('%') && row.contains("B"), "{row}");
    let v = peon(&d, &["metrics", "--json"]).await.ok().json();
    assert_eq!(v[0]["uid"], uid.as_str());
    assert!(v[0]["memory_bytes"].as_u64().unwrap_or(0) > 0, "{v}");

    std::fs::write(
        d.server_dir(&uid).join("data/world.bin"),
        vec![7u8; 100_000],
    )
    .expect("write a world file");
    let v = peon(&d, &["capacity", "--json"]).await.ok().json();
    let s = v["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["uid"] == uid.as_str()))
        .expect("server in capacity")
        .clone();
    assert!(s["data_bytes"].as_u64().unwrap_or(0) >= 100_000, "{v}");
    assert!(s["bytes"].as_u64() >= s["data_bytes"].as_u64(), "{v}");
    assert!(v["images"][0]["bytes"].as_u64().unwrap_or(0) > 0, "{v}");
    let o = peon(&d, &["capacity"]).await.ok();
    assert!(
        o.stdout.contains(&uid) && o.stdout.contains("IMAGE"),
        "{o:?}"
    );

    d.put(&format!("/server/stop/{uid}"), serde_json::json!({}))
        .await;
    let o = peon(&d, &["metrics"]).await.ok();
    assert!(o.stdout.contains("No running servers"), "{o:?}");
}

#[tokio::test]
async fn cli_plans_and_plan() {
    let d = Daemon::start().await;
    let o = peon(&d, &["plans"]).await.ok();
    assert!(o.stdout.lines().any(|l| l.starts_with("demo ")), "{o:?}");
    let v = peon(&d, &["plans", "--json"]).await.ok().json();
    assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{v}");

    let o = peon(&d, &["plan", "show", "demo"]).await.ok();
    assert!(
        o.stdout.contains("SETTING") && o.stdout.contains("SERVER_NAME"),
        "{o:?}"
    );
    let short = peon(&d, &["plan", "demo"]).await.ok();
    assert_eq!(
        short.stdout, o.stdout,
        "`peon plan <game>` is `peon plan show <game>`"
    );
    let v = peon(&d, &["plan", "demo", "--json"]).await.ok().json();
    assert!(v.get("SERVER_NAME").is_some(), "{v}");

    let o = peon(&d, &["plan", "show", "nosuchgame"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("404"), "{o:?}");
}

/// `PUT /plans` and the schedules API come with other issues; on a daemon without them the CLI
/// reports the API's answer with exit 1. Re-test the happy paths once they exist.
#[tokio::test]
async fn cli_plans_update_and_schedules_report_the_api_answer() {
    // The plan source is the project's own plans folder: no test reaches for the internet.
    let d = Daemon::start_with(Opts {
        plans_url: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/plans").into()),
        ..Default::default()
    })
    .await;
    for args in [
        &["plans", "update"][..],
        &["schedules"],
        &["schedules", "list", "demo.x"],
        &[
            "schedules",
            "add",
            "demo.x",
            "--action",
            "start",
            "--cron",
            "0 0 18 * * Fri",
        ],
        &["schedules", "remove", "demo.x", "1"],
    ] {
        let o = peon(&d, args).await;
        if o.code == 0 {
            continue; // the endpoint exists on this branch
        }
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert!(o.stderr.starts_with("peon: "), "{args:?}: {o:?}");
    }
    let o = peon(&d, &["schedules", "add", "demo.x", "--action", "start"]).await;
    assert_eq!(o.code, 2, "--cron or --at is required: {o:?}");
}

/// Inside the daemon's container there is no PEON_URL: the CLI finds the daemon from
/// PEON_LISTEN and its key in `<PEON_DATA_DIR>/api.key`, or from the daemon's config file.
#[tokio::test]
async fn cli_finds_the_daemon_from_its_own_settings() {
    let d = Daemon::start().await;
    let listen = d.root.trim_start_matches("http://").to_owned();
    let data = tempfile::tempdir().expect("tmp");
    std::fs::write(data.path().join("api.key"), format!("{}\n", d.key)).expect("key");
    let o = run_env(
        &[
            ("PEON_LISTEN", &listen),
            ("PEON_DATA_DIR", data.path().to_str().expect("utf8")),
        ],
        &["servers", "--json"],
    )
    .await
    .ok();
    assert!(o.json().is_array());

    let port = listen.rsplit(':').next().expect("port");
    let cfg = data.path().join("peon.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"0.0.0.0:{port}\"\napi_key = \"{}\"\ninstance = \"x\"\n",
            d.key
        ),
    )
    .expect("config");
    run_env(
        &[("PEON_CONFIG", cfg.to_str().expect("utf8"))],
        &["status", "-q"],
    )
    .await
    .ok();
}

#[tokio::test]
async fn cli_logs_follow_prints_new_lines() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.follow");
    d.create_running(&uid).await;

    let mut child = command(
        &[("PEON_URL", &d.root), ("PEON_API_KEY", &d.key)],
        &["server", "logs", &uid, "--follow", "-n", "5"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, "listening", Duration::from_secs(15)).await;
    // A restart writes new lines; --follow prints them once.
    d.put(&format!("/server/restart/{uid}"), serde_json::json!({}))
        .await;
    read_until(&mut lines, &mut seen, "boot #2", Duration::from_secs(20)).await;
    let boots = seen.iter().filter(|l| l.contains("boot #1")).count();
    assert_eq!(boots, 1, "no line is printed twice: {seen:?}");
    let _ = child.kill().await;
}

/// `peon server console`: recent output first, each stdin line sent as a command and its
/// output printed, end of input leaves with exit 0; `--json` prints the frames; an unknown
/// server or a refused key is an API error before any upgrade (exit 1).
#[tokio::test]
async fn cli_console_sends_lines_and_prints_output() {
    use tokio::io::AsyncWriteExt;
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.console");
    d.create_running(&uid).await;
    let env = [
        ("PEON_URL", d.root.as_str()),
        ("PEON_API_KEY", d.key.as_str()),
    ];

    let mut child = command(&env, &["server", "console", &uid])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, "listening", Duration::from_secs(15)).await;
    stdin.write_all(b"save\n").await.expect("write");
    read_until(
        &mut lines,
        &mut seen,
        "console: save",
        Duration::from_secs(10),
    )
    .await;
    read_until(
        &mut lines,
        &mut seen,
        "game: saved",
        Duration::from_secs(10),
    )
    .await;
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the console ends at end of input")
        .expect("wait");
    assert!(status.success(), "{status:?}: {seen:?}");

    let mut child = command(&env, &["server", "console", &uid, "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("a first frame")
        .expect("read")
        .expect("a line");
    let v: Value = serde_json::from_str(&first).expect("a JSON frame");
    assert_eq!(v["type"], "connected", "{v}");
    assert_eq!(v["server_uid"], uid.as_str(), "{v}");
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("ends")
        .expect("wait");
    assert!(status.success(), "{status:?}");

    let o = peon(&d, &["server", "console", "nosuchgame.nobody"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("404"), "{o:?}");
    let o = run_env(
        &[("PEON_URL", &d.root), ("PEON_API_KEY", "wrong")],
        &["server", "console", &uid],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("refused") && o.stderr.contains("401"),
        "{o:?}"
    );
}

/// `server command`, `server options`, `server kill` and the new fields of `server get`.
#[tokio::test]
async fn cli_command_options_kill() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.cmd");
    d.create_running(&uid).await;

    wait_for(Duration::from_secs(15), "the game's log", || async {
        let o = peon(&d, &["server", "logs", &uid, "--lines", "50"]).await;
        (o.code == 0 && o.stdout.contains("listening on port")).then_some(())
    })
    .await;
    peon(&d, &["server", "command", &uid, "save"]).await.ok();
    wait_for(Duration::from_secs(10), "the command's output", || async {
        let o = peon(&d, &["server", "logs", &uid, "--lines", "50"]).await;
        (o.code == 0 && o.stdout.contains("console: save")).then_some(())
    })
    .await;
    let v = peon(&d, &["server", "command", &uid, "--json", "say", "hi"])
        .await
        .ok()
        .json();
    assert_eq!(v["status"], "success", "{v}");

    let o = peon(
        &d,
        &[
            "server",
            "options",
            &uid,
            "--restart-policy",
            "never",
            "--stop-grace",
            "5s",
        ],
    )
    .await
    .ok();
    assert!(
        o.stdout.contains("restart policy") && o.stdout.contains("never"),
        "{o:?}"
    );
    let v = peon(&d, &["server", "options", &uid, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v["restart_policy"], "never", "{v}");
    let o = peon(
        &d,
        &["server", "options", &uid, "--restart-policy", "sometimes"],
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");

    let o = peon(&d, &["server", "get", &uid]).await.ok();
    assert!(
        o.stdout.contains("server state") && o.stdout.contains("restart policy"),
        "{o:?}"
    );

    let o = peon(&d, &["server", "kill", &uid]).await.ok();
    assert!(o.stdout.starts_with(&format!("{uid}: ")), "{o:?}");
    let v = d
        .wait_server(&uid, Duration::from_secs(15), |v| {
            v["container_state"] != "running" && v["last_exit"].is_object()
        })
        .await;
    assert!(v["exits"].is_array(), "{v}");
    let o = peon(&d, &["server", "get", &uid]).await.ok();
    assert!(o.stdout.contains("last exit"), "{o:?}");

    let o = peon(&d, &["server", "command", &uid, "save"]).await;
    assert_eq!(o.code, 1, "the game is not running: {o:?}");
    assert!(o.stderr.contains("409"), "{o:?}");
}

/// `peon events`: a line per event while it runs, or JSON objects with --json.
#[tokio::test]
async fn cli_events_stream_what_happens() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.ev");
    d.create_running(&uid).await;
    let env = [
        ("PEON_URL", d.root.as_str()),
        ("PEON_API_KEY", d.key.as_str()),
    ];
    let spawn = |json: bool| {
        let mut args = vec!["events", "--uid", uid.as_str()];
        if json {
            args.push("--json");
        }
        command(&env, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let mut table = spawn(false);
    let mut json = spawn(true);
    // Both say when they are subscribed; then something happens.
    for child in [&mut table, &mut json] {
        let mut err = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut said = Vec::new();
        read_until(
            &mut err,
            &mut said,
            "following events",
            Duration::from_secs(20),
        )
        .await;
    }
    d.put(&format!("/server/restart/{uid}"), serde_json::json!({}))
        .await;

    let mut lines = tokio::io::BufReader::new(table.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, &uid, Duration::from_secs(20)).await;
    let line = seen.iter().find(|l| l.contains(&uid)).expect("a line");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert!(
        cols.len() >= 3 && cols[0].ends_with('Z') && cols[1] == uid,
        "{line}"
    );

    let mut lines = tokio::io::BufReader::new(json.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("an event")
        .expect("read")
        .expect("a line");
    let v: Value = serde_json::from_str(&first).expect("one JSON object per line");
    assert_eq!(v["uid"], uid.as_str(), "{v}");
    assert!(v["type"].is_string() && v["time"].is_string(), "{v}");

    let _ = table.kill().await;
    let _ = json.kill().await;
    let o = peon(&d, &["events", "--uid", "not-a-uid"]).await;
    assert_eq!(o.code, 2, "{o:?}");
}

/// Reads lines into `seen` until one contains `needle`, failing after `within`.
async fn read_until<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    seen: &mut Vec<String>,
    needle: &str,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !seen.iter().any(|l| l.contains(needle)) {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(l))) => seen.push(l),
            Ok(_) => panic!("the command's output ended early: {seen:?}"),
            Err(_) => panic!("timed out after {within:?} waiting for {needle:?}: {seen:?}"),
        }
    }
}

/// PEON's WebUI fetches `{base}/openapi.json` before it has a key: served without one, and
/// the same document `peon openapi` prints.
#[tokio::test]
async fn openapi_json_is_served_without_the_key() {
    let d = Daemon::start().await;
    let printed = run_env(&[], &["openapi"]).await.ok().json();
    for base in ["/api/1.0", "/api/v1"] {
        let res = d
            .http
            .get(format!("{}{base}/openapi.json", d.root))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), reqwest::StatusCode::OK, "{base}");
        let v: Value = res.json().await.expect("json");
        assert!(v["paths"]["/server/get/{uid}"].is_object(), "{v}");
        assert_eq!(v, printed, "the served document is `peon openapi`'s");
    }
}

/// The entrypoint's checks: the engine answers, the data dir is writable, and in a container
/// HOST_DIR must be set; each failure says what to do, and the exit code is 1.
#[tokio::test]
async fn preflight_checks_say_what_is_wrong() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf8");
    let o = run_env(&[], &["preflight", "--data-dir", data_s])
        .await
        .ok();
    assert!(
        o.stdout.contains("ok   docker") && o.stdout.contains("is writable"),
        "{o:?}"
    );

    let o = run_env(&[], &["preflight", "--data-dir", data_s, "--in-container"]).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("FAIL host dir") && o.stderr.contains("HOST_DIR"),
        "{o:?}"
    );
    run_env(
        &[("HOST_DIR", "/srv/peon")],
        &["preflight", "--data-dir", data_s, "--in-container"],
    )
    .await
    .ok();

    let o = run_env(
        &[("HOST_DIR", "/srv/peon")],
        &[
            "preflight",
            "--data-dir",
            data_s,
            "--docker-host",
            "unix:///nonexistent/docker.sock",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("does not exist: mount"), "{o:?}");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").expect("file");
    let o = run_env(
        &[],
        &["preflight", "--data-dir", file.to_str().expect("utf8")],
    )
    .await;
    assert_eq!(o.code, 1, "a file is not a data dir: {o:?}");
    assert!(o.stderr.contains("FAIL data dir"), "{o:?}");
}

/// Long actions draw a spinner with the elapsed time on a terminal's stderr, and nothing with
/// --json (the other tests run without a terminal and check stderr stays empty).
#[tokio::test]
async fn progress_is_shown_on_a_terminal_only() {
    if which("script").is_none() {
        eprintln!("skipped: util-linux `script` (a pseudo-terminal runner) is not installed");
        return;
    }
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let run = |cmdline: String| {
        let mut c = tokio::process::Command::new("script");
        c.args(["-qec", &cmdline, "/dev/null"])
            .env("PEON_URL", &d.root)
            .env("PEON_API_KEY", &d.key)
            .stdin(Stdio::null());
        c
    };
    let o = run(format!(
        "{BIN} server create {game}.tty --set SERVER_NAME=T"
    ))
    .output()
    .await
    .expect("script");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!("creating {game}.tty")) && text.contains("\x1b[2K"),
        "a spinner line was drawn and cleared: {text:?}"
    );
    let o = run(format!("{BIN} server restart {game}.tty --json"))
        .output()
        .await
        .expect("script");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    assert!(
        !text.contains("restarting"),
        "no spinner with --json: {text:?}"
    );
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

#[tokio::test]
async fn keys_and_audit_commands() {
    let d = Daemon::start().await;
    let out = peon(
        &d,
        &[
            "keys", "create", "ci", "--role", "viewer", "--game", "valheim", "--json",
        ],
    )
    .await
    .ok();
    let v = out.json();
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert_eq!(v["scope"]["games"][0], "valheim", "{v}");
    let out = peon(&d, &["keys", "create", "ops", "--role", "operator"])
        .await
        .ok();
    assert!(out.stdout.contains("secret (shown once"), "{out:?}");

    let out = peon(&d, &["keys", "list"]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("SCOPE"),
        "{out:?}"
    );
    assert!(
        lines[1].starts_with("admin") && lines[1].contains("configured"),
        "{out:?}"
    );
    assert!(
        lines[2].starts_with("ci") && lines[2].contains("valheim.*"),
        "{out:?}"
    );
    assert!(!out.stdout.contains(&secret));
    let out = peon(&d, &["keys", "--json"]).await.ok();
    assert_eq!(out.json().as_array().unwrap().len(), 3);

    // The viewer key may not list keys: exit 1 with the refusal.
    let out = run_env(
        &[("PEON_URL", &d.root), ("PEON_API_KEY", &secret)],
        &["keys", "list"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("may not list keys"), "{out:?}");

    let out = peon(&d, &["keys", "revoke", "ci"]).await.ok();
    assert!(out.stdout.contains("revoked"), "{out:?}");
    let out = peon(&d, &["keys", "revoke", "admin"]).await;
    assert_eq!(out.code, 1, "{out:?}");

    let mut entries = Value::Null;
    for _ in 0..50 {
        entries = peon(&d, &["audit", "--key", "admin", "--json"])
            .await
            .ok()
            .json();
        if entries.as_array().is_some_and(|a| a.len() >= 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entries[0]["route"], "/api/v1/key/{name}", "{entries}");
    let out = peon(&d, &["audit", "-n", "2"]).await.ok();
    assert!(out.stdout.starts_with("TIME"), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 3, "{out:?}");
}

#[tokio::test]
async fn cli_jobs_no_wait_and_follow() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.jobs");
    d.create_running(&uid).await;

    let out = peon(&d, &["server", "stop", &uid, "--no-wait"]).await.ok();
    let id = out.stdout.trim().to_owned();
    assert!(!id.is_empty() && !id.contains(' '), "{out:?}");
    let out = peon(&d, &["job", &id, "--follow"]).await.ok();
    assert!(out.stdout.contains("signal"), "{out:?}");
    assert!(out.stdout.contains("succeeded in"), "{out:?}");

    let out = peon(&d, &["job", &id]).await.ok();
    assert!(out.stdout.contains("requester  admin"), "{out:?}");
    assert!(out.stdout.contains("wait for exit"), "{out:?}");
    let v = peon(&d, &["job", &id, "--json"]).await.ok().json();
    assert_eq!(v["kind"], "stop", "{v}");

    let out = peon(&d, &["jobs", "--uid", &uid]).await.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out:?}");
    assert!(lines[0].contains("REQUESTER"), "{out:?}");
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(
        lines[1].contains("stop") && lines[1].contains("succeeded"),
        "{out:?}"
    );
    assert!(lines[2].contains("create"), "{out:?}");
    let v = peon(&d, &["jobs", "--kind", "create", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");

    let out = peon(&d, &["job", "nope"]).await;
    assert_eq!(out.code, 1, "{out:?}");
}

#[tokio::test]
async fn cli_rollouts() {
    let d = Daemon::start().await;
    let o = peon(&d, &["rollouts"]).await.ok();
    assert!(o.stdout.contains("No rollouts."), "{o:?}");
    let o = peon(
        &d,
        &[
            "rollouts",
            "start",
            "--image",
            "x:1",
            "--uid",
            "nosuch.server",
        ],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("HTTP 404"), "{o:?}");

    let (game, _) = d.new_game(1);
    let uid = format!("{game}.roll");
    d.create_running(&uid).await;
    let o = peon(
        &d,
        &[
            "rollouts",
            "start",
            "--image",
            crate::support::GAME_IMAGE,
            "--uid",
            &uid,
            "--watch",
            "0",
            "--json",
        ],
    )
    .await
    .ok();
    let id = o.json()["id"].as_str().expect("id").to_owned();
    let r = wait_for(Duration::from_secs(60), "the rollout to end", || async {
        let r = peon(&d, &["rollouts", "get", &id, "--json"])
            .await
            .ok()
            .json();
        (r["state"] != "running").then_some(r)
    })
    .await;
    assert_eq!(r["state"], "succeeded", "{r}");
    let o = peon(&d, &["rollouts", "get", &id]).await.ok();
    assert!(
        o.stdout.contains("SERVER") && o.stdout.contains(&uid) && o.stdout.contains("updated"),
        "{o:?}"
    );
    let o = peon(&d, &["rollouts", "abort", &id]).await;
    assert_eq!(o.code, 1, "an ended rollout cannot be aborted: {o:?}");

    // To a plan version: one this host does not have is refused; the one it has is re-applied.
    let o = peon(
        &d,
        &["rollouts", "start", "--plan-version", "9.9", "--uid", &uid],
    )
    .await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("HTTP 409") && o.stderr.contains("1.0.0"),
        "{o:?}"
    );
    let o = peon(
        &d,
        &[
            "rollouts",
            "start",
            "--plan-version",
            "1.0.0",
            "--uid",
            &uid,
            "--watch",
            "0",
            "--json",
        ],
    )
    .await
    .ok();
    let id = o.json()["id"].as_str().expect("id").to_owned();
    let r = wait_for(Duration::from_secs(60), "the rollout to end", || async {
        let r = peon(&d, &["rollouts", "get", &id, "--json"])
            .await
            .ok()
            .json();
        (r["state"] != "running").then_some(r)
    })
    .await;
    assert_eq!(r["state"], "succeeded", "{r}");
    let o = peon(&d, &["rollouts"]).await.ok();
    assert!(o.stdout.contains("plan 1.0.0"), "{o:?}");
    d.cleanup().await;
}

#[tokio::test]
async fn cli_hooks_and_prometheus_metrics() {
    let d = Daemon::start().await;
    let o = peon(
        &d,
        &[
            "hooks",
            "add",
            "ops",
            "http://127.0.0.1:9/hook",
            "-e",
            "crashed",
            "-e",
            "gave_up",
            "--secret",
            "hush",
        ],
    )
    .await
    .ok();
    assert!(
        o.stdout.contains("ops") && !o.stdout.contains("hush"),
        "{o:?}"
    );
    let v = peon(&d, &["hooks", "list", "--json"]).await.ok().json();
    assert_eq!(
        v[0]["events"],
        serde_json::json!(["crashed", "gave_up"]),
        "{v}"
    );
    assert_eq!(v[0]["signed"], true, "{v}");
    let o = peon(&d, &["hooks"]).await.ok();
    assert!(
        o.stdout.starts_with("ID ") && o.stdout.contains("crashed,gave_up"),
        "{o:?}"
    );
    let v = peon(&d, &["hooks", "show", "ops", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(v["dead_letters"], serde_json::json!([]), "{v}");
    let o = peon(&d, &["hooks", "test", "ops"]).await.ok();
    assert!(o.stdout.contains("queued"), "{o:?}");
    peon(&d, &["hooks", "remove", "ops"]).await.ok();
    let o = peon(&d, &["hooks", "remove", "ops"]).await;
    assert_ne!(o.code, 0, "{o:?}");

    let o = peon(&d, &["metrics", "--prometheus"]).await.ok();
    assert!(
        o.stdout.contains("# TYPE peon_engine_connected gauge"),
        "{o:?}"
    );
    let v = peon(&d, &["metrics", "--prometheus", "--json"])
        .await
        .ok()
        .json();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "peon_engine_connected" && s["value"] == 1.0),
        "{v}"
    );
}
