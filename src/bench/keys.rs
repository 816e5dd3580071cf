//! `peon bench keys`: the cost of one key check (hash the offered secret, find it among the
//! keys) with 1,000 named keys, beside the configured key alone and beside the single
//! constant-time comparison peon made before named keys. Goal: under 50 µs per check.

use std::hint::black_box;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::access::KeyStore;

/// Options of the key benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysBench {
    /// Named keys in the store.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Checks timed per row.
    #[arg(long, default_value_t = 200_000)]
    pub checks: usize,
}

/// The goal of one check with 1,000 keys.
const GOAL: Duration = Duration::from_micros(50);

fn per_check(n: usize, mut f: impl FnMut(usize) -> bool) -> Duration {
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..n {
        hits += usize::from(f(i));
    }
    black_box(hits);
    started.elapsed() / u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

fn ns(d: Duration) -> String {
    format!("{:.0} ns", d.as_secs_f64() * 1e9)
}

/// Runs the benchmark and prints one row per case.
pub fn run(opts: KeysBench) -> Result<(), String> {
    let admin = "a".repeat(64);
    let (one, _) = KeyStore::in_memory(&admin, 0);
    let (many, secrets) = KeyStore::in_memory(&admin, opts.keys);
    if secrets.is_empty() {
        return Err("--keys must be at least 1".into());
    }
    let wrong = "f".repeat(64);
    let n = opts.checks;
    let baseline = per_check(n, |_| {
        let offered = black_box(admin.as_bytes());
        offered.len() == admin.len() && bool::from(offered.ct_eq(admin.as_bytes()))
    });
    let alone = per_check(n, |_| one.lookup(black_box(admin.as_bytes())).is_some());
    let hit = per_check(n, |i| {
        many.lookup(black_box(secrets[i % secrets.len()].as_bytes()))
            .is_some()
    });
    let miss = per_check(n, |_| many.lookup(black_box(wrong.as_bytes())).is_some());
    println!("key check, {n} checks per row");
    let rows: Vec<[String; 3]> = vec![
        [
            "before named keys: one constant-time compare".into(),
            ns(baseline),
            "-".into(),
        ],
        ["configured key only".into(), ns(alone), "-".into()],
        [
            format!("{} keys, a valid key", opts.keys),
            ns(hit),
            format!("< {} µs", GOAL.as_micros()),
        ],
        [
            format!("{} keys, a wrong key", opts.keys),
            ns(miss),
            format!("< {} µs", GOAL.as_micros()),
        ],
    ];
    println!("{:<48} {:>12}  GOAL", "CASE", "PER CHECK");
    for r in &rows {
        println!("{:<48} {:>12}  {}", r[0], r[1], r[2]);
    }
    let worst = hit.max(miss);
    println!(
        "added per request with {} keys: {} over the old check ({})",
        opts.keys,
        ns(worst.saturating_sub(baseline)),
        if worst < GOAL {
            "within the goal"
        } else {
            "OVER THE GOAL"
        }
    );
    Ok(())
}
