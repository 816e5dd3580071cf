//! Webhook notifications of the service: the live events that hooks may ask for, turned into
//! [`Message`]s and handed to [`crate::hooks::Hooks`] (which never waits), and the hooks API.
//!
//! Wired now: `started`, `stopped` (an operator's stop or kill, or the game's own exit with
//! code 0), `crashed` (an exit of class crash or out_of_memory, with the last lines),
//! `restarted`, `gave_up`, `backup_done` and `backup_failed` (jobs of kind backup). Reserved
//! until their features emit them: `update_rolled_back`, `rollout_done`, `idle_stop`.

use std::sync::Weak;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::{Result, ServerService, ServiceError};
use crate::hooks::{DeadLetter, HookError, HookInfo, HookSpec, Hooks, HooksConfig, Message};
use crate::jobs::{JobKind, JobState};
use crate::live::events::{Event, EventKind};
use crate::model::exit::ExitClass;

impl From<HookError> for ServiceError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::Invalid(m) => ServiceError::BadRequest(m),
            HookError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            HookError::Conflict(m) => ServiceError::Conflict(m),
            HookError::Io { .. } => ServiceError::Failed(e.to_string()),
        }
    }
}

/// Opens the hooks of `settings` (no delivery before the service's supervisor starts them).
pub(super) fn open_hooks(settings: &crate::config::Settings) -> Result<Hooks> {
    let configured = settings
        .hooks
        .iter()
        .map(|h| {
            let format = match h.format.as_deref() {
                None => None,
                Some(f) => Some(crate::hooks::Format::parse(f).ok_or_else(|| {
                    ServiceError::BadRequest(format!(
                        "The hook [{}] has the format [{f}]: use generic or discord.",
                        h.id
                    ))
                })?),
            };
            Ok(HookSpec {
                id: h.id.clone(),
                url: h.url.clone(),
                events: h.events.clone(),
                secret: h.secret.clone(),
                format,
                source: crate::hooks::Source::Config,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Hooks::open(
        HooksConfig {
            dir: settings.data_dir.join("hooks"),
            attempts: settings.hook_attempts,
            backoff: settings.hook_backoff,
            timeout: settings.hook_timeout,
        },
        configured,
    )?)
}

/// The message of an event, when a hook may want it.
pub fn message_of(e: &Event) -> Option<Message> {
    let uid = e.uid.clone();
    let (event, summary, last_lines) = match &e.kind {
        EventKind::Exit { exit } => match exit.class {
            ExitClass::Crash | ExitClass::OutOfMemory => (
                "crashed",
                format!(
                    "{uid} crashed ({}, exit code {})",
                    exit.class.as_str().replace('_', " "),
                    exit.exit_code
                ),
                exit.last_lines.clone(),
            ),
            ExitClass::InGameStop => (
                "stopped",
                format!("{uid} stopped by itself (exit code 0)"),
                exit.last_lines.clone(),
            ),
            // An operator's stop is told by the end of the action.
            ExitClass::OperatorStop | ExitClass::KilledAfterGrace => return None,
            // Told by its own event.
            ExitClass::IdleStop => return None,
        },
        EventKind::Action {
            action,
            phase,
            ok: Some(true),
            ..
        } if phase == "end" => match action.as_str() {
            "start" => ("started", format!("{uid} started"), Vec::new()),
            "restart" => ("restarted", format!("{uid} restarted"), Vec::new()),
            "stop" => ("stopped", format!("{uid} was stopped"), Vec::new()),
            "kill" => ("stopped", format!("{uid} was killed"), Vec::new()),
            _ => return None,
        },
        EventKind::GaveUp { reason } => ("gave_up", format!("{uid}: {reason}"), Vec::new()),
        EventKind::IdleStop {
            idle_s,
            wake_on_connect,
        } => (
            "idle_stop",
            format!(
                "{uid} was stopped after {} with nobody playing{}",
                crate::live::events::human_secs(*idle_s),
                if *wake_on_connect {
                    "; it starts again on the first connection"
                } else {
                    ""
                }
            ),
            Vec::new(),
        ),
        EventKind::UpdateRolledBack { reason, ok } => (
            "update_rolled_back",
            if *ok {
                format!("{uid}: the update failed and was rolled back: {reason}")
            } else {
                format!("{uid}: the update failed and so did its rollback: {reason}")
            },
            Vec::new(),
        ),
        EventKind::RolloutDone {
            id,
            state,
            target_image,
            target_plan_version,
            error,
        } => {
            let target = match target_plan_version {
                Some(v) => format!("plan version {v}"),
                None => target_image.clone(),
            };
            (
                "rollout_done",
                match error {
                    Some(e) => format!("rollout {id} to {target} {state}: {e}"),
                    None => format!("rollout {id} to {target} {state}"),
                },
                Vec::new(),
            )
        }
        EventKind::NodeDown { hostname, .. } => (
            "node_down",
            format!("{uid}: its node {hostname} is unreachable"),
            Vec::new(),
        ),
        EventKind::NodeUp {
            hostname, down_s, ..
        } => (
            "node_up",
            format!("{uid}: its node {hostname} answers again (after {down_s:.1} s)"),
            Vec::new(),
        ),
        EventKind::Job { job } if job.kind == JobKind::Backup && job.state.is_done() => {
            if job.state == JobState::Succeeded {
                ("backup_done", format!("{uid}: backup done"), Vec::new())
            } else {
                let why = job.error.clone().unwrap_or_default();
                (
                    "backup_failed",
                    format!("{uid}: backup failed: {why}"),
                    Vec::new(),
                )
            }
        }
        _ => return None,
    };
    Some(Message {
        event: event.to_owned(),
        uid,
        time: e.time.clone(),
        summary,
        last_lines,
        data: serde_json::to_value(e).unwrap_or(Value::Null),
    })
}

/// Follows the event bus for as long as the service lives, handing messages to the hooks.
pub(super) async fn forward(svc: Weak<ServerService>) {
    let Some((mut rx, hooks)) = svc
        .upgrade()
        .map(|s| (s.registry.subscribe(), s.hooks.clone()))
    else {
        return;
    };
    hooks.start().await;
    loop {
        match rx.recv().await {
            Ok(e) => {
                if let Some(m) = message_of(&e) {
                    hooks.enqueue(&m);
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "the webhook forwarder fell behind the event bus"
                );
            }
            Err(RecvError::Closed) => return,
        }
        if svc.strong_count() == 0 {
            return;
        }
    }
}

impl ServerService {
    /// Every hook (secrets left out).
    pub fn hooks(&self) -> Vec<HookInfo> {
        self.hooks.list()
    }

    /// One hook and its latest dead letters.
    pub async fn hook(&self, id: &str) -> Result<(HookInfo, Vec<DeadLetter>)> {
        let (hooks, id) = (self.hooks.clone(), id.to_owned());
        Ok(blocking(move || hooks.get(&id)).await?)
    }

    /// Adds a hook (saved in the data dir).
    pub async fn add_hook(&self, spec: HookSpec) -> Result<HookInfo> {
        let hooks = self.hooks.clone();
        Ok(blocking(move || hooks.add(spec)).await?)
    }

    /// Removes a hook made through the API.
    pub async fn remove_hook(&self, id: &str) -> Result<()> {
        let (hooks, id) = (self.hooks.clone(), id.to_owned());
        Ok(blocking(move || hooks.remove(&id)).await?)
    }

    /// Stops the webhook deliveries (at shutdown; the queue on disk stays for the next start).
    pub fn stop_hooks(&self) {
        self.hooks.shutdown();
    }

    /// Sends a `test` message to one hook.
    pub fn test_hook(&self, id: &str) -> Result<()> {
        let m = Message {
            event: "test".into(),
            uid: String::new(),
            time: crate::live::events::now_rfc3339(),
            summary: format!("A test message from peon ({})", self.settings.instance),
            last_lines: Vec::new(),
            data: Value::Null,
        };
        Ok(self.hooks.test(id, &m)?)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, HookError> + Send + 'static,
) -> std::result::Result<T, HookError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HookError::Io {
            what: "the hooks",
            reason: e.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::exit::ExitRecord;

    fn exit(class: ExitClass) -> Event {
        Event::now(
            "demo.a",
            EventKind::Exit {
                exit: ExitRecord {
                    time: "t".into(),
                    exit_code: 3,
                    class,
                    last_lines: vec!["game: crashing".into()],
                    run_started: None,
                },
            },
        )
    }

    fn action(name: &str, ok: bool) -> Event {
        Event::now(
            "demo.a",
            EventKind::Action {
                action: name.into(),
                phase: "end".into(),
                ok: Some(ok),
                error: None,
            },
        )
    }

    #[test]
    fn events_map_to_hook_messages() {
        let m = message_of(&exit(ExitClass::Crash)).unwrap();
        assert_eq!(m.event, "crashed");
        assert_eq!(m.last_lines, ["game: crashing"]);
        assert_eq!(m.data["exit"]["class"], "crash");
        assert_eq!(
            message_of(&exit(ExitClass::OutOfMemory)).unwrap().event,
            "crashed"
        );
        assert_eq!(
            message_of(&exit(ExitClass::InGameStop)).unwrap().event,
            "stopped"
        );
        assert!(message_of(&exit(ExitClass::OperatorStop)).is_none());
        assert_eq!(message_of(&action("start", true)).unwrap().event, "started");
        assert_eq!(
            message_of(&action("restart", true)).unwrap().event,
            "restarted"
        );
        assert_eq!(message_of(&action("kill", true)).unwrap().event, "stopped");
        assert!(message_of(&action("start", false)).is_none());
        assert!(message_of(&action("update", true)).is_none());
        let gave_up = Event::now(
            "demo.a",
            EventKind::GaveUp {
                reason: "3 crashes in 10 minutes".into(),
            },
        );
        assert_eq!(message_of(&gave_up).unwrap().event, "gave_up");
        let state = Event::now(
            "demo.a",
            EventKind::State {
                state: "running".into(),
            },
        );
        assert!(message_of(&state).is_none());
    }

    #[test]
    fn rollbacks_and_rollouts_are_messages() {
        let e = Event::now(
            "g.n",
            EventKind::UpdateRolledBack {
                reason: "the game crashed (exit code 3)".into(),
                ok: true,
            },
        );
        let m = message_of(&e).expect("a message");
        assert_eq!(m.event, "update_rolled_back");
        assert!(m.summary.contains("rolled back") && m.summary.contains("exit code 3"));
        let e = Event::now(
            "g",
            EventKind::RolloutDone {
                id: "r1".into(),
                state: "failed".into(),
                target_image: "img:2".into(),
                target_plan_version: None,
                error: Some("batch 2 of 2".into()),
            },
        );
        let m = message_of(&e).expect("a message");
        assert_eq!(m.event, "rollout_done");
        assert_eq!(m.summary, "rollout r1 to img:2 failed: batch 2 of 2");
        let e = Event::now(
            "g",
            EventKind::RolloutDone {
                id: "r2".into(),
                state: "succeeded".into(),
                target_image: String::new(),
                target_plan_version: Some("2.0.0".into()),
                error: None,
            },
        );
        let m = message_of(&e).expect("a message");
        assert_eq!(m.summary, "rollout r2 to plan version 2.0.0 succeeded");
        let e = Event::now(
            "g.n",
            EventKind::IdleStop {
                idle_s: 1800,
                wake_on_connect: true,
            },
        );
        let m = message_of(&e).expect("a message");
        assert_eq!(m.event, "idle_stop");
        assert!(m.summary.contains("after 30m"), "{}", m.summary);
    }
}
