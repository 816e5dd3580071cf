//! `peon bench cluster`: `GET /servers` across a 3-node swarm with 60 running servers and the
//! time to create (place) a new server, beside the same daemon on one host, in one run.
//!
//! The swarm is started on this machine by [`super::swarm`] (root, `ip`, `dockerd`): three
//! engines in network namespaces; the daemon under test runs in cluster mode against the
//! manager's socket. Everything is removed at the end.

use std::time::{Duration, Instant};

use serde_json::json;

use super::common::{EngineArgs, Fixture, IMAGE, KEY};
use super::{ms, summarize};

/// Options of the cluster benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterBench {
    /// Running servers (spread over 3 nodes).
    #[arg(long, default_value_t = 60)]
    pub servers: usize,
    /// `GET /servers` requests per measurement.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// New servers created (stopped) to time placement.
    #[arg(long, default_value_t = 20)]
    pub placements: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What one side (cluster or single host) measured.
struct Side {
    list: (Duration, Duration),
    /// The engine's own listing of the same servers: in the cluster the manager's services and
    /// tasks (what a list would cost without peon's live model), on one host its containers.
    engine_list: (Duration, Duration),
    create: (Duration, Duration),
}

/// Runs the benchmark and prints a table.
pub async fn run(opts: ClusterBench) -> Result<(), String> {
    if let Some(why) = super::swarm::unavailable() {
        return Err(format!("this machine cannot run the bench swarm: {why}"));
    }
    let total = opts.servers + opts.placements;
    let slots = u32::try_from(total.div_ceil(3) + 1).map_err(|e| e.to_string())?;
    let cluster_fix = Fixture::prepare(&opts.engine, total).await?;
    let swarm = match super::swarm::start(&[slots; 3], &opts.engine.docker_host, IMAGE).await {
        Ok(s) => s,
        Err(e) => {
            cluster_fix.cleanup().await;
            return Err(e);
        }
    };
    println!(
        "peon bench cluster: 3 nodes of {slots} game slots up in {:.1} s",
        swarm.start_time.as_secs_f64()
    );
    let c = side(&opts, &cluster_fix, Some(&swarm)).await;
    drop(swarm);
    cluster_fix.cleanup().await;
    let host_fix = Fixture::prepare(&opts.engine, total).await?;
    let h = side(&opts, &host_fix, None).await;
    host_fix.cleanup().await;
    let (c, h) = (c?, h?);
    println!();
    println!(
        "{:<44} {:>18} {:>18}",
        "metric (ms, p50 / p95)", "cluster", "single host"
    );
    let pair = |d: (Duration, Duration)| format!("{} / {}", ms(d.0), ms(d.1));
    println!(
        "{:<44} {:>18} {:>18}",
        format!("GET /servers, {} servers", opts.servers),
        pair(c.list),
        pair(h.list)
    );
    println!(
        "{:<44} {:>18} {:>18}",
        "  the engine's own list of them",
        pair(c.engine_list),
        pair(h.engine_list)
    );
    println!(
        "{:<44} {:>18} {:>18}",
        "create of a stopped server (placement incl.)",
        pair(c.create),
        pair(h.create)
    );
    Ok(())
}

/// One side: `servers` running, `GET /servers` timed, then `placements` stopped creates timed.
async fn side(
    opts: &ClusterBench,
    fix: &Fixture,
    swarm: Option<&super::swarm::Cluster>,
) -> Result<Side, String> {
    let mut d = match swarm {
        Some(c) => {
            let d = fix.start_daemon_on(&c.manager().socket, true).await?;
            // Every node's agent (each with its own data dir, where the servers' directories
            // go), with the secret the daemon made at its start.
            let secret = fix.data_dir().join("cluster.secret");
            let deadline = Instant::now() + Duration::from_secs(20);
            while !secret.is_file() {
                if Instant::now() > deadline {
                    return Err("the daemon made no cluster secret".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            c.start_agents(&exe, &secret, &fix.instance).await?;
            d
        }
        None => fix.start_daemon().await?,
    };
    d.grow_to(opts.servers).await?;
    let list = summarize(d.time_get("/servers", opts.requests).await?);
    let engine_list = summarize(match swarm {
        Some(c) => {
            let manager = crate::docker::Engine::new(&c.manager().socket);
            let mut out = Vec::with_capacity(opts.requests);
            for _ in 0..opts.requests {
                let t = Instant::now();
                manager
                    .services_labelled(crate::runtime::labels::INSTANCE, &fix.instance)
                    .await
                    .map_err(|e| e.to_string())?;
                manager.list_tasks().await.map_err(|e| e.to_string())?;
                out.push(t.elapsed());
            }
            out
        }
        None => fix.time_engine_list(opts.requests).await?,
    });
    let mut creates = Vec::with_capacity(opts.placements);
    for i in 0..opts.placements {
        let t = Instant::now();
        let r = d
            .http
            .put(d.url(&format!("/server/create/bench.p{i}")))
            .header("X-Api-Key", KEY)
            .json(&json!({"start_later": true}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!(
                "create bench.p{i}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        creates.push(t.elapsed());
    }
    Ok(Side {
        list,
        engine_list,
        create: summarize(creates),
    })
}
