//! `peon bench players` and `peon bench wake`, against the release daemon (this executable
//! started as `peon serve`, like `peon bench live`), with the stand-in game and peon's query
//! responder (`tools/query-responder`) in its image.
//!
//! - players: `GET /servers` latency with N running servers and no player queries, then the
//!   same servers with an A2S query each (the daemon restarted over the same data dir, the
//!   containers left running): the list latency while the poller asks all N every 5 s, and how
//!   long after every game's count changed all N show it (one cache period plus the query
//!   timeout at most, if the poller keeps up).
//! - wake: one server, started the plain way (the request sent, then the game's TCP port polled
//!   until it greets) beside woken by a connection to its held port (the same polling), a few
//!   rounds each; the difference is what wake on connect adds.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::common::{Daemon, EngineArgs, Fixture, IMAGE, KEY, timed_get};
use super::{ms, summarize};

/// The stand-in game with the query responder.
pub const QUERY_IMAGE: &str = "peon/demo-game-query:latest";
/// The poller's cache period (the service's `PLAYERS_INTERVAL`).
const CACHE: Duration = crate::service::PLAYERS_INTERVAL;

/// Options of the players benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct PlayersBench {
    /// Running servers, each with a query.
    #[arg(long, default_value_t = 100)]
    pub servers: usize,
    /// `GET /servers` requests per latency row.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// The static query responder (built with `cargo build --release --target
    /// x86_64-unknown-linux-gnu --manifest-path tools/query-responder/Cargo.toml` and
    /// `RUSTFLAGS=-C target-feature=+crt-static`).
    #[arg(
        long,
        default_value = "target/query-responder/x86_64-unknown-linux-gnu/release/peon-query-responder"
    )]
    pub responder: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Options of the wake benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct WakeBench {
    /// Rounds of each kind of start.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The static query responder (see `peon bench players --help`).
    #[arg(
        long,
        default_value = "target/query-responder/x86_64-unknown-linux-gnu/release/peon-query-responder"
    )]
    pub responder: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Builds [`QUERY_IMAGE`] from the stand-in game image and the responder binary.
async fn query_image(fixture: &Fixture, responder: &PathBuf) -> Result<(), String> {
    let bin = std::fs::read(responder).map_err(|e| {
        format!(
            "{}: {e}; build it: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu --manifest-path tools/query-responder/Cargo.toml --target-dir target/query-responder",
            responder.display()
        )
    })?;
    let dockerfile = format!("FROM {IMAGE}\nCOPY peon-query-responder /bin/peon-query-responder\n");
    let mut ar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", dockerfile.as_bytes()),
        ("peon-query-responder", bin.as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        ar.append_data(&mut h, name, data)
            .map_err(|e| e.to_string())?;
    }
    let ctx = ar.into_inner().map_err(|e| e.to_string())?;
    fixture
        .engine
        .build_image(QUERY_IMAGE, ctx)
        .await
        .map_err(|e| e.to_string())
}

/// Writes the bench plan: one group per server with a game port (tcp) and a query port (udp),
/// with or without the A2S query.
fn write_plan(fixture: &Fixture, groups: &[(u16, u16)], query: bool) -> Result<(), String> {
    let dir = fixture.data_dir().join("plans/bench");
    let mut plan = json!({
        "metadata": {"game_uid": "bench", "version": "1.0.0", "description": "bench", "image": QUERY_IMAGE},
        "ports": groups.iter().map(|(p, q)| json!([{"PORT": [p.to_string(), "tcp"]}, {"QUERY_PORT": [q.to_string(), "udp"]}])).collect::<Vec<_>>(),
        "environment": {"SERVER_NAME": "bench", "MOTD": "hi"},
        "volumes": {"~!/actions": "/actions", "~!/config": "/home/steam/config",
                    "~!/data": "/home/steam/steamcmd/data", "~!/user": "/home/steam/user"}
    });
    if query {
        plan["query"] = json!({"protocol": "a2s", "port": "QUERY_PORT"});
    }
    std::fs::write(dir.join("plan.json"), plan.to_string()).map_err(|e| e.to_string())
}

