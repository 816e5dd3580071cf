//! Cluster mode: pending changes. An action on a server whose node is unreachable (start,
//! stop, restart, update, destroy, eradicate) is accepted as a job in state `queued`, kept in
//! the server's `.peon.json` (`pending`), and applied in order once the node answers again:
//! one queue per server, drained by one task. Actions that cannot wait (console commands,
//! console attach, kill) are refused with `Unreachable` (409 `srv.unreachable`).
//!
//! Each change keeps what its action was asked with ([`PendingOptions`]: a start's or stop's
//! timer, a restart's `when_empty`, an update's mode, watch, plan version and `when_empty`).
//! After a daemon restart, the queued jobs are kept (not marked interrupted) and carried out
//! again from their kind and options ([`replay`]), as they would have been without it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::lifecycle::UpdateMode;
use super::planver::PlanTarget;
use super::update::UpdateOptions;
use super::{Result, ServerService, ServiceError};
use crate::jobs::{self, Job, JobKind, Running};
use crate::names::Uid;
use crate::schedule::{OneShot, WhenEmpty};
use crate::store::{PendingChange, PendingOptions};

type Work = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One queued action.
struct Item {
    job: Running,
    who: String,
    work: Work,
}

/// The queues of pending changes, one per server.
pub(super) struct Pending {
    queues: Mutex<HashMap<Uid, mpsc::UnboundedSender<Item>>>,
    /// Set when the daemon stops: the drainers let go of what still waits (its jobs stay
    /// queued in `.peon.json`, taken up by the next start).
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            queues: Mutex::default(),
            stopped: tokio::sync::watch::channel(false).0,
        }
    }
}

/// Whether an action of `kind` may wait for its server's node.
pub fn can_wait(kind: JobKind) -> bool {
    matches!(
        kind,
        JobKind::Start
            | JobKind::Stop
            | JobKind::Restart
            | JobKind::Update
            | JobKind::Destroy
            | JobKind::Eradicate
    )
}

/// The options of a queued start or stop: its timer.
pub fn timer_options(timer: Option<&OneShot>) -> PendingOptions {
    PendingOptions {
        timer_due: timer.map(|t| t.due),
        timer_shown: timer.map(|t| t.shown.clone()),
        ..PendingOptions::default()
    }
}

/// The options of a queued restart: its `when_empty`.
pub fn restart_options(when_empty: Option<&WhenEmpty>) -> PendingOptions {
    PendingOptions {
        when_empty_s: when_empty.map(|w| w.deadline_s),
        announce: when_empty.and_then(|w| w.announce.clone()),
        ..PendingOptions::default()
    }
}

/// The options of a queued update: its mode, watch, plan version and `when_empty` (what the
/// API gives; a rollout's image and `Previous` plan never wait in a queue).
pub fn update_options(
    mode: UpdateMode,
    opts: &UpdateOptions,
    when_empty: Option<&WhenEmpty>,
) -> PendingOptions {
    PendingOptions {
        mode: Some(mode.as_str().to_owned()),
        watch_s: opts.watch.map(|d| d.as_secs()),
        plan_version: match &opts.plan {
            Some(PlanTarget::Version(v)) => Some(v.clone()),
            Some(PlanTarget::Previous) | None => None,
        },
        ..restart_options(when_empty)
    }
}

/// A queued action as it is carried out again after a daemon restart.
#[derive(Debug)]
pub(super) enum Replay {
    Start(Option<OneShot>),
    Stop(Option<OneShot>),
    Restart(Option<WhenEmpty>),
    Update {
        mode: UpdateMode,
        opts: UpdateOptions,
        when_empty: Option<WhenEmpty>,
    },
    Destroy,
    Eradicate,
}

/// The action a kept pending change stands for, with the options it was asked with.
pub(super) fn replay(action: &str, o: &PendingOptions) -> Result<Replay> {
    let timer = o.timer_due.map(|due| OneShot {
        due,
        shown: o
            .timer_shown
            .clone()
            .unwrap_or(serde_json::Value::from(due)),
    });
    let when_empty = o.when_empty_s.map(|deadline_s| WhenEmpty {
        deadline_s,
        announce: o.announce.clone(),
    });
    Ok(match JobKind::parse(action) {
        Some(JobKind::Start) => Replay::Start(timer),
        Some(JobKind::Stop) => Replay::Stop(timer),
        Some(JobKind::Restart) => Replay::Restart(when_empty),
        Some(JobKind::Update) => {
            // Every update is queued with its mode; a change without one was queued by an
            // older peon that did not keep it.
            let mode = o.mode.as_deref().ok_or_else(|| {
                ServiceError::Failed(
                    "this queued update was kept without its mode (by an older peon); ask for it again".into(),
                )
            })?;
            Replay::Update {
                mode: UpdateMode::parse(mode)?,
                opts: UpdateOptions {
                    watch: o.watch_s.map(std::time::Duration::from_secs),
                    plan: o.plan_version.clone().map(PlanTarget::Version),
                    ..UpdateOptions::default()
                },
                when_empty,
            }
        }
        Some(JobKind::Destroy) => Replay::Destroy,
        Some(JobKind::Eradicate) => Replay::Eradicate,
        _ => {
            return Err(ServiceError::Failed(format!(
                "a queued action [{action}] cannot wait for a node; ask for it again"
            )));
        }
    })
}

