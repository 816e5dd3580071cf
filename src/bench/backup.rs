//! `peon bench backup`: backup and restore of a 1 GiB world of mixed file sizes through the real
//! daemon (a child process with no engine: the server is stopped), beside `tar | zstd -3` on the
//! same files in the same run, with the daemon's resident memory sampled while it streams.
//! The restore's figure is its "unpack and verify" step (read, sha256, decompress, write the
//! files into staging), then with its "sync" step (one `syncfs`) beside the pipeline followed by
//! a `sync`; the whole job (with its safety backup) is printed too.
//! Goal: at least 0.8x the throughput of the pipeline, and memory that stays flat.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::{free_port, mib, rss_kib};

/// Options of the backup benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct BackupBench {
    /// Size of the world in MiB (a quarter in 4 large files, a quarter in 256 KiB files, a
    /// quarter in 16 KiB files, a quarter in 1 MiB files).
    #[arg(long, default_value_t = 1024)]
    pub mib: u64,
    /// Where to make the temporary world [default: the system's temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const KEY: &str = "bench-key";
const GOAL: f64 = 0.8;

/// Fills `f` with `n` bytes that zstd compresses about 2:1 (4 random bits per byte).
fn fill(path: &Path, n: u64, seed: &mut u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 64 << 10];
    let mut left = n;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let v = (*seed & 0x0f0f_0f0f_0f0f_0f0f) | 0x4040_4040_4040_4040;
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        let k = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..k])?;
        left -= k as u64;
    }
    w.flush()
}

/// Makes the world: returns (files, bytes).
pub(super) fn make_world(dir: &Path, total: u64) -> std::io::Result<(u64, u64)> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let quarter = total / 4;
    let (mut files, mut bytes) = (0, 0);
    for (sub, size) in [
        ("regions", quarter / 4),
        ("chunks", 256 << 10),
        ("players", 16 << 10),
        ("mods", 1 << 20),
    ] {
        let d = dir.join("user/world").join(sub);
        std::fs::create_dir_all(&d)?;
        let n = (quarter / size).max(1);
        for i in 0..n {
            fill(&d.join(format!("f{i:05}.dat")), size, &mut seed)?;
            files += 1;
            bytes += size;
        }
    }
    Ok((files, bytes))
}

/// Writes out everything dirty (`sync`), so the next measured step starts clean.
fn flush() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

pub(super) fn timed_sh(script: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let st = Command::new("sh")
        .args(["-c", script])
        .status()
        .map_err(|e| format!("sh: {e}"))?;
    if !st.success() {
        return Err(format!("`{script}` failed ({st}); is zstd installed?"));
    }
    Ok(t.elapsed())
}

