//! Benchmarks that print numbers (`peon bench ...`). Speed goals live here, not in tests.

pub mod api;

use std::time::Duration;

/// Median and 95th percentile of a set of samples.
pub fn summarize(mut v: Vec<Duration>) -> (Duration, Duration) {
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    v.sort();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.95))
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}
