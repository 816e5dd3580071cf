//! How a game's exit reads: the exit records of the server object (`last_exit`, `exits`) and of
//! `exit` events, `{"time", "exit_code", "class", "last_lines"}`, any of them possibly missing.

use serde_json::Value;

use super::output;

/// `crash (exit code 1)`, `clean (exit code 0)`, `killed`, `exit code 137`, or `-`.
pub fn outcome(exit: &Value) -> String {
    let class = exit
        .get("class")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    let code = exit.get("exit_code").and_then(Value::as_i64);
    match (class, code) {
        (Some(c), Some(n)) => format!("{c} (exit code {n})"),
        (Some(c), None) => c.to_owned(),
        (None, Some(n)) => format!("exit code {n}"),
        (None, None) => "-".to_owned(),
    }
}

/// The last line the game printed before it exited, if the record has one.
pub fn last_line(exit: &Value) -> Option<String> {
    exit.get("last_lines")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_str)
        .map(str::trim_end)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// The outcome and the time: `crash (exit code 1) at 2026-05-01T12:00:03Z`.
pub fn with_time(exit: &Value) -> String {
    let what = outcome(exit);
    match exit.get("time").and_then(Value::as_str) {
        Some(t) => format!("{what} at {}", output::utc_time(t)),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exits_read_with_whatever_they_carry() {
        let e = json!({"time": "2026-05-01T12:00:03Z", "exit_code": 1, "class": "crash",
                       "last_lines": ["booting", "segfault", ""]});
        assert_eq!(outcome(&e), "crash (exit code 1)");
        assert_eq!(with_time(&e), "crash (exit code 1) at 2026-05-01T12:00:03Z");
        assert_eq!(last_line(&e).as_deref(), Some("segfault"));
        assert_eq!(
            outcome(&json!({"class": "killed", "exit_code": null})),
            "killed"
        );
        assert_eq!(outcome(&json!({"exit_code": 137})), "exit code 137");
        assert_eq!(outcome(&json!({})), "-");
        assert_eq!(last_line(&json!({"last_lines": []})), None);
    }
}
