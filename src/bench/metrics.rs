//! `peon bench metrics`: `GET /metrics` with 100 running servers (real containers of the
//! stand-in game, against the release daemon started as `peon serve`), beside `GET /servers`
//! with the same servers in the same run. Goal: `/metrics` answers in under 10 ms.

use std::time::Duration;

use super::common::{EngineArgs, Fixture};
use super::{ms, percentile};

/// Options of the metrics benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsBench {
    /// Running servers.
    #[arg(long, default_value_t = 100)]
    pub servers: usize,
    /// Requests timed per row, one after the other.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

const GOAL: Duration = Duration::from_millis(10);

/// Runs the benchmark and prints the table.
pub async fn run(opts: MetricsBench) -> Result<(), String> {
    let fixture = Fixture::prepare(&opts.engine, opts.servers).await?;
    let result = measure(&opts, &fixture).await;
    fixture.cleanup().await;
    let rows = result?;
    println!(
        "{:<44} {:>9} {:>9} {:>9}  GOAL",
        "REQUEST", "P50 ms", "P99 ms", "BYTES"
    );
    for (what, p50, p99, bytes, goal) in rows {
        println!(
            "{what:<44} {:>9} {:>9} {bytes:>9}  {goal}",
            ms(p50),
            ms(p99)
        );
    }
    Ok(())
}

type Row = (String, Duration, Duration, usize, String);

async fn measure(opts: &MetricsBench, fixture: &Fixture) -> Result<Vec<Row>, String> {
    let mut d = fixture.start_daemon().await?;
    eprintln!("peon bench metrics: creating {} servers", opts.servers);
    d.grow_to(opts.servers).await?;
    // Warm both routes (and let the stats sampler's first round land).
    d.time_get("/metrics", 20).await?;
    d.time_get("/servers", 20).await?;
    let mut rows = Vec::new();
    for (path, goal) in [
        ("/metrics", format!("< {} ms", GOAL.as_millis())),
        ("/servers", "reference".to_owned()),
    ] {
        let bytes = d
            .http
            .get(d.url(path))
            .header("X-Api-Key", super::common::KEY)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?
            .len();
        let mut t = d.time_get(path, opts.requests).await?;
        let p50 = percentile(&mut t, 0.5);
        let p99 = percentile(&mut t, 0.99);
        rows.push((
            format!("GET {path} ({} servers)", d.made()),
            p50,
            p99,
            bytes,
            goal,
        ));
    }
    Ok(rows)
}