impl ServerService {
    /// Carries out a replayed action on `uid`.
    async fn carry_out(&self, uid: &Uid, r: Replay) -> Result<()> {
        match r {
            Replay::Start(timer) => self.start(uid, timer).await.map(|_| ()),
            Replay::Stop(timer) => self.stop(uid, timer).await.map(|_| ()),
            Replay::Restart(Some(we)) => self.restart_when_empty(uid, &we).await.map(|_| ()),
            Replay::Restart(None) => self.restart(uid).await.map(|_| ()),
            Replay::Update {
                mode,
                opts,
                when_empty: Some(we),
            } => self
                .update_when_empty(uid, mode, opts, &we)
                .await
                .map(|_| ()),
            Replay::Update {
                mode,
                opts,
                when_empty: None,
            } => self.update(uid, mode, opts).await.map(|_| ()),
            Replay::Destroy => self.destroy(uid, false).await.map(|_| ()),
            Replay::Eradicate => self.destroy(uid, true).await.map(|_| ()),
        }
    }

    /// The refusal of an action that cannot wait for `uid`'s node, when it is unreachable.
    pub fn refuse_if_unreachable(&self, uid: &Uid, what: &str) -> Result<()> {
        if self.is_unreachable(uid) {
            let host = self
                .store
                .get(uid)
                .and_then(|r| r.state.node.as_ref().map(|n| n.hostname.clone()))
                .unwrap_or_default();
            return Err(ServiceError::Unreachable(format!(
                "The node {host} of [{uid}] is unreachable: {what} cannot wait for it."
            )));
        }
        Ok(())
    }

    /// Queues `work` (an action of `kind` on `uid`, whose node is unreachable, asked with
    /// `options`) and returns its queued job. An action that cannot wait is refused with
    /// `Unreachable`.
    pub async fn queue_pending<F>(
        &self,
        requester: &str,
        kind: JobKind,
        uid: &Uid,
        options: PendingOptions,
        work: F,
    ) -> Result<Job>
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        if !can_wait(kind) {
            self.refuse_if_unreachable(uid, kind.as_str())?;
        }
        let job = self.jobs.begin(kind, &uid.to_string(), requester).await;
        let change = PendingChange {
            job_id: job.id().to_owned(),
            action: kind.as_str().to_owned(),
            requested: crate::live::events::now_rfc3339(),
            requester: requester.to_owned(),
            options,
        };
        tracing::info!(uid = %uid, job = job.id(), action = kind.as_str(), "node unreachable: action queued");
        self.save_state(uid, move |s| s.pending.push(change))
            .await?;
        let snapshot = job.snapshot().ok_or_else(|| {
            ServiceError::Failed("the queued job left the history at once".into())
        })?;
        self.enqueue(
            uid,
            Item {
                job,
                who: requester.to_owned(),
                work: Box::pin(work),
            },
        );
        Ok(snapshot)
    }

    /// The daemon stops: the changes still waiting stay queued for the next start (their
    /// drainers end, and with them what they held of this service).
    pub fn stop_pending(&self) {
        self.pending.stopped.send_replace(true);
        self.pending
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn enqueue(&self, uid: &Uid, item: Item) {
        let mut queues = self
            .pending
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let tx = queues.entry(uid.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let stopped = self.pending.stopped.subscribe();
            tokio::spawn(drain(self.me.clone(), uid.clone(), rx, stopped));
            tx
        });
        if let Err(mpsc::error::SendError(item)) = tx.send(item) {
            // The drainer is gone (the service is shutting down): the job stays queued and is
            // taken up again at the next start.
            drop(item);
        }
    }

    /// Queues again the changes `.peon.json` kept over a daemon restart (their jobs were kept
    /// queued by the job history).
    pub(super) fn resume_pending(self: &Arc<Self>) {
        for rec in self.store.list() {
            for p in &rec.state.pending {
                let Some(job) = self.jobs.resume(&p.job_id) else {
                    continue;
                };
                let replayed = replay(&p.action, &p.options);
                let (svc, uid) = (self.clone(), rec.uid.clone());
                let work: Work = Box::pin(async move { svc.carry_out(&uid, replayed?).await });
                tracing::info!(uid = %rec.uid, job = %p.job_id, action = %p.action, "pending change queued again after a restart");
                self.enqueue(
                    &rec.uid,
                    Item {
                        job,
                        who: p.requester.clone(),
                        work,
                    },
                );
            }
        }
    }
}

