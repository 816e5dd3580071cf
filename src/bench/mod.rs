//! Benchmarks that print numbers (`peon bench ...`). Speed goals live here, not in tests.

pub mod agent;
pub mod api;
pub mod backup;
pub mod cluster;
pub mod common;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod players;
pub mod swarm;

use std::time::Duration;

/// Sorts the samples and returns the `q` quantile (0.0 to 1.0; zero when there are none).
pub fn percentile(v: &mut [Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

/// Median and 95th percentile of a set of samples.
pub fn summarize(mut v: Vec<Duration>) -> (Duration, Duration) {
    (percentile(&mut v, 0.5), percentile(&mut v, 0.95))
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
