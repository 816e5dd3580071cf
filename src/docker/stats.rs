//! One-shot resource statistics of a container, with the percentages clients want computed.

use super::{Engine, Result, Stats};
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;

impl Engine {
    /// Samples a container's stats once (the engine takes two readings about a second apart so
    /// that CPU use can be computed). `None` when the container is not running.
    pub async fn stats(&self, name: &str) -> Result<Option<Stats>> {
        let c = self.client().await?;
        let opts = StatsOptionsBuilder::default().stream(false).build();
        let mut s = c.stats(name, Some(opts));
        let r = match s.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(self.fail("container stats", e).await),
            None => return Ok(None),
        };
        let raw = serde_json::to_value(&r).unwrap_or(serde_json::Value::Null);
        Ok(Some(compute(raw)))
    }
}

/// Computes the percentages from a raw stats document the way `docker stats` does.
pub fn compute(raw: serde_json::Value) -> Stats {
    let n = |p: &str| {
        raw.pointer(p)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let cpu_delta = n("/cpu_stats/cpu_usage/total_usage")
        .saturating_sub(n("/precpu_stats/cpu_usage/total_usage"));
    let sys_delta =
        n("/cpu_stats/system_cpu_usage").saturating_sub(n("/precpu_stats/system_cpu_usage"));
    let cpus = match n("/cpu_stats/online_cpus") {
        0 => raw
            .pointer("/cpu_stats/cpu_usage/percpu_usage")
            .and_then(serde_json::Value::as_array)
            .map_or(1, |a| a.len().max(1) as u64),
        c => c,
    };
    let cpu_percent = if sys_delta > 0 {
        cpu_delta as f64 / sys_delta as f64 * cpus as f64 * 100.0
    } else {
        0.0
    };
    // Page cache is not the game's memory: subtract it as the docker CLI does.
    let cache = match n("/memory_stats/stats/inactive_file") {
        0 => n("/memory_stats/stats/total_inactive_file"),
        v => v,
    };
    let memory_bytes = n("/memory_stats/usage").saturating_sub(cache);
    let memory_limit_bytes = n("/memory_stats/limit");
    let memory_percent = if memory_limit_bytes > 0 {
        memory_bytes as f64 / memory_limit_bytes as f64 * 100.0
    } else {
        0.0
    };
    Stats {
        cpu_percent: round2(cpu_percent),
        memory_bytes,
        memory_limit_bytes,
        memory_percent: round2(memory_percent),
        raw,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_like_docker_stats() {
        let raw = serde_json::json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000u64}, "system_cpu_usage": 20_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000u64}, "system_cpu_usage": 10_000_000u64},
            "memory_stats": {"usage": 150u64, "limit": 1000u64, "stats": {"inactive_file": 50u64}}
        });
        let s = compute(raw);
        assert_eq!(s.cpu_percent, 40.0);
        assert_eq!(s.memory_bytes, 100);
        assert_eq!(s.memory_percent, 10.0);
    }
}