/// Samples a process's resident memory every 20 ms until stopped; the peak in KiB.
fn sample_rss(pid: u32) -> (Arc<AtomicBool>, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (s, p) = (stop.clone(), peak.clone());
    let h = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if let Some(k) = rss_kib(pid) {
                p.fetch_max(k, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (stop, peak, h)
}

fn secs(a: &Value, b: &Value) -> Option<f64> {
    let p = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok();
    Some((p(b)? - p(a)?).num_milliseconds() as f64 / 1000.0)
}

/// Runs the benchmark and prints its rows.
pub async fn run(opts: BackupBench) -> Result<(), String> {
    let root = opts
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("peon-bench-backup-{}", std::process::id()));
    let r = run_in(&root, &opts).await;
    let _ = std::fs::remove_dir_all(&root);
    r
}

async fn run_in(root: &Path, opts: &BackupBench) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    let data = root.join("data");
    let server = data.join("servers/bench/world");
    std::fs::create_dir_all(&server).map_err(e)?;
    let config = json!({
        "metadata": {"game_uid": "bench", "version": "1.0.0", "description": "bench", "image": "peon/demo-game:latest"},
        "ports": [{"PORT": ["27960", "tcp"]}],
        "environment": {"SERVER_NAME": "bench"},
        "volumes": {"~!/user": "/home/steam/user"}
    });
    std::fs::write(server.join("config.json"), config.to_string()).map_err(e)?;
    eprintln!(
        "making a {} MiB world in {} ...",
        opts.mib,
        server.display()
    );
    let (files, bytes) = make_world(&server, opts.mib << 20).map_err(e)?;
    let mb = bytes as f64 / 1e6;

    // The reference, on the same files. Before each measured step, what earlier steps wrote
    // is flushed, so none pays for another's writeback.
    flush();
    let refa = root.join("ref.tar.zst");
    let t_ref_pack = timed_sh(&format!(
        "tar -cf - -C '{}' . | zstd -3 -q -o '{}'",
        server.display(),
        refa.display()
    ))?;
    let refdir = root.join("ref-out");
    std::fs::create_dir_all(&refdir).map_err(e)?;
    flush();
    let t_ref_unpack = timed_sh(&format!(
        "zstd -dc -q '{}' | tar -xf - -C '{}'",
        refa.display(),
        refdir.display()
    ))?;
    let t = Instant::now();
    flush();
    let t_ref_sync = t.elapsed();
    let ref_bytes = std::fs::metadata(&refa).map_err(e)?.len();
    let _ = std::fs::remove_file(&refa);
    // The reference's files stay until the daemon's restore is done: deleting 1 GiB of small
    // files just before it would slow its file creation (ext4 skips inodes deleted recently).

    // The daemon.
    let port = free_port()?;
    let exe = std::env::current_exe().map_err(e)?;
    let mut child = Command::new(exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--api-key",
            KEY,
        ])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--docker-host",
            &format!("unix://{}/no-engine.sock", root.display()),
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let pid = child.id();
    let result = async {
        let http = crate::http::client_builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| e.to_string())?;
        let base = format!("http://127.0.0.1:{port}/api/v1");
        let call = |m: reqwest::Method, p: &str| {
            http.request(m, format!("{base}{p}"))
                .header("X-Api-Key", KEY)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while call(reqwest::Method::GET, "/server/get/bench.world")
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .eq(&false)
        {
            if Instant::now() > deadline {
                return Err("the daemon did not start".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let idle = rss_kib(pid).unwrap_or(0);

        flush();
        let (stop, peak, h) = sample_rss(pid);
        let t = Instant::now();
        let res = call(reqwest::Method::POST, "/server/backup/bench.world")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let t_pack = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let _ = h.join();
        let peak_pack = peak.load(Ordering::Relaxed);
        let info: Value = res.json().await.map_err(|e| e.to_string())?;
        let id = info["id"]
            .as_str()
            .ok_or(format!("backup failed: {info}"))?
            .to_owned();

        flush();
        let (stop, peak, h) = sample_rss(pid);
        let t = Instant::now();
        let res = call(
            reqwest::Method::POST,
            &format!("/server/restore/bench.world/{id}"),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
        let t_restore = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let _ = h.join();
        let peak_restore = peak.load(Ordering::Relaxed);
        if !res.status().is_success() {
            return Err(format!(
                "restore failed: {}",
                res.text().await.unwrap_or_default()
            ));
        }
        let jobs: Value = call(reqwest::Method::GET, "/jobs?kind=restore&limit=1")
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let step_secs = |name: &str| {
            let step = jobs[0]["steps"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == name))
                .cloned()
                .unwrap_or_default();
            secs(&step["started"], &step["finished"])
                .ok_or(format!("no {name} step in the restore job"))
        };
        let t_unpack = step_secs("unpack and verify")?;
        let t_sync = step_secs("sync")?;

        let pack_mbs = mb / t_pack.as_secs_f64();
        let ref_pack_mbs = mb / t_ref_pack.as_secs_f64();
        let unpack_mbs = mb / t_unpack;
        let ref_unpack_mbs = mb / t_ref_unpack.as_secs_f64();
        println!(
            "backup bench: {files} files, {:.0} MB (mixed: 4 large, 256 KiB, 16 KiB, 1 MiB files)",
            mb
        );
        println!(
            "{:<34} {:>10} {:>12} {:>10}",
            "", "MB/s", "tar|zstd -3", "ratio"
        );
        let row = |name: &str, ours: f64, theirs: f64| {
            let ratio = ours / theirs;
            let verdict = if ratio >= GOAL { "ok" } else { "BELOW GOAL" };
            println!(
                "{name:<34} {ours:>10.1} {theirs:>12.1} {ratio:>9.2}x  (goal {GOAL}x: {verdict})"
            );
        };
        row("backup (POST /server/backup)", pack_mbs, ref_pack_mbs);
        row("restore (unpack, verify)", unpack_mbs, ref_unpack_mbs);
        row(
            "restore + sync (vs pipeline + sync)",
            mb / (t_unpack + t_sync),
            mb / (t_ref_unpack + t_ref_sync).as_secs_f64(),
        );
        println!(
            "sync of the unpacked files: peon {t_sync:.2} s, after the pipeline {:.2} s",
            t_ref_sync.as_secs_f64()
        );
        println!(
            "whole restore job (unpack, verify, sync, safety backup, swap): {:.1} s",
            t_restore.as_secs_f64()
        );
        println!(
            "archive: peon {:.0} MB, tar|zstd {:.0} MB",
            info["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
            ref_bytes as f64 / 1e6
        );
        println!(
            "daemon RSS: idle {}, peak while backing up {}, peak while restoring {}",
            mib(idle),
            mib(peak_pack),
            mib(peak_restore)
        );
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&refdir);
    result
}
