//! Start/stop/restart timers and schedules.
//!
//! This first version keeps PEON's one-shot stop timers in memory; persistence, cron schedules
//! and the firing record come with the scheduler issue. The interface the service uses is here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::names::Uid;

/// What a schedule does to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

/// Errors of the scheduler; all are the caller's input errors except `Storage`.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot store schedules: {0}")]
    Storage(String),
    #[error("schedule {0} not found")]
    NotFound(String),
}

/// Runs a scheduled action on a server; implemented by the server service.
pub trait Runner: Send + Sync + 'static {
    fn run_scheduled<'a>(
        &'a self,
        uid: &'a Uid,
        action: Action,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

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
                "epoch_time {due} is in the past (now is {now})"
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

/// The scheduler.
pub struct Scheduler {
    stops: Mutex<HashMap<Uid, (OneShot, tokio::task::JoinHandle<()>)>>,
    runner: Mutex<Option<Weak<dyn Runner>>>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            stops: Mutex::new(HashMap::new()),
            runner: Mutex::new(None),
        }
    }
}

impl Scheduler {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Connects the scheduler to whatever carries out actions.
    pub fn attach(&self, runner: Weak<dyn Runner>) {
        *self.runner.lock().unwrap_or_else(|p| p.into_inner()) = Some(runner);
    }

    /// The `time` field of a server's ServerObject: its pending stop, if any.
    pub fn next_stop(&self, uid: &Uid) -> Option<Value> {
        self.stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .map(|(t, _)| t.shown.clone())
    }

    /// Replaces the server's pending stop with `timer`.
    pub async fn set_stop(
        self: &Arc<Self>,
        uid: &Uid,
        timer: OneShot,
    ) -> Result<(), ScheduleError> {
        let me = Arc::downgrade(self);
        let u = uid.clone();
        let due = timer.due;
        let handle = tokio::spawn(async move {
            let now = chrono::Utc::now().timestamp();
            if due > now {
                tokio::time::sleep(std::time::Duration::from_secs((due - now) as u64)).await;
            }
            let Some(s) = me.upgrade() else { return };
            let runner = s
                .runner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .and_then(Weak::upgrade);
            s.stops.lock().unwrap_or_else(|p| p.into_inner()).remove(&u);
            if let Some(r) = runner {
                match r.run_scheduled(&u, Action::Stop).await {
                    Ok(o) => tracing::info!(uid = %u, "timer: stop done: {o}"),
                    Err(e) => tracing::warn!(uid = %u, "timer: stop failed: {e}"),
                }
            }
        });
        if let Some((_, old)) = self
            .stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone(), (timer, handle))
        {
            old.abort();
        }
        Ok(())
    }

    /// Removes the server's pending stop (a manual stop).
    pub async fn cancel_stop(&self, uid: &Uid) -> Result<(), ScheduleError> {
        if let Some((_, h)) = self
            .stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid)
        {
            h.abort();
        }
        Ok(())
    }

    /// Removes every schedule of a server (destroy, eradicate).
    pub async fn forget_server(&self, uid: &Uid) -> Result<(), ScheduleError> {
        self.cancel_stop(uid).await
    }
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
}
