//! One-shot times as clients give them: PEON's `interval` / `epoch_time` body fields and the
//! schedules API's `at` (RFC 3339 or Unix seconds). Everything here is pure parsing.

use serde_json::{Map, Value};

use super::ScheduleError;

/// A one-shot timer requested through PEON's `interval` / `epoch_time` body fields.
#[derive(Debug, Clone, PartialEq)]
pub struct OneShot {
    /// Unix seconds when it falls due.
    pub due: i64,
    /// The value to show as the ServerObject's `time` (PEON keeps `epoch_time` as given).
    pub shown: Value,
}

/// Parses PEON's timer fields from a request body. `None` when neither is given.
pub fn timer_from_body(
    body: &Map<String, Value>,
    now: i64,
) -> Result<Option<OneShot>, ScheduleError> {
    let interval = body.get("interval").filter(|v| !v.is_null());
    let epoch = body.get("epoch_time").filter(|v| !v.is_null());
    if let Some(e) = epoch {
        let due = match e {
            Value::String(s) if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<i64>().ok()
            }
            Value::Number(n) => n.as_i64().filter(|v| (1_000_000_000..10_000_000_000).contains(v)),
            _ => None,
        }
        .ok_or_else(|| {
            ScheduleError::Invalid(format!(
                "epoch_time {e} is not a Unix time in seconds: give 10 digits, as a string or a number"
            ))
        })?;
        if due <= now {
            return Err(ScheduleError::Invalid(format!(
                "epoch_time {due} is in the past (now is {now}): give a future Unix time in seconds"
            )));
        }
        return Ok(Some(OneShot {
            due,
            shown: e.clone(),
        }));
    }
    if let Some(i) = interval {
        let s = i.as_str().ok_or_else(|| {
            ScheduleError::Invalid(format!(
                "interval {i} must be a string such as \"2h\" or \"1h30m\""
            ))
        })?;
        let secs = parse_interval(s)?;
        return Ok(Some(OneShot {
            due: now + secs,
            shown: Value::from(now + secs),
        }));
    }
    Ok(None)
}

/// Parses `30s`, `10m`, `2h`, `1d` and compounds such as `1h30m` into seconds.
pub fn parse_interval(s: &str) -> Result<i64, ScheduleError> {
    let bad = || {
        ScheduleError::Invalid(format!(
            "invalid interval {s:?}: use a number with a unit, (d)ays, (h)ours, (m)inutes or (s)econds, e.g. 5h or 1h30m"
        ))
    };
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut any = false;
    for ch in s.trim().chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch.to_ascii_lowercase() {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any || total <= 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Parses the schedules API's `at`: an RFC 3339 time (`2026-11-22T18:00:00+01:00`) or Unix
/// seconds (a JSON number or a string of digits). It must lie in the future.
pub fn parse_at(v: &Value, now: i64) -> Result<i64, ScheduleError> {
    let bad = || {
        ScheduleError::Invalid(format!(
            "at {v} is not a time: give an RFC 3339 time such as \"2030-01-31T18:00:00Z\" or Unix seconds such as 1900000000"
        ))
    };
    let due = match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().map_err(|_| bad())?
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map_err(|_| bad())?
            .timestamp(),
        _ => return Err(bad()),
    };
    if due <= now {
        return Err(ScheduleError::Invalid(format!(
            "at {v} is in the past (now is {now}): give a future time"
        )));
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30s").unwrap(), 30);
        assert_eq!(parse_interval("10m").unwrap(), 600);
        assert_eq!(parse_interval("2H").unwrap(), 7200);
        assert_eq!(parse_interval("1d").unwrap(), 86400);
        assert_eq!(parse_interval("1h30m").unwrap(), 5400);
        for bad in ["", "90", "abc", "5x", "h", "0s", "1h30"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn epoch_time_string_or_number_not_past() {
        let now = 1_700_000_000;
        let b = |v: Value| json!({ "epoch_time": v }).as_object().unwrap().clone();
        let t = timer_from_body(&b(json!("1800000000")), now)
            .unwrap()
            .unwrap();
        assert_eq!((t.due, t.shown), (1_800_000_000, json!("1800000000")));
        let t = timer_from_body(&b(json!(1_800_000_000)), now)
            .unwrap()
            .unwrap();
        assert_eq!(t.due, 1_800_000_000);
        assert!(timer_from_body(&b(json!("1600000000")), now).is_err());
        assert!(timer_from_body(&b(json!("12345")), now).is_err());
        assert!(timer_from_body(&Map::new(), now).unwrap().is_none());
    }

    #[test]
    fn at_accepts_rfc3339_and_unix_seconds_in_the_future() {
        let now = 1_700_000_000;
        assert_eq!(parse_at(&json!(1_800_000_000), now).unwrap(), 1_800_000_000);
        assert_eq!(parse_at(&json!("1800000000"), now).unwrap(), 1_800_000_000);
        assert_eq!(
            parse_at(&json!("2030-01-31T18:00:00+01:00"), now).unwrap(),
            1_896_109_200
        );
        for bad in [
            json!("tomorrow"),
            json!(1_600_000_000),
            json!("2001-01-01T00:00:00Z"),
            json!(true),
            json!(-5),
        ] {
            let e = parse_at(&bad, now).unwrap_err().to_string();
            assert!(e.starts_with("at "), "{e}");
        }
    }
}
