//! `peon bench api`: latency of `GET /servers` and `GET /server/get` with 1, 10 and 100 running
//! servers, next to the Docker engine's own list call, and the daemon's memory.
//!
//! It runs the real daemon binary as a child process on 127.0.0.1 with a temporary data dir and
//! its own instance label, creates stand-in game servers from a bench plan, and removes
//! everything it made at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{ms, summarize};
use crate::docker::{Engine, labels};

/// Options of the API benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiBench {
    /// Server counts to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub servers: Vec<usize>,
    /// Requests per measurement.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Docker engine address.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,
    /// The static busybox binary for the stand-in game image (built when missing).
    #[arg(long, default_value = "/bin/busybox")]
    pub busybox: PathBuf,
}

const IMAGE: &str = "peon/demo-game:latest";
const KEY: &str = "bench-key";

struct Daemon {
    child: Child,
    base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn write_plan(plans: &Path, ports: &[u16]) -> Result<(), String> {
    let dir = plans.join("bench");
    std::fs::create_dir_all(dir.join("actions")).map_err(|e| e.to_string())?;
    let groups: Vec<Value> = ports
        .iter()
        .map(|p| json!([{ "PORT": [p.to_string(), "tcp"] }]))
        .collect();
    let plan = json!({
        "metadata": {"game_uid": "bench", "version": "1.0.0", "description": "bench", "image": IMAGE},
        "ports": groups,
        "environment": {"SERVER_NAME": "bench", "MOTD": "hi"},
        "volumes": {"~!/actions": "/actions", "~!/config": "/home/steam/config",
                    "~!/data": "/home/steam/steamcmd/data", "~!/user": "/home/steam/user"}
    });
    let w = |p: PathBuf, b: &[u8]| std::fs::write(p, b).map_err(|e| e.to_string());
    w(dir.join("plan.json"), plan.to_string().as_bytes())?;
    w(
        dir.join("actions/server_start"),
        include_str!("../../plans/demo/actions/server_start").as_bytes(),
    )?;
    w(plans.join("plans.json"), b"[]")
}

async fn time_get(http: &reqwest::Client, url: &str, n: usize) -> Result<Vec<Duration>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http
            .get(url)
            .header("X-Api-Key", KEY)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{url}: {}", r.status()));
        }
        r.bytes().await.map_err(|e| e.to_string())?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// Runs the benchmark and prints a table.
pub async fn run(opts: ApiBench) -> Result<(), String> {
    let engine = Engine::new(&opts.docker_host);
    if engine
        .image_env(IMAGE)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let bin =
            std::fs::read(&opts.busybox).map_err(|e| format!("{}: {e}", opts.busybox.display()))?;
        let ctx = crate::docker::busybox_game_context(&bin).map_err(|e| e.to_string())?;
        engine
            .build_image(IMAGE, ctx)
            .await
            .map_err(|e| e.to_string())?;
    }
    let max = opts.servers.iter().copied().max().unwrap_or(1);
    let tmp = std::env::temp_dir().join(format!("peon-bench-{}", std::process::id()));
    let instance = format!("bench{}", std::process::id());
    // Hold every listener until all ports are chosen, so none is handed out twice.
    let held = (0..max)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    drop(held);
    write_plan(&tmp.join("plans"), &ports)?;
    let result = measure(&opts, &engine, &tmp, &instance).await;
    // Clean up whatever happened.
    if let Ok(cs) = engine.list_labelled(labels::INSTANCE, &instance).await {
        for c in cs {
            let _ = engine.remove_container(&c.name).await;
        }
    }
    if let Ok(ns) = engine.networks_labelled(labels::INSTANCE, &instance).await {
        for n in ns {
            let _ = engine.remove_network(&n).await;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn measure(
    opts: &ApiBench,
    engine: &Engine,
    tmp: &Path,
    instance: &str,
) -> Result<(), String> {
    let port = free_port()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--api-key",
            KEY,
        ])
        .arg("--data-dir")
        .arg(tmp)
        .args([
            "--instance",
            instance,
            "--publish-address",
            "127.0.0.1",
            "--docker-host",
            &opts.docker_host,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let d = Daemon {
        child,
        base: format!("http://127.0.0.1:{port}/api/v1"),
    };
    let http = crate::http::client_builder()
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{}/orchestrator", d.base))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err("the daemon did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid).unwrap_or(0);
    println!(
        "peon bench api: daemon pid {pid}, {} requests per row",
        opts.requests
    );
    println!(
        "idle memory (no servers): {:.1} MiB RSS",
        idle as f64 / 1024.0
    );
    println!();
    println!(
        "{:>7}  {:>22}  {:>22}  {:>22}  {:>7}  {:>7}",
        "servers",
        "GET /servers p50/p95",
        "GET /server/get p50/p95",
        "engine list p50/p95",
        "ratio",
        "ratio"
    );
    println!(
        "{:>7}  {:>22}  {:>22}  {:>22}  {:>7}  {:>7}",
        "", "(ms)", "(ms)", "(ms)", "servers", "get"
    );
    let mut made = 0usize;
    let mut counts = opts.servers.clone();
    counts.sort_unstable();
    for n in counts {
        // Grow to n running servers, 8 creates at a time.
        while made < n {
            let batch: Vec<usize> = (made..n.min(made + 8)).collect();
            let reqs = batch.iter().map(|i| {
                let url = format!("{}/server/create/bench.s{i}", d.base);
                let http = http.clone();
                async move {
                    let r = http
                        .put(url)
                        .header("X-Api-Key", KEY)
                        .json(&json!({}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!(
                            "create: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
            });
            for r in futures_util::stream::iter(reqs)
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
            {
                r?;
            }
            made = batch.last().map_or(made, |l| l + 1);
        }
        let list = summarize(time_get(&http, &format!("{}/servers", d.base), opts.requests).await?);
        let get = summarize(
            time_get(
                &http,
                &format!("{}/server/get/bench.s0", d.base),
                opts.requests,
            )
            .await?,
        );
        let mut eng = Vec::with_capacity(opts.requests);
        for _ in 0..opts.requests {
            let t = Instant::now();
            engine
                .list_labelled(labels::INSTANCE, instance)
                .await
                .map_err(|e| e.to_string())?;
            eng.push(t.elapsed());
        }
        let eng = summarize(eng);
        let ratio = |a: Duration| a.as_secs_f64() / eng.0.as_secs_f64().max(1e-9);
        println!(
            "{n:>7}  {:>22}  {:>22}  {:>22}  {:>6.2}x  {:>6.2}x",
            format!("{} / {}", ms(list.0), ms(list.1)),
            format!("{} / {}", ms(get.0), ms(get.1)),
            format!("{} / {}", ms(eng.0), ms(eng.1)),
            ratio(list.0),
            ratio(get.0),
        );
    }
    println!();
    println!(
        "memory with {made} servers: {:.1} MiB RSS",
        rss_kib(pid).unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}