/// Carries out `uid`'s queued actions in order, each once its node answers, until the daemon
/// stops (`stopped`).
async fn drain(
    svc: std::sync::Weak<ServerService>,
    uid: Uid,
    mut rx: mpsc::UnboundedReceiver<Item>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = stopped.wait_for(|s| *s) => None,
        };
        let Some(item) = item else { return };
        let Some(s) = svc.upgrade() else { return };
        tokio::select! {
            () = s.wait_reachable(&uid) => {}
            // The job stays queued (and in `.peon.json`) for the next start.
            _ = stopped.wait_for(|s| *s) => return,
        }
        let id = item.job.id().to_owned();
        tracing::info!(uid = %uid, job = %id, "node back: applying a pending change");
        let r = jobs::within(item.job.clone(), &item.who, item.work).await;
        if let Err(e) = &r {
            tracing::warn!(uid = %uid, job = %id, "pending change failed: {e}");
        }
        // The change leaves the server's queue before its job ends: whoever sees the job done
        // no longer sees it pending.
        let gone = id.clone();
        if let Err(e) = s
            .save_state(&uid, move |st| st.pending.retain(|p| p.job_id != gone))
            .await
        {
            tracing::warn!(uid = %uid, job = %id, "cannot drop the applied pending change: {e}");
        }
        item.job.finish(r.map_err(|e| e.to_string())).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A pending change as `.peon.json` keeps it, read back.
    fn kept(action: &str, options: PendingOptions) -> PendingChange {
        let change = PendingChange {
            job_id: "j1".into(),
            action: action.into(),
            requested: "2026-12-03T16:00:00Z".into(),
            requester: "ci".into(),
            options,
        };
        let text = serde_json::to_string(&change).unwrap();
        let back: PendingChange = serde_json::from_str(&text).unwrap();
        assert_eq!(back, change, "{text}");
        back
    }

    #[test]
    fn a_queued_start_and_stop_keep_their_timer() {
        let timer = OneShot {
            due: 1_900_000_000,
            shown: serde_json::json!("1900000000"),
        };
        for action in ["start", "stop"] {
            let p = kept(action, timer_options(Some(&timer)));
            match (action, replay(&p.action, &p.options).unwrap()) {
                ("start", Replay::Start(Some(t))) | ("stop", Replay::Stop(Some(t))) => {
                    assert_eq!(t, timer)
                }
                (a, other) => panic!("{a}: {other:?}"),
            }
        }
        let p = kept("start", timer_options(None));
        assert!(p.options.is_empty());
        assert!(matches!(
            replay(&p.action, &p.options).unwrap(),
            Replay::Start(None)
        ));
    }

    #[test]
    fn a_queued_restart_keeps_its_when_empty() {
        let we = WhenEmpty {
            deadline_s: 600,
            announce: Some("back in a minute".into()),
        };
        let p = kept("restart", restart_options(Some(&we)));
        match replay(&p.action, &p.options).unwrap() {
            Replay::Restart(Some(w)) => assert_eq!(w, we),
            other => panic!("{other:?}"),
        }
        let p = kept("restart", restart_options(None));
        assert!(matches!(
            replay(&p.action, &p.options).unwrap(),
            Replay::Restart(None)
        ));
    }

    #[test]
    fn a_queued_update_keeps_its_mode_watch_plan_and_when_empty() {
        let opts = UpdateOptions {
            watch: Some(Duration::from_secs(45)),
            plan: Some(PlanTarget::Version("1.1.0".into())),
            ..UpdateOptions::default()
        };
        let we = WhenEmpty {
            deadline_s: 300,
            announce: None,
        };
        let p = kept(
            "update",
            update_options(UpdateMode::Image, &opts, Some(&we)),
        );
        match replay(&p.action, &p.options).unwrap() {
            Replay::Update {
                mode,
                opts,
                when_empty,
            } => {
                assert_eq!(mode, UpdateMode::Image);
                assert_eq!(opts.watch, Some(Duration::from_secs(45)));
                assert!(matches!(opts.plan, Some(PlanTarget::Version(v)) if v == "1.1.0"));
                assert_eq!(when_empty, Some(we));
            }
            other => panic!("{other:?}"),
        }
        let p = kept(
            "update",
            update_options(UpdateMode::Reinit, &UpdateOptions::default(), None),
        );
        match replay(&p.action, &p.options).unwrap() {
            Replay::Update {
                mode,
                opts,
                when_empty,
            } => {
                assert_eq!(mode, UpdateMode::Reinit);
                assert!(opts.watch.is_none() && opts.plan.is_none() && when_empty.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn changes_kept_by_an_older_peon_still_replay_or_say_why_not() {
        // No options field at all, as an older peon wrote it.
        let old: PendingChange = serde_json::from_str(
            r#"{"job_id":"j","action":"stop","requested":"t","requester":"ci"}"#,
        )
        .unwrap();
        assert!(old.options.is_empty());
        assert!(matches!(
            replay(&old.action, &old.options).unwrap(),
            Replay::Stop(None)
        ));
        assert!(matches!(
            replay("destroy", &old.options).unwrap(),
            Replay::Destroy
        ));
        assert!(matches!(
            replay("eradicate", &old.options).unwrap(),
            Replay::Eradicate
        ));
        let e = replay("update", &old.options).unwrap_err();
        assert!(e.to_string().contains("without its mode"), "{e}");
        assert!(replay("kill", &old.options).is_err());
    }
}
