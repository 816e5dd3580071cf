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
}
