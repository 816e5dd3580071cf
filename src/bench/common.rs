//! What the daemon benchmarks (`peon bench api`, `peon bench live`) share: the stand-in game
//! image and a bench plan with one port per server, the real daemon binary as a child process
//! on 127.0.0.1 with a temporary data dir and its own instance label, servers created through
//! the API, timed requests, the engine's own list call and the daemon's resident memory.
//! [`Fixture::cleanup`] removes everything a run made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::docker::{Engine, labels};

/// The stand-in game image (`peon demo-image`).
pub const IMAGE: &str = "peon/demo-game:latest";
/// The API key the bench daemon is started with.
pub const KEY: &str = "bench-key";

/// Where a benchmark finds the engine and the stand-in game.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
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

/// What one benchmark run made outside the daemon: a temp dir holding the data dir and the
/// bench plan, and the instance label of every container and network the daemon creates.
pub struct Fixture {
    pub engine: Engine,
    pub instance: String,
    tmp: PathBuf,
    docker_host: String,
}

/// The daemon under test, killed when dropped.
pub struct Daemon {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:<port>/api/v1`.
    pub base: String,
    pub http: reqwest::Client,
    /// Servers `bench.s0` .. `bench.s<made - 1>` exist.
    made: usize,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Resident memory of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
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

impl Fixture {
    /// Builds the stand-in game image when the engine lacks it and writes a bench plan with
    /// one port (each a distinct free one) for each of up to `servers` servers.
    pub async fn prepare(args: &EngineArgs, servers: usize) -> Result<Fixture, String> {
        let engine = Engine::new(&args.docker_host);
        if engine
            .image_env(IMAGE)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            let bin = std::fs::read(&args.busybox)
                .map_err(|e| format!("{}: {e}", args.busybox.display()))?;
            let ctx = crate::docker::busybox_game_context(&bin).map_err(|e| e.to_string())?;
            engine
                .build_image(IMAGE, ctx)
                .await
                .map_err(|e| e.to_string())?;
        }
        let tmp = std::env::temp_dir().join(format!("peon-bench-{}", std::process::id()));
        let instance = format!("bench{}", std::process::id());
        // Hold every listener until all ports are chosen, so none is handed out twice.
        let held = (0..servers.max(1))
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        drop(held);
        let fixture = Fixture {
            engine,
            instance,
            tmp,
            docker_host: args.docker_host.clone(),
        };
        if let Err(e) = write_plan(&fixture.tmp.join("plans"), &ports) {
            fixture.cleanup().await;
            return Err(e);
        }
        Ok(fixture)
    }

    /// Starts this executable as `peon serve` on a free port and waits until it answers.
    pub async fn start_daemon(&self) -> Result<Daemon, String> {
        self.start_daemon_on(&self.docker_host, false).await
    }

    /// [`Fixture::start_daemon`] against another engine, in cluster mode when `cluster`.
    pub async fn start_daemon_on(
        &self,
        docker_host: &str,
        cluster: bool,
    ) -> Result<Daemon, String> {
        let port = free_port()?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        if cluster {
            cmd.env("PEON_CLUSTER", "true");
        }
        let child = cmd
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--api-key",
                KEY,
            ])
            .arg("--data-dir")
            .arg(&self.tmp)
            .args([
                "--instance",
                &self.instance,
                "--publish-address",
                "127.0.0.1",
                "--docker-host",
                docker_host,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let d = Daemon {
            pid: child.id(),
            child,
            base: format!("http://127.0.0.1:{port}/api/v1"),
            http: crate::http::client_builder()
                .build()
                .map_err(|e| e.to_string())?,
            made: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d
            .http
            .get(d.url("/orchestrator"))
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
        // Let start-up work (the engine check, reconcile) settle before anything is measured.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(d)
    }

    /// The engine's own list call for this run's containers, timed `n` times.
    pub async fn time_engine_list(&self, n: usize) -> Result<Vec<Duration>, String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            self.engine
                .list_labelled(labels::INSTANCE, &self.instance)
                .await
                .map_err(|e| e.to_string())?;
            out.push(t.elapsed());
        }
        Ok(out)
    }

    /// Removes the run's containers, networks and temp dir, whatever happened. Kill the daemon
    /// first (drop its [`Daemon`]) so that it does not bring anything back.
    pub async fn cleanup(self) {
        if let Ok(cs) = self
            .engine
            .list_labelled(labels::INSTANCE, &self.instance)
            .await
        {
            for c in cs {
                let _ = self.engine.remove_container(&c.name).await;
            }
        }
        if let Ok(ns) = self
            .engine
            .networks_labelled(labels::INSTANCE, &self.instance)
            .await
        {
            for n in ns {
                let _ = self.engine.remove_network(&n).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Fixture {
    /// The run's data dir (also the daemon's plans dir parent).
    pub fn data_dir(&self) -> &Path {
        &self.tmp
    }
}

impl Daemon {
    /// An API URL: `path` below `/api/v1`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The daemon's resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// How many bench servers exist.
    pub fn made(&self) -> usize {
        self.made
    }

    /// `GET path` with the key, `n` times one after the other; the time of each, body read.
    pub async fn time_get(&self, path: &str, n: usize) -> Result<Vec<Duration>, String> {
        let url = self.url(path);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(timed_get(&self.http, &url).await?);
        }
        Ok(out)
    }

    /// Creates servers `bench.s<made>` .. `bench.s<n - 1>` (they start), 8 at a time.
    pub async fn grow_to(&mut self, n: usize) -> Result<(), String> {
        while self.made < n {
            let batch: Vec<usize> = (self.made..n.min(self.made + 8)).collect();
            let reqs = batch.iter().map(|i| {
                let url = self.url(&format!("/server/create/bench.s{i}"));
                let http = self.http.clone();
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
            self.made = batch.last().map_or(self.made, |l| l + 1);
        }
        Ok(())
    }
}

/// One `GET url` with the bench key: the time until the whole body is read.
pub async fn timed_get(http: &reqwest::Client, url: &str) -> Result<Duration, String> {
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
    Ok(t.elapsed())
}
