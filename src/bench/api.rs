//! `peon bench api`: latency of `GET /servers` and `GET /server/get` with 1, 10 and 100 running
//! servers, next to the Docker engine's own list call, and the daemon's memory.
//!
//! It runs the real daemon binary as a child process on 127.0.0.1 with a temporary data dir and
//! its own instance label, creates stand-in game servers from a bench plan, and removes
//! everything it made at the end.

use std::time::Duration;

use super::common::{EngineArgs, Fixture, mib};
use super::{ms, summarize};

/// Options of the API benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiBench {
    /// Server counts to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub servers: Vec<usize>,
    /// Requests per measurement.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs the benchmark and prints a table.
pub async fn run(opts: ApiBench) -> Result<(), String> {
    let max = opts.servers.iter().copied().max().unwrap_or(1);
    let fixture = Fixture::prepare(&opts.engine, max).await?;
    let result = measure(&opts, &fixture).await;
    fixture.cleanup().await;
    result
}

async fn measure(opts: &ApiBench, fixture: &Fixture) -> Result<(), String> {
    let mut d = fixture.start_daemon().await?;
    let pid = d.pid;
    let idle = d.rss_kib().unwrap_or(0);
    println!(
        "peon bench api: daemon pid {pid}, {} requests per row",
        opts.requests
    );
    println!("idle memory (no servers): {} RSS", mib(idle));
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
    let mut counts = opts.servers.clone();
    counts.sort_unstable();
    for n in counts {
        d.grow_to(n).await?;
        let list = summarize(d.time_get("/servers", opts.requests).await?);
        let get = summarize(d.time_get("/server/get/bench.s0", opts.requests).await?);
        let eng = summarize(fixture.time_engine_list(opts.requests).await?);
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
        "memory with {} servers: {} RSS",
        d.made(),
        mib(d.rss_kib().unwrap_or(0))
    );
    Ok(())
}
