//! `peon bench agent`: a server directory copied between two peon agents (a move's copy step:
//! packed and hashed by one, streamed through the caller, unpacked, checked and swapped in by
//! the other), beside the same work as a shell pipeline on the same files in the same run,
//! `tar -c | zstd -3 | zstd -d | tar -x`. Both agents run in this process on 127.0.0.1, with
//! their own data dirs; no engine is needed. Goal: at least 0.8x the pipeline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::backup::{make_world, timed_sh};
use crate::agent::auth::Secret;
use crate::agent::client::{AgentClient, copy_dir};
use crate::agent::server::{AgentConfig, launch};
use crate::names::Uid;
use crate::store::DataDir;

/// Options of the agent benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentBench {
    /// Size of the world in MiB (mixed file sizes, as `peon bench backup`).
    #[arg(long, default_value_t = 512)]
    pub mib: u64,
    /// Where to make the temporary data dirs [default: the system's temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const GOAL: f64 = 0.8;

/// Runs the benchmark and prints its rows.
pub async fn run(opts: AgentBench) -> Result<(), String> {
    let root = opts
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("peon-bench-agent-{}", std::process::id()));
    let r = run_in(&root, &opts).await;
    let _ = std::fs::remove_dir_all(&root);
    r
}

async fn start_agent(
    data: &Path,
    secret: &Secret,
) -> Result<(AgentClient, tokio::sync::oneshot::Sender<()>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = AgentConfig {
        engine: std::sync::Arc::new(crate::docker::Engine::new("unix:///var/run/docker.sock")),
        data: DataDir::new(data),
        secret: secret.clone(),
        instance: None,
    };
    tokio::spawn(launch(config, listener, async {
        let _ = rx.await;
    }));
    let client = AgentClient::new(&addr.to_string(), secret.clone()).map_err(|e| e.to_string())?;
    Ok((client, tx))
}

async fn run_in(root: &Path, opts: &AgentBench) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    let uid = Uid::parse("bench.world").map_err(|e| e.to_string())?;
    let (a, b) = (DataDir::new(root.join("a")), DataDir::new(root.join("b")));
    let server = a.server_dir(&uid);
    std::fs::create_dir_all(&server).map_err(e)?;
    eprintln!(
        "making a {} MiB world in {} ...",
        opts.mib,
        server.display()
    );
    let (files, bytes) = make_world(&server, opts.mib << 20).map_err(e)?;
    let mb = bytes as f64 / 1e6;

    // The reference: the same work as one pipeline.
    let refdir = root.join("ref-out");
    std::fs::create_dir_all(&refdir).map_err(e)?;
    let t_ref = timed_sh(&format!(
        "tar -cf - -C '{}' . | zstd -3 -q -c | zstd -dc -q | tar -xf - -C '{}'",
        server.display(),
        refdir.display()
    ))?;
    let _ = std::fs::remove_dir_all(&refdir);

    let secret =
        Secret::new(&Secret::generate().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let (ca, stop_a) = start_agent(a.root(), &secret).await?;
    let (cb, stop_b) = start_agent(b.root(), &secret).await?;
    let t = Instant::now();
    let copied = copy_dir(&ca, &cb, &uid).await.map_err(|e| e.to_string())?;
    let t_copy = t.elapsed();
    let _ = (stop_a.send(()), stop_b.send(()));

    let rate = |d: std::time::Duration| mb / d.as_secs_f64();
    println!(
        "world: {files} files, {mb:.0} MB; archive {:.0} MB, sha256 {}",
        copied.bytes as f64 / 1e6,
        &copied.sha256[..16]
    );
    println!("{:<44} {:>10} {:>10}", "", "seconds", "MB/s");
    println!(
        "{:<44} {:>10.2} {:>10.0}",
        "agent to agent (copy_dir, checksum checked)",
        t_copy.as_secs_f64(),
        rate(t_copy)
    );
    println!(
        "{:<44} {:>10.2} {:>10.0}",
        "tar | zstd -3 | zstd -d | tar -x",
        t_ref.as_secs_f64(),
        rate(t_ref)
    );
    let ratio = t_ref.as_secs_f64() / t_copy.as_secs_f64();
    println!(
        "ratio {ratio:.2}x the pipeline's throughput (goal {GOAL}x): {}",
        if ratio >= GOAL {
            "ok"
        } else {
            "below the goal"
        }
    );
    Ok(())
}
