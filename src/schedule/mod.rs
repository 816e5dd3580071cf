//! Start/stop/restart timers and schedules.
//!
//! - [`timer`]: PEON's `interval` / `epoch_time` stop timers and the API's `at`, parsed.
//! - [`cron`]: cron expressions, evaluated in the configured time zone.
//! - [`file`]: `<data>/schedules.json` (atomic writes) and the import of PEON's file.
//! - [`scheduler`]: the [`Scheduler`], built on tokio-cron-scheduler; it fires due schedules
//!   through a [`Runner`] (the server service) and records every firing.
//! - [`bench`]: the firing-delay benchmark behind `peon bench schedule`.

pub mod bench;
pub mod cron;
pub mod file;
pub mod scheduler;
pub mod timer;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::names::Uid;

pub use file::{FiringRecord, Outcome, Source};
pub use scheduler::{Config, ScheduleView, Scheduler, ServerSchedules, When};
pub use timer::{OneShot, parse_at, parse_interval, timer_from_body};

/// What a schedule does to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
    /// A backup of the whole server folder (see `POST /server/backup/<uid>`).
    Backup,
}

impl Action {
    /// Parses the API's `action` field.
    pub fn parse(s: &str) -> Result<Action, ScheduleError> {
        match s.to_ascii_lowercase().as_str() {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "restart" => Ok(Action::Restart),
            "backup" => Ok(Action::Backup),
            _ => Err(ScheduleError::Invalid(format!(
                "action {s:?} is not supported: use start, stop, restart or backup"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Backup => "backup",
        }
    }
}

/// Maintenance that respects players: wait (at most `deadline_s`) for nobody to be playing
/// before a restart or an update, announcing it first through the plan's `say_command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhenEmpty {
    /// After this many seconds the action goes ahead anyway.
    pub deadline_s: u64,
    /// Said to the players first (through the plan's `lifecycle.say_command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<String>,
}

/// The longest a `when_empty` wait may be.
pub const WHEN_EMPTY_MAX: u64 = 86_400;
/// The wait when a `when_empty` gives no deadline.
pub const WHEN_EMPTY_DEFAULT: u64 = 1800;

impl WhenEmpty {
    /// Parses `{"deadline": "10m", "announce": "..."}` (or `true`: the defaults); `None` for
    /// absent, `null` or `false`.
    pub fn parse(v: Option<&serde_json::Value>) -> Result<Option<WhenEmpty>, ScheduleError> {
        use serde_json::Value;
        let m = match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
            Some(Value::Bool(true)) => {
                return Ok(Some(WhenEmpty {
                    deadline_s: WHEN_EMPTY_DEFAULT,
                    announce: None,
                }));
            }
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(ScheduleError::Invalid(
                    "when_empty must be true or {\"deadline\": \"10m\", \"announce\": \"...\"}"
                        .into(),
                ));
            }
        };
        let deadline_s = match m.get("deadline") {
            None | Some(Value::Null) => WHEN_EMPTY_DEFAULT,
            Some(v) => {
                let text = match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                crate::model::lifecycle::parse_duration(&text)
                    .map(|d| d.as_secs())
                    .filter(|s| *s <= WHEN_EMPTY_MAX)
                    .ok_or_else(|| {
                        ScheduleError::Invalid(format!(
                            "when_empty.deadline [{text}] must be seconds or a duration like 10m, at most 24h"
                        ))
                    })?
            }
        };
        let announce = match m.get("announce") {
            None | Some(Value::Null) => None,
            Some(Value::String(s))
                if !s.trim().is_empty() && !s.contains(['\n', '\r']) && s.len() <= 400 =>
            {
                Some(s.trim().to_owned())
            }
            Some(_) => {
                return Err(ScheduleError::Invalid(
                    "when_empty.announce must be one line of text (at most 400 bytes)".into(),
                ));
            }
        };
        Ok(Some(WhenEmpty {
            deadline_s,
            announce,
        }))
    }
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

/// How a carried-out action went; the string is the container state afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// The action changed the server.
    Done(String),
    /// The server already was in the wanted state; nothing was done.
    Noop(String),
}

/// Runs a scheduled action on a server; implemented by the server service.
pub trait Runner: Send + Sync + 'static {
    fn run_scheduled<'a>(
        &'a self,
        uid: &'a Uid,
        action: Action,
    ) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>>;

    /// Runs a scheduled action that waits for an empty server first (a restart); without a
    /// runner of its own, the action runs at once.
    fn run_scheduled_when_empty<'a>(
        &'a self,
        uid: &'a Uid,
        action: Action,
        when_empty: WhenEmpty,
    ) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>> {
        let _ = when_empty;
        self.run_scheduled(uid, action)
    }
}
