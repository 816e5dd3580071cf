//! The job a task runs for. The service runs an action inside [`within`] its job; code deep in
//! the action records its steps with [`step`], without the job being passed down every call.
//! [`as_requester`] names who asks for the jobs an action makes (`api`, `schedule`, ...).
//!
//! Only the outermost step is recorded: a step that runs inside another (a `stop` inside an
//! update runs the stop's own steps) is part of it.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::model::{Job, JobState, Step};
use super::store::Jobs;

/// A job of the history being carried out.
#[derive(Clone)]
pub struct Running {
    jobs: Arc<Jobs>,
    id: String,
    /// How many steps are open (only the outermost is recorded).
    depth: Arc<AtomicUsize>,
}

struct Scope {
    requester: String,
    job: Option<Running>,
}

tokio::task_local! {
    static SCOPE: Scope;
    /// The first job made in a task run by [`noting_job`].
    static NOTED: std::sync::Mutex<Option<String>>;
}

/// Runs `fut`, returning with its output the id of the first job recorded while it ran (in
/// this task: a background job made by `detach` is recorded here, before it is spawned). The
/// audit log names the job a request started this way.
pub async fn noting_job<F: Future>(fut: F) -> (F::Output, Option<String>) {
    NOTED
        .scope(std::sync::Mutex::new(None), async {
            let out = Box::pin(fut).await;
            let id = NOTED
                .try_with(|n| n.lock().unwrap_or_else(|p| p.into_inner()).clone())
                .ok()
                .flatten();
            (out, id)
        })
        .await
}

/// Notes a new job for [`noting_job`] (the first one only).
pub(super) fn note(id: &str) {
    let _ = NOTED.try_with(|n| {
        n.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| id.to_owned());
    });
}

/// Runs `fut` with `requester` named as who asks for the jobs it makes.
pub async fn as_requester<F: Future>(requester: &str, fut: F) -> F::Output {
    let s = Scope {
        requester: requester.to_owned(),
        job: current(),
    };
    SCOPE.scope(s, Box::pin(fut)).await
}

/// Runs `fut` for `job`: its steps are recorded on it.
pub async fn within<F: Future>(job: Running, requester: &str, fut: F) -> F::Output {
    let s = Scope {
        requester: requester.to_owned(),
        job: Some(job),
    };
    SCOPE.scope(s, Box::pin(fut)).await
}

/// Who asks, when the task runs on someone's behalf.
pub fn requester() -> Option<String> {
    SCOPE.try_with(|s| s.requester.clone()).ok()
}

/// The job the task runs for.
pub fn current() -> Option<Running> {
    SCOPE.try_with(|s| s.job.clone()).ok().flatten()
}

/// Runs one step of the current job, recording its start, end and result. Without a job (or
/// inside another step) it just runs `fut`.
pub async fn step<T, E: Display>(
    name: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    // Boxed: steps nest deep futures, which would otherwise all sit in one task's stack
    // frames (debug builds overflow).
    let fut = Box::pin(fut);
    let Some(job) = current() else {
        return fut.await;
    };
    if job.depth.fetch_add(1, Ordering::SeqCst) > 0 {
        let r = fut.await;
        job.depth.fetch_sub(1, Ordering::SeqCst);
        return r;
    }
    let index = job.step_begin(name).await;
    let r = fut.await;
    job.depth.fetch_sub(1, Ordering::SeqCst);
    if let Some(i) = index {
        job.step_end(i, r.as_ref().map(|_| ()).map_err(ToString::to_string))
            .await;
    }
    r
}

impl Running {
    pub(super) fn new(jobs: Arc<Jobs>, id: String) -> Running {
        Running {
            jobs,
            id,
            depth: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job as it is now.
    pub fn snapshot(&self) -> Option<Job> {
        self.jobs.get(&self.id).ok()
    }

    /// True once the job left the queue.
    pub fn is_started(&self) -> bool {
        self.snapshot().is_none_or(|j| j.state != JobState::Queued)
    }

    /// Names the server, once it is known (a create with a random name).
    pub fn set_uid(&self, uid: &str) {
        self.jobs
            .update(&self.id, false, |j, _| uid.clone_into(&mut j.uid));
    }

    /// Marks the job running.
    pub async fn start(&self) {
        self.jobs.update(&self.id, true, |j, t| {
            if j.state == JobState::Queued {
                j.state = JobState::Running;
                j.started = Some(t.to_owned());
            }
        });
        self.jobs.persist_soon();
    }

    /// Ends the job (unless it already ended).
    pub async fn finish(&self, result: Result<(), String>) {
        let mut ended = false;
        let job = self.jobs.update(&self.id, true, |j, t| {
            ended = !j.state.is_done();
            j.end(result, t);
        });
        if let Some(job) = job.filter(|_| ended) {
            self.jobs.ended(&job);
        }
        self.jobs.persist().await;
    }

    async fn step_begin(&self, name: &str) -> Option<usize> {
        let job = self.jobs.update(&self.id, true, |j, t| {
            j.steps.push(Step {
                name: name.to_owned(),
                state: JobState::Running,
                started: t.to_owned(),
                finished: None,
                error: None,
            })
        })?;
        self.jobs.persist_soon();
        Some(job.steps.len() - 1)
    }

    async fn step_end(&self, index: usize, result: Result<(), String>) {
        self.jobs.update(&self.id, true, |j, t| {
            if let Some(s) = j.steps.get_mut(index) {
                s.finished = Some(t.to_owned());
                match result {
                    Ok(()) => s.state = JobState::Succeeded,
                    Err(e) => {
                        s.state = JobState::Failed;
                        s.error = Some(e);
                    }
                }
            }
        });
        self.jobs.persist_soon();
    }
}
