//! Cluster mode: pending changes. An action on a server whose node is unreachable (start,
//! stop, restart, update, destroy, eradicate) is accepted as a job in state `queued`, kept in
//! the server's `.peon.json` (`pending`), and applied in order once the node answers again:
//! one queue per server, drained by one task. Actions that cannot wait (console commands,
//! console attach, kill) are refused with `Unreachable` (409 `srv.unreachable`).
//!
//! After a daemon restart, the queued jobs are kept (not marked interrupted) and carried out
//! again from their kind: a start's stop timer, a restart's `when_empty` and an update's mode
//! are not kept (an update waiting over a restart is failed, saying so).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Result, ServerService, ServiceError};
use crate::jobs::{self, Job, JobKind, Running};
use crate::names::Uid;
use crate::store::PendingChange;

type Work = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One queued action.
struct Item {
    job: Running,
    who: String,
    work: Work,
}

/// The queues of pending changes, one per server.
#[derive(Default)]
pub(super) struct Pending {
    queues: Mutex<HashMap<Uid, mpsc::UnboundedSender<Item>>>,
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

impl ServerService {
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

    /// Queues `work` (an action of `kind` on `uid`, whose node is unreachable) and returns
    /// its queued job. An action that cannot wait is refused with `Unreachable`.
    pub async fn queue_pending<F>(
        &self,
        requester: &str,
        kind: JobKind,
        uid: &Uid,
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

    fn enqueue(&self, uid: &Uid, item: Item) {
        let mut queues = self
            .pending
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let tx = queues.entry(uid.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(drain(self.me.clone(), uid.clone(), rx));
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
                let kind = JobKind::parse(&p.action);
                let (svc, uid) = (self.clone(), rec.uid.clone());
                let work: Work = Box::pin(async move {
                    match kind {
                        Some(JobKind::Start) => svc.start(&uid, None).await.map(|_| ()),
                        Some(JobKind::Stop) => svc.stop(&uid, None).await.map(|_| ()),
                        Some(JobKind::Restart) => svc.restart(&uid).await.map(|_| ()),
                        Some(JobKind::Destroy) => svc.destroy(&uid, false).await.map(|_| ()),
                        Some(JobKind::Eradicate) => svc.destroy(&uid, true).await.map(|_| ()),
                        _ => Err(ServiceError::Failed(
                            "this queued action's options were not kept over a daemon restart; ask for it again".into(),
                        )),
                    }
                });
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

/// Carries out `uid`'s queued actions in order, each once its node answers.
async fn drain(
    svc: std::sync::Weak<ServerService>,
    uid: Uid,
    mut rx: mpsc::UnboundedReceiver<Item>,
) {
    while let Some(item) = rx.recv().await {
        let Some(s) = svc.upgrade() else { return };
        s.wait_reachable(&uid).await;
        let id = item.job.id().to_owned();
        tracing::info!(uid = %uid, job = %id, "node back: applying a pending change");
        let r = jobs::within(item.job.clone(), &item.who, item.work).await;
        if let Err(e) = &r {
            tracing::warn!(uid = %uid, job = %id, "pending change failed: {e}");
        }
        item.job.finish(r.map_err(|e| e.to_string())).await;
        let gone = id.clone();
        if let Err(e) = s
            .save_state(&uid, move |st| st.pending.retain(|p| p.job_id != gone))
            .await
        {
            tracing::warn!(uid = %uid, job = %id, "cannot drop the applied pending change: {e}");
        }
    }
}
