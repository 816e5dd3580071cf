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
}

/// The plan's optional `limits` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanLimits {
    pub memory_bytes: Option<i64>,
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
    fn policies() {
        assert_eq!(
            RestartPolicy::parse("On-Crash"),
            Some(RestartPolicy::OnCrash)
        );
        assert_eq!(RestartPolicy::parse("sometimes"), None);
        assert_eq!(RestartPolicy::default().as_str(), "on-crash");
    }
}