/// Free ports: a TCP one and a UDP one per server, all held until all are chosen.
fn port_pairs(n: usize) -> Result<Vec<(u16, u16)>, String> {
    let err = |e: std::io::Error| e.to_string();
    let tcp = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(err))
        .collect::<Result<Vec<_>, _>>()?;
    let udp = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").map_err(err))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(n);
    for (t, u) in tcp.iter().zip(&udp) {
        out.push((
            t.local_addr().map_err(err)?.port(),
            u.local_addr().map_err(err)?.port(),
        ));
    }
    Ok(out)
}

async fn servers(d: &Daemon) -> Result<Vec<Value>, String> {
    let r = d
        .http
        .get(d.url("/servers"))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    r.json::<Vec<Value>>().await.map_err(|e| e.to_string())
}

/// Waits (at most `within`) until `pred` holds for every server; the time it took.
async fn until_all(
    d: &Daemon,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let list = servers(d).await?;
        if !list.is_empty() && list.iter().all(&pred) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > within {
            let n = list.iter().filter(|v| pred(v)).count();
            return Err(format!(
                "only {n} of {} servers within {within:?}",
                list.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the players benchmark and prints its figures.
pub async fn run(opts: PlayersBench) -> Result<(), String> {
    let fixture = Fixture::prepare(&opts.engine, 1).await?;
    let r = measure_players(&opts, &fixture).await;
    fixture.cleanup().await;
    let rows = r?;
    println!();
    for (k, v) in rows {
        println!("{k:58} {v}");
    }
    Ok(())
}

async fn measure_players(
    opts: &PlayersBench,
    fixture: &Fixture,
) -> Result<Vec<(String, String)>, String> {
    query_image(fixture, &opts.responder).await?;
    let n = opts.servers.max(1);
    let groups = port_pairs(n)?;
    write_plan(fixture, &groups, false)?;
    let mut rows = Vec::new();

    let mut d = fixture.start_daemon().await?;
    eprintln!("creating {n} servers");
    d.grow_to(n).await?;
    let (m0, p0) = summarize(d.time_get("/servers", opts.requests).await?);
    rows.push((
        format!("GET /servers, {n} servers, no queries: median / p95"),
        format!("{} / {} ms", ms(m0), ms(p0)),
    ));
    drop(d);

    // The same servers, each with a query: the configs say so, the daemon reads them at start.
    for i in 0..n {
        let f = fixture
            .data_dir()
            .join(format!("servers/bench/s{i}/config.json"));
        let mut c: Value = serde_json::from_slice(&std::fs::read(&f).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        c["query"] = json!({"protocol": "a2s", "port": "QUERY_PORT"});
        std::fs::write(&f, c.to_string()).map_err(|e| e.to_string())?;
    }
    write_plan(fixture, &groups, true)?;
    let d = fixture.start_daemon().await?;
    let first = until_all(&d, CACHE * 4, |v| v["players"].is_number()).await?;
    rows.push((
        format!("first counts of all {n} servers after the daemon started"),
        format!("{} ms", ms(first)),
    ));

    // List latency over three cache periods while the poller asks every game.
    let url = d.url("/servers");
    let t = Instant::now();
    let mut samples = Vec::new();
    while t.elapsed() < CACHE * 3 || samples.len() < opts.requests {
        samples.push(timed_get(&d.http, &url).await?);
    }
    let (m1, p1) = summarize(samples.clone());
    let worst = samples.iter().max().copied().unwrap_or_default();
    rows.push((
        format!("GET /servers, {n} servers, poller asking all: median / p95"),
        format!(
            "{} / {} ms (worst {} ms, {} requests)",
            ms(m1),
            ms(p1),
            ms(worst),
            samples.len()
        ),
    ));

    // Every game's count changes; how long until the list shows all of them.
    let cmds = (0..n).map(|i| {
        let (http, url) = (
            d.http.clone(),
            d.url(&format!("/server/command/bench.s{i}")),
        );
        async move {
            http.post(url)
                .header("X-Api-Key", KEY)
                .json(&json!({"command": "players 1"}))
                .send()
                .await
                .map_err(|e| e.to_string())
        }
    });
    for r in futures_util::stream::iter(cmds)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
    {
        r?;
    }
    let fresh = until_all(&d, CACHE * 4, |v| v["players"] == 1).await?;
    let goal = CACHE + crate::service::QUERY_TIMEOUT;
    rows.push((
        format!("all {n} new counts shown after the games changed"),
        format!(
            "{} ms (goal <= {} ms: one cache period + the query timeout; {})",
            ms(fresh),
            goal.as_millis(),
            if fresh <= goal { "met" } else { "NOT met" }
        ),
    ));
    drop(d);
    Ok(rows)
}

/// Polls the game's TCP port until it greets; the time from `t0`.
async fn until_greeting(port: u16, t0: Instant, within: Duration) -> Result<Duration, String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut buf)).await;
            if matches!(read, Ok(Ok(_))) && !buf.is_empty() {
                return Ok(t0.elapsed());
            }
        }
        if t0.elapsed() > within {
            return Err(format!(
                "the game did not greet on {port} within {within:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn put(d: &Daemon, path: &str, body: Value) -> Result<Value, String> {
    let r = d
        .http
        .put(d.url(path))
        .header("X-Api-Key", KEY)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = r.status().is_success();
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if ok {
        Ok(v)
    } else {
        Err(format!("{path}: {v}"))
    }
}

/// Runs the wake benchmark and prints its figures.
pub async fn run_wake(opts: WakeBench) -> Result<(), String> {
    let fixture = Fixture::prepare(&opts.engine, 1).await?;
    let r = measure_wake(&opts, &fixture).await;
    fixture.cleanup().await;
    let (plain, woken) = r?;
    let (pm, _) = summarize(plain.clone());
    let (wm, _) = summarize(woken.clone());
    let added = wm.saturating_sub(pm);
    println!();
    println!(
        "{:46} {} ms (rounds: {})",
        "plain start until the game greets: median",
        ms(pm),
        plain.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "{:46} {} ms (rounds: {})",
        "woken by a connection until it greets: median",
        ms(wm),
        woken.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "{:46} {} ms (goal < 100 ms: {})",
        "added by wake on connect",
        ms(added),
        if added < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

async fn measure_wake(
    opts: &WakeBench,
    fixture: &Fixture,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    query_image(fixture, &opts.responder).await?;
    let groups = port_pairs(1)?;
    let port = groups[0].0;
    write_plan(fixture, &groups, true)?;
    let mut d = fixture.start_daemon().await?;
    d.grow_to(1).await?;
    let uid = "bench.s0";
    let (mut plain, mut woken) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds.max(1) {
        eprintln!("round {}", round + 1);
        // Plain: stopped, then the start request, then the port polled.
        put(&d, &format!("/server/stop/{uid}"), json!({})).await?;
        let t0 = Instant::now();
        let start = {
            let (http, url) = (d.http.clone(), d.url(&format!("/server/start/{uid}")));
            tokio::spawn(async move {
                http.put(url)
                    .header("X-Api-Key", KEY)
                    .json(&json!({}))
                    .send()
                    .await
            })
        };
        plain.push(until_greeting(port, t0, Duration::from_secs(60)).await?);
        let _ = start.await;

        // Woken: idle-stopped with its ports held, then a connection, then the port polled.
        put(
            &d,
            &format!("/server/options/{uid}"),
            json!({"idle_stop": "1s", "idle_grace": "1s", "wake_on_connect": true}),
        )
        .await?;
        let t = Instant::now();
        loop {
            let v = servers(&d).await?;
            if v.first().is_some_and(|s| s["sleeping"] == true) {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err("the server was not idle-stopped within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        put(
            &d,
            &format!("/server/options/{uid}"),
            json!({"idle_stop": "off"}),
        )
        .await?;
        let t0 = Instant::now();
        let knock = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        drop(knock);
        woken.push(until_greeting(port, t0, Duration::from_secs(60)).await?);
        put(
            &d,
            &format!("/server/options/{uid}"),
            json!({"wake_on_connect": false}),
        )
        .await?;
    }
    drop(d);
    Ok((plain, woken))
}
