//! Jobs of the service: every lifecycle action runs as a job (see `action` in `lifecycle.rs`),
//! here are the reads of the history, naming who asks, and running an action in the background.

use std::future::Future;

use super::{Result, ServerService};
use crate::jobs::{self, Job, JobFilter, JobKind};

impl ServerService {
    /// The jobs that match, newest first.
    pub fn jobs(&self, filter: &JobFilter) -> Vec<Job> {
        self.jobs.list(filter)
    }

    /// One job, or `job.notfound`.
    pub fn job(&self, id: &str) -> Result<Job> {
        Ok(self.jobs.get(id)?)
    }

    /// Runs `work` (calls of this service) on behalf of `requester`: the jobs it makes name
    /// them (`api` for an HTTP request).
    pub async fn acting<F: Future>(&self, requester: &str, work: F) -> F::Output {
        jobs::as_requester(requester, work).await
    }

    /// Records a queued job of `kind` on `uid` and runs `work` (calls of this service) for it
    /// in the background, where a client going away cannot cancel it. Returns the new job.
    pub async fn detach<T, F>(&self, requester: &str, kind: JobKind, uid: &str, work: F) -> Job
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let job = self.jobs.begin(kind, uid, requester).await;
        let snapshot = job.snapshot();
        let (j, who) = (job.clone(), requester.to_owned());
        tokio::spawn(async move {
            let r = jobs::within(j.clone(), &who, work).await;
            if let Err(e) = &r {
                tracing::warn!(job = j.id(), "background {} failed: {e}", kind.as_str());
            }
            j.finish(r.map(|_| ()).map_err(|e| e.to_string())).await;
        });
        snapshot.unwrap_or_else(|| Job {
            id: job.id().to_owned(),
            kind,
            uid: uid.to_owned(),
            requester: requester.to_owned(),
            state: jobs::JobState::Queued,
            steps: Vec::new(),
            error: None,
            created: crate::live::events::now_rfc3339(),
            started: None,
            finished: None,
        })
    }
}
