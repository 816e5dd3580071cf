//! How a server lives: its restart policy, how it is stopped, how its readiness is known, and
//! its resource limits. The optional plan fields `lifecycle` and `limits` fill these; servers
//! may override some of them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What peon does when a game exits without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart after a crash or an out-of-memory exit, a few times with growing back-off.
    #[default]
    OnCrash,
    /// Restart after any exit nobody asked for, including an in-game stop.
    Always,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" | "no" => Some(RestartPolicy::Never),
            "on-crash" | "on_crash" | "on-failure" => Some(RestartPolicy::OnCrash),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnCrash => "on-crash",
            RestartPolicy::Always => "always",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The plan's optional `lifecycle` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    /// Console commands written, in order, before the stop signal (e.g. `save`, `quit`).
    pub stop_command: Vec<String>,
    /// The signal that asks the game to stop (SIGTERM when absent).
    pub stop_signal: Option<String>,
    /// How long a stop may take before the game is killed.
    pub stop_grace: Option<Duration>,
    /// A console line containing this text means the game is ready.
    pub ready_pattern: Option<String>,
    /// How long a start may take to get ready before the server is `unhealthy`.
    pub ready_timeout: Option<Duration>,
    pub restart_policy: Option<RestartPolicy>,
    /// How to say something to the players: a console command with `{message}` in it.
    pub say_command: Option<String>,
}

/// Resource limits: the plan's optional `limits` object, or a server's own overrides of it
/// (kept in `.peon.json`). `None` leaves a limit to the layer below (the plan, or no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// CPU in billionths of a core (`cpus: 1.5` is 1,500,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// How many processes (and threads) the container may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// The disk quota of the server directory, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<i64>,
}

impl PlanLimits {
    pub fn is_empty(&self) -> bool {
        *self == PlanLimits::default()
    }

    /// These limits, with `below`'s where these have none.
    pub fn or(self, below: PlanLimits) -> PlanLimits {
        PlanLimits {
            memory_bytes: self.memory_bytes.or(below.memory_bytes),
            nano_cpus: self.nano_cpus.or(below.nano_cpus),
            pids: self.pids.or(below.pids),
            disk_bytes: self.disk_bytes.or(below.disk_bytes),
        }
    }
}

/// The smallest memory limit the engine accepts.
pub const MIN_MEMORY: i64 = 6 << 20;

/// A change of limits: each key given is set (`Some(Some(v))`) or cleared, back to the plan's
/// (`Some(None)`, from `null`); keys not given are left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsPatch {
    pub memory_bytes: Option<Option<i64>>,
    pub nano_cpus: Option<Option<i64>>,
    pub pids: Option<Option<i64>>,
    pub disk_bytes: Option<Option<i64>>,
}

impl LimitsPatch {
    /// Applies the change to a server's overrides.
    pub fn apply(&self, to: &mut PlanLimits) {
        let set = |slot: &mut Option<i64>, v: Option<Option<i64>>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut to.memory_bytes, self.memory_bytes);
        set(&mut to.nano_cpus, self.nano_cpus);
        set(&mut to.pids, self.pids);
        set(&mut to.disk_bytes, self.disk_bytes);
    }

    pub fn is_empty(&self) -> bool {
        *self == LimitsPatch::default()
    }
}

/// The keys of a `limits` object.
pub const LIMIT_KEYS: [&str; 4] = ["memory", "cpus", "pids", "disk"];

/// Parses a `limits` object: `memory` and `disk` (bytes, or sizes like `512m`, `2g`), `cpus`
/// (cores as a decimal, like `1.5`), `pids` (a count). `null` clears a key. Problems come back
/// as `(key, message)`.
pub fn parse_limits_patch(
    m: &serde_json::Map<String, serde_json::Value>,
) -> Result<LimitsPatch, Vec<(String, String)>> {
    use serde_json::Value;
    let mut p = LimitsPatch::default();
    let mut bad = Vec::new();
    for (k, v) in m {
        let slot = match k.as_str() {
            "memory" => &mut p.memory_bytes,
            "cpus" => &mut p.nano_cpus,
            "pids" => &mut p.pids,
            "disk" => &mut p.disk_bytes,
            _ => {
                bad.push((
                    k.clone(),
                    format!("is not a limit (use {})", LIMIT_KEYS.join(", ")),
                ));
                continue;
            }
        };
        if v.is_null() {
            *slot = Some(None);
            continue;
        }
        let parsed = match k.as_str() {
            "memory" => size(v)
                .filter(|b| *b >= MIN_MEMORY)
                .ok_or("must be a size of at least 6m, like 512m or 2g"),
            "disk" => size(v)
                .filter(|b| *b >= 1 << 20)
                .ok_or("must be a size of at least 1m, like 500m or 20g"),
            "cpus" => cpus(v).ok_or("must be a number of cores above 0.01, like 0.5 or 2"),
            _ => match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .filter(|n| *n >= 8)
            .ok_or("must be a whole number of at least 8"),
        };
        match parsed {
            Ok(n) => *slot = Some(Some(n)),
            Err(msg) => bad.push((k.clone(), msg.to_owned())),
        }
    }
    if bad.is_empty() { Ok(p) } else { Err(bad) }
}

fn size(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => parse_bytes(s),
        _ => None,
    }
}

/// Cores as a decimal, in billionths of a core.
fn cpus(v: &serde_json::Value) -> Option<i64> {
    let f = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    if !f.is_finite() || !(0.01..=1024.0).contains(&f) {
        return None;
    }
    Some((f * 1e9).round() as i64)
}

/// A duration: whole seconds as a number, or text like `90`, `30s`, `5m`, `1h30m`, `2d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match ch.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// A size in bytes: a number, or text like `512k`, `64m`, `2g` (powers of 1024).
pub fn parse_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (digits, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1i64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<i64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("10m5"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("12mb"), Some(12 << 20));
        assert_eq!(parse_bytes("x"), None);
    }

    #[test]
    fn limits_patch() {
        let m = serde_json::json!({"memory": "64m", "cpus": 1.5, "pids": "100", "disk": null});
        let p = parse_limits_patch(m.as_object().unwrap()).unwrap();
        assert_eq!(p.memory_bytes, Some(Some(64 << 20)));
        assert_eq!(p.nano_cpus, Some(Some(1_500_000_000)));
        assert_eq!(p.pids, Some(Some(100)));
        assert_eq!(p.disk_bytes, Some(None));
        let mut l = PlanLimits {
            disk_bytes: Some(5),
            ..Default::default()
        };
        p.apply(&mut l);
        assert_eq!(l.disk_bytes, None);
        assert_eq!(l.pids, Some(100));
        let plan = PlanLimits {
            disk_bytes: Some(7),
            pids: Some(9),
            ..Default::default()
        };
        assert_eq!(l.or(plan).disk_bytes, Some(7));
        assert_eq!(l.or(plan).pids, Some(100));
        let bad = serde_json::json!({"memory": "1k", "cpus": 0, "pids": 2, "swap": 1});
        let e = parse_limits_patch(bad.as_object().unwrap()).unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
    }

    #[test]
    fn policies() {
        assert_eq!(
            RestartPolicy::parse("On-Crash"),
            Some(RestartPolicy::OnCrash)
        );
        assert_eq!(RestartPolicy::parse("sometimes"), None);
        assert_eq!(RestartPolicy::default().as_str(), "on-crash");
    }
}
