//! Events: every state change, exit, restart, readiness change and action of a server, as JSON
//! with its uid and time. `GET /events` streams them; notifications and metrics build on them.

use serde::Serialize;

use crate::jobs::JobView;
use crate::model::exit::ExitRecord;

/// One event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub uid: String,
    /// RFC 3339, UTC.
    pub time: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened; `type` names it in JSON.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The server's state changed (`server_state`).
    State { state: String },
    /// The game exited.
    Exit { exit: ExitRecord },
    /// The restart policy restarts the game after `delay_ms`.
    Restart { attempt: u32, delay_ms: u64 },
    /// The restart policy gave up; the server stays stopped.
    GaveUp { reason: String },
    /// Readiness changed: `running` (ready) or `unhealthy`.
    Ready {
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An action started (`phase: start`) or ended (`phase: end`, with `ok` and `error`).
    Action {
        action: String,
        phase: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        ok: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A job was created, one of its steps started or ended, or it ended.
    Job { job: JobView },
    /// An update failed and was rolled back (`ok`), or its rollback failed too.
    UpdateRolledBack { reason: String, ok: bool },
    /// A rollout ended (`succeeded`, `failed` or `aborted`); `uid` is its game, or empty.
    RolloutDone {
        id: String,
        state: String,
        /// Empty for a rollout to a plan version.
        target_image: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        target_plan_version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// peon stopped the game after `idle_s` seconds with nobody playing; with
    /// `wake_on_connect`, its ports are now held to start it on the first connection.
    IdleStop { idle_s: u64, wake_on_connect: bool },
    /// A connection or packet (`by`) came to a sleeping server: it is being started.
    Wake { by: String },
    /// Holding a sleeping server's ports, or starting it on a connection, failed (the ports are
    /// held again when the start failed).
    WakeFailed { error: String },
    /// Cluster mode: the server's node stopped answering (`server_state` is `unreachable`).
    NodeDown { node: String, hostname: String },
    /// Cluster mode: the server's node answers again, after `down_s` seconds.
    NodeUp {
        node: String,
        hostname: String,
        down_s: f64,
    },
    /// The server directory reached 90 % of its disk quota (or went over it).
    Quota {
        used_bytes: u64,
        quota_bytes: u64,
        percent: f64,
    },
}

impl Event {
    pub fn now(uid: &str, kind: EventKind) -> Event {
        Event {
            uid: uid.to_owned(),
            time: now_rfc3339(),
            kind,
        }
    }

    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Seconds for people: `45s`, `30m`, `2h`, `1h30m`.
pub fn human_secs(s: u64) -> String {
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) if h > 0 => format!("{h}h{m}m"),
        (_, m, s) => format!("{m}m{s}s"),
    }
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = Event {
            uid: "g.n".into(),
            time: "t".into(),
            kind: EventKind::Restart {
                attempt: 2,
                delay_ms: 2000,
            },
        };
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"uid":"g.n","time":"t","type":"restart","attempt":2,"delay_ms":2000})
        );
    }
}
