//! `peon bench schedule`: the scheduler's firing delay for many timers due in the same second,
//! measured with a runner that does nothing (no Docker), and the CPU the process spends while
//! those timers wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Action, Config, OneShot, Ran, Runner, ScheduleError, Scheduler};
use crate::names::Uid;

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub timers: usize,
    /// Time to set all timers (each one written to the schedules file).
    pub setup: Duration,
    /// Records seen with outcome `done`.
    pub fired: usize,
    pub median_ms: i64,
    pub p90_ms: i64,
    pub worst_ms: i64,
    pub best_ms: i64,
    /// CPU time (user + system) of the whole process while the timers waited, and how long
    /// that wait was; `None` where `/proc/self/stat` is not readable.
    pub idle_cpu: Option<(Duration, Duration)>,
    /// The same number of timers due at distinct seconds (one job each): the time to set
    /// them and the CPU while they wait.
    pub spread_setup: Duration,
    pub spread_idle_cpu: Option<(Duration, Duration)>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "timers: {} due at the same second, fired: {}",
            self.timers, self.fired
        )?;
        writeln!(
            f,
            "setting them (all at once, file writes coalesced): {:.0} ms ({:.3} ms per timer)",
            self.setup.as_secs_f64() * 1000.0,
            self.setup.as_secs_f64() * 1000.0 / self.timers.max(1) as f64
        )?;
        writeln!(
            f,
            "firing delay after the due second: best {} ms, median {} ms, p90 {} ms, worst {} ms",
            self.best_ms, self.median_ms, self.p90_ms, self.worst_ms
        )?;
        let cpu = |what: &str, m: Option<(Duration, Duration)>| match m {
            Some((cpu, wall)) => format!(
                "CPU while {} timers {what} waited: {:.0} ms over {:.1} s ({:.2}% of one core; 10 ms resolution)",
                self.timers,
                cpu.as_secs_f64() * 1000.0,
                wall.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
            ),
            None => format!("CPU while timers {what} waited: not measured (no /proc/self/stat)"),
        };
        writeln!(f, "{}", cpu("due at the same second", self.idle_cpu))?;
        writeln!(
            f,
            "{} timers due at distinct seconds (one job each): set in {:.0} ms",
            self.timers,
            self.spread_setup.as_secs_f64() * 1000.0
        )?;
        write!(
            f,
            "{}",
            cpu("due at distinct seconds", self.spread_idle_cpu)
        )
    }
}

struct NoopRunner;

impl Runner for NoopRunner {
    fn run_scheduled<'a>(
        &'a self,
        _uid: &'a Uid,
        _action: Action,
    ) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>> {
        Box::pin(async { Ok(Ran::Done("exited".to_owned())) })
    }
}

/// Sets `timers` stop timers (one per server) due at the same second, `lead` after the setup
/// finishes, and measures how late each fired. Uses a temporary data dir.
pub async fn schedule(timers: usize, lead: Duration) -> Result<BenchReport, ScheduleError> {
    let dir = std::env::temp_dir().join(format!(
        "peon-bench-{}",
        crate::fsio::atomic::random_suffix()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| ScheduleError::Storage(e.to_string()))?;
    let result = run(&dir, timers, lead).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    dir: &std::path::Path,
    timers: usize,
    lead: Duration,
) -> Result<BenchReport, ScheduleError> {
    let sched = Scheduler::open(Config {
        file: dir.join("schedules.json"),
        peon_file: dir.join("none.json"),
        timezone: chrono_tz::UTC,
        start_grace: Duration::from_secs(300),
    })?;
    let runner: Arc<dyn Runner> = Arc::new(NoopRunner);
    sched.attach(Arc::downgrade(&runner));
    sched.start().await?;
    sched.fire_missed().await;
    let uids: Vec<Uid> = (0..timers)
        .map(|i| Uid::new("bench", &format!("s{i}")))
        .collect::<Result<_, _>>()
        .map_err(|e| ScheduleError::Invalid(e.to_string()))?;
    // All timers are set at once, as many clients would: their file writes coalesce.
    let started = Instant::now();
    let due = chrono::Utc::now().timestamp() + 1 + lead.as_secs().max(1) as i64;
    let sets = uids.iter().map(|uid| {
        sched.set_stop(
            uid,
            OneShot {
                due,
                shown: due.into(),
            },
        )
    });
    for r in futures_util::future::join_all(sets).await {
        r?;
    }
    let setup = started.elapsed();
    let wait_start = Instant::now();
    let cpu_start = process_cpu();
    // Wait until just before the due second, then measure the CPU spent while idle.
    let until_due = Duration::from_millis(
        u64::try_from(due * 1000 - chrono::Utc::now().timestamp_millis()).unwrap_or(0),
    );
    tokio::time::sleep(until_due.saturating_sub(Duration::from_millis(50))).await;
    let idle_cpu = match (cpu_start, process_cpu()) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a), wait_start.elapsed())),
        _ => None,
    };
    // Then wait (with a deadline) for every firing to be recorded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delays = loop {
        let delays: Vec<i64> = uids
            .iter()
            .filter_map(|u| sched.server(u).results.first().map(|r| r.delay_ms))
            .collect();
        if delays.len() == timers || Instant::now() >= deadline {
            break delays;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The same number of timers due at distinct seconds, an hour away: one job each.
    let started = Instant::now();
    let base = chrono::Utc::now().timestamp() + 3600;
    let sets = uids.iter().zip(0i64..).map(|(uid, i)| {
        sched.set_stop(
            uid,
            OneShot {
                due: base + i,
                shown: (base + i).into(),
            },
        )
    });
    for r in futures_util::future::join_all(sets).await {
        r?;
    }
    let spread_setup = started.elapsed();
    let wait_start = Instant::now();
    let cpu_start = process_cpu();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spread_idle_cpu = match (cpu_start, process_cpu()) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a), wait_start.elapsed())),
        _ => None,
    };
    sched.shutdown().await;
    delays.sort_unstable();
    let at = |q: f64| -> i64 {
        if delays.is_empty() {
            return -1;
        }
        let i = ((delays.len() - 1) as f64 * q).round() as usize;
        delays[i.min(delays.len() - 1)]
    };
    Ok(BenchReport {
        timers,
        setup,
        fired: delays.len(),
        median_ms: at(0.5),
        p90_ms: at(0.9),
        worst_ms: at(1.0),
        best_ms: at(0.0),
        idle_cpu,
        spread_setup,
        spread_idle_cpu,
    })
}

/// User + system CPU time of this process, from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on Linux everywhere peon runs.
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_counts_busy_time() {
        let Some(before) = process_cpu() else { return };
        // Burn CPU until the reading moves by 50 ms; a reader stuck at zero never would.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut x: u64 = 1;
        loop {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
            if process_cpu().unwrap() >= before + Duration::from_millis(50) {
                break;
            }
            assert!(Instant::now() < deadline, "the CPU reading did not move");
        }
    }

    #[tokio::test]
    async fn small_bench_fires_every_timer() {
        let r = schedule(20, Duration::from_secs(1)).await.unwrap();
        assert_eq!(r.fired, 20, "{r}");
        assert!(r.best_ms >= 0, "no timer fires early: {r}");
    }
}
