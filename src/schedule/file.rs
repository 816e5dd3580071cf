//! The schedules file, `<data>/schedules.json`, and the one-time import of PEON's
//! `<data>/servers/schedule.json`. Writing goes through [`crate::fsio::atomic`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, ScheduleError};

/// Version of the file format.
pub const FORMAT: u32 = 1;

/// Who made a schedule: PEON's `interval` / `epoch_time` stop timer, or the schedules API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Timer,
    Api,
}

/// One schedule as stored. Exactly one of `cron` and `at` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSchedule {
    pub id: String,
    pub server_uid: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// For PEON timers: the ServerObject's `time`, as the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Value>,
    pub source: Source,
    pub created: i64,
    /// Unix seconds of the next firing.
    pub next: Option<i64>,
    /// Wait for an empty server first (restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_empty: Option<super::WhenEmpty>,
}

/// What happened when a schedule fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action was carried out.
    Done,
    /// The server already was in the wanted state.
    Noop,
    /// The action failed; `error` says why.
    Failed,
    /// Not carried out: a start that fell due too long ago while the daemon was down.
    Skipped,
}

/// The record of one firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringRecord {
    pub schedule_id: String,
    pub action: Action,
    /// Unix seconds when it was due.
    pub due: i64,
    /// When it fired (RFC 3339, UTC, milliseconds).
    pub fired_at: String,
    /// `fired_at` minus `due`.
    pub delay_ms: i64,
    pub outcome: Outcome,
    #[serde(default)]
    pub error: Option<String>,
    /// The container state after the action, when known.
    #[serde(default)]
    pub state: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulesFile {
    pub version: u32,
    pub schedules: Vec<StoredSchedule>,
    /// Last firings per server, oldest first.
    #[serde(default)]
    pub results: BTreeMap<String, Vec<FiringRecord>>,
}

/// What [`load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// Our file.
    Ours(SchedulesFile),
    /// No file of ours; PEON's was imported (write it soon).
    ImportedPeon(SchedulesFile),
    /// Neither file exists.
    Empty,
}

/// Reads `ours`; when absent, imports `peon` (PEON's list of `{server_uid, time, action}`).
/// A corrupt file of ours is moved aside (`.corrupt-<unix>`) and logged, never fatal: a bad
/// file must not stop the timers of every other server.
pub fn load(ours: &Path, peon: &Path, now: i64) -> Result<Loaded, ScheduleError> {
    match std::fs::read(ours) {
        Ok(bytes) => match serde_json::from_slice::<SchedulesFile>(&bytes) {
            Ok(f) => Ok(Loaded::Ours(f)),
            Err(e) => {
                let aside = PathBuf::from(format!("{}.corrupt-{now}", ours.display()));
                tracing::error!(
                    file = %ours.display(),
                    moved_to = %aside.display(),
                    "the schedules file is unreadable ({e}); starting with no schedules"
                );
                std::fs::rename(ours, &aside).map_err(|e| {
                    ScheduleError::Storage(format!("cannot move {} aside: {e}", ours.display()))
                })?;
                Ok(Loaded::Empty)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read(peon) {
            Ok(bytes) => Ok(Loaded::ImportedPeon(import_peon(&bytes, now))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded::Empty),
            Err(e) => Err(ScheduleError::Storage(format!(
                "cannot read {}: {e}",
                peon.display()
            ))),
        },
        Err(e) => Err(ScheduleError::Storage(format!(
            "cannot read {}: {e}",
            ours.display()
        ))),
    }
}

/// Converts PEON's schedule list. Entries that cannot be understood are logged and dropped;
/// PEON's duplicated stop events collapse to the latest one per server, as PEON meant them.
pub fn import_peon(bytes: &[u8], now: i64) -> SchedulesFile {
    #[derive(Deserialize)]
    struct PeonEvent {
        server_uid: String,
        time: Value,
        action: String,
    }
    let mut file = SchedulesFile {
        version: FORMAT,
        ..Default::default()
    };
    let events: Vec<Value> = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("PEON's schedule.json is unreadable, nothing imported: {e}");
            return file;
        }
    };
    let mut stops: BTreeMap<String, StoredSchedule> = BTreeMap::new();
    for (i, ev) in events.into_iter().enumerate() {
        let Ok(ev) = serde_json::from_value::<PeonEvent>(ev.clone()) else {
            tracing::warn!("PEON schedule entry {i} is malformed, skipped: {ev}");
            continue;
        };
        let due = match &ev.time {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let action = match ev.action.as_str() {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        };
        let (Some(due), Some(action), Ok(_)) =
            (due, action, crate::names::Uid::parse(&ev.server_uid))
        else {
            tracing::warn!(
                "PEON schedule entry {i} ({} {} at {}) is not understood, skipped",
                ev.server_uid,
                ev.action,
                ev.time
            );
            continue;
        };
        let s = StoredSchedule {
            id: new_id(),
            server_uid: ev.server_uid.clone(),
            action,
            cron: None,
            at: Some(due),
            time: Some(ev.time.clone()),
            source: if action == Action::Stop {
                Source::Timer
            } else {
                Source::Api
            },
            created: now,
            next: Some(due),
            when_empty: None,
        };
        if action == Action::Stop {
            let keep = stops.get(&ev.server_uid).is_none_or(|old| old.at <= s.at);
            if keep {
                stops.insert(ev.server_uid, s);
            }
        } else {
            file.schedules.push(s);
        }
    }
    file.schedules.extend(stops.into_values());
    tracing::info!(
        count = file.schedules.len(),
        "imported PEON's schedule.json"
    );
    file
}

/// A new schedule id: `s` and 12 hex digits.
pub fn new_id() -> String {
    format!("s{}", crate::fsio::atomic::random_suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_peon_events_int_or_string_and_collapses_duplicates() {
        let peon = br#"[
            {"server_uid": "valheim.one", "time": 1900000000, "action": "stop"},
            {"server_uid": "valheim.one", "time": 1900000100, "action": "stop"},
            {"server_uid": "csgo.two", "time": "1900000200", "action": "stop"},
            {"server_uid": "csgo.two", "time": "1900000300", "action": "start"},
            {"server_uid": "bad uid", "time": 1, "action": "stop"},
            {"server_uid": "a.b", "time": "soon", "action": "stop"},
            {"server_uid": "a.b", "time": 1, "action": "explode"},
            {"nonsense": true}
        ]"#;
        let f = import_peon(peon, 1_800_000_000);
        assert_eq!(f.schedules.len(), 3, "{:#?}", f.schedules);
        let find = |uid: &str, a: Action| {
            f.schedules
                .iter()
                .find(|s| s.server_uid == uid && s.action == a)
                .unwrap()
                .clone()
        };
        let one = find("valheim.one", Action::Stop);
        assert_eq!((one.at, one.source), (Some(1_900_000_100), Source::Timer));
        let two = find("csgo.two", Action::Stop);
        assert_eq!(two.time, Some(Value::from("1900000200")));
        assert_eq!(find("csgo.two", Action::Start).source, Source::Api);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("schedules.json");
        std::fs::write(&ours, b"{not json").unwrap();
        let loaded = load(&ours, &dir.path().join("none.json"), 42).unwrap();
        assert!(matches!(loaded, Loaded::Empty));
        assert!(!ours.exists());
        assert!(dir.path().join("schedules.json.corrupt-42").exists());
    }
}
