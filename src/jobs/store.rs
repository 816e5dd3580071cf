//! [`Jobs`]: the job history, in memory and in `<data>/jobs.json`.
//!
//! One file, rewritten whole through `fsio::atomic` (temp file, fsync, rename): the history is
//! bounded (about a thousand small records, well under a megabyte), so one file keeps pruning
//! and the survival of a crash trivial: the file on disk is always one whole, consistent
//! history. One file per job would need a directory scan at boot and a delete per pruned job,
//! and could leave a half-pruned history behind. Writes are serialized and coalesced: a write
//! that finds a newer state already on disk is skipped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::model::{self, Job, JobFilter, JobKind, JobState};
use super::scope::Running;
use crate::fsio::atomic;

/// The error a job gets when the daemon stopped while it ran.
pub const INTERRUPTED: &str = "interrupted: the daemon stopped while it ran";

/// Errors of the job history.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("There is no job [{0}].")]
    NotFound(String),
    #[error("cannot write the job history {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `jobs.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// Oldest first.
    jobs: Vec<Job>,
}

type Notify = Box<dyn Fn(&Job) + Send + Sync>;

/// The job history.
pub struct Jobs {
    path: PathBuf,
    jobs: Mutex<Vec<Job>>,
    /// Bumped on every change.
    version: AtomicU64,
    /// The version last written; held while writing.
    written: tokio::sync::Mutex<u64>,
    notify: OnceLock<Notify>,
    /// Called once when a job ends (metrics).
    on_end: OnceLock<Notify>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Jobs {
    /// Reads the history (a missing file is an empty one; an unreadable one is set aside).
    /// Jobs that were queued or running are marked failed: the daemon stopped while they ran.
    pub fn load(path: &Path) -> Result<Jobs, JobError> {
        Jobs::load_keeping(path, &std::collections::HashSet::new())
    }

    /// As [`Jobs::load`], but the queued jobs named in `queued` stay queued: pending changes
    /// that wait for their server's node (cluster mode) survive a daemon restart.
    pub fn load_keeping(
        path: &Path,
        queued: &std::collections::HashSet<String>,
    ) -> Result<Jobs, JobError> {
        let mut file: File = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                let aside = path.with_extension(format!("json.bad-{}", atomic::random_suffix()));
                tracing::warn!(path = %path.display(), "unreadable job history, set aside as {}: {e}", aside.display());
                let _ = std::fs::rename(path, &aside);
                File::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => {
                return Err(JobError::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let t = now();
        let mut changed = false;
        for j in file
            .jobs
            .iter_mut()
            .filter(|j| !j.state.is_done())
            .filter(|j| !(j.state == JobState::Queued && queued.contains(&j.id)))
        {
            j.end(Err(INTERRUPTED.to_owned()), &t);
            changed = true;
        }
        model::prune(&mut file.jobs);
        if changed {
            atomic::write_json_atomic(path, &file).map_err(|e| JobError::Io {
                path: path.to_owned(),
                source: e,
            })?;
        }
        Ok(Jobs {
            path: path.to_owned(),
            jobs: Mutex::new(file.jobs),
            version: AtomicU64::new(0),
            written: tokio::sync::Mutex::new(0),
            notify: OnceLock::new(),
            on_end: OnceLock::new(),
        })
    }

    /// Sets what is called with every new state of a job (the event stream). Once.
    pub fn on_change(&self, f: impl Fn(&Job) + Send + Sync + 'static) {
        let _ = self.notify.set(Box::new(f));
    }

    /// Sets what is called once with every job that ends (its final state). Once.
    pub fn on_end(&self, f: impl Fn(&Job) + Send + Sync + 'static) {
        let _ = self.on_end.set(Box::new(f));
    }

    pub(super) fn ended(&self, job: &Job) {
        if let Some(f) = self.on_end.get() {
            f(job);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One job.
    pub fn get(&self, id: &str) -> Result<Job, JobError> {
        self.lock()
            .iter()
            .rev()
            .find(|j| j.id == id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_owned()))
    }

    /// The jobs that match, newest first.
    pub fn list(&self, f: &JobFilter) -> Vec<Job> {
        self.lock()
            .iter()
            .rev()
            .filter(|j| f.matches(j))
            .take(f.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Records a new, queued job.
    pub async fn begin(self: &Arc<Self>, kind: JobKind, uid: &str, requester: &str) -> Running {
        let id = format!(
            "{}-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S%3f"),
            atomic::random_suffix()
        );
        let job = Job {
            id: id.clone(),
            kind,
            uid: uid.to_owned(),
            requester: requester.to_owned(),
            state: JobState::Queued,
            steps: Vec::new(),
            error: None,
            created: now(),
            started: None,
            finished: None,
        };
        {
            let mut jobs = self.lock();
            jobs.push(job.clone());
            model::prune(&mut jobs);
        }
        self.changed(&job);
        self.persist_soon();
        super::scope::note(&id);
        Running::new(self.clone(), id)
    }

    /// A queued job of the history, to carry it out (a pending change kept over a restart).
    pub fn resume(self: &Arc<Self>, id: &str) -> Option<Running> {
        self.get(id)
            .ok()
            .filter(|j| j.state == JobState::Queued)
            .map(|j| Running::new(self.clone(), j.id))
    }

    /// Changes a job; with `tell`, publishes its new state. `None` when it is gone.
    pub(super) fn update(
        &self,
        id: &str,
        tell: bool,
        f: impl FnOnce(&mut Job, &str),
    ) -> Option<Job> {
        let t = now();
        let job = {
            let mut jobs = self.lock();
            let j = jobs.iter_mut().rev().find(|j| j.id == id)?;
            f(j, &t);
            j.clone()
        };
        if tell {
            self.changed(&job);
        } else {
            self.version.fetch_add(1, Ordering::SeqCst);
        }
        Some(job)
    }

    fn changed(&self, job: &Job) {
        self.version.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.notify.get() {
            f(job);
        }
    }

    /// Writes the history in the background: what a job records while it runs never delays
    /// the action (a kill must go through at once); its end is awaited ([`Jobs::persist`]).
    pub fn persist_soon(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.persist().await });
    }

    /// Writes the history unless a newer state is already on disk. A failed write is logged:
    /// it never fails the action the job records.
    pub async fn persist(self: &Arc<Self>) {
        let mut written = self.written.lock().await;
        let version = self.version.load(Ordering::SeqCst);
        if *written >= version {
            return;
        }
        let file = File {
            jobs: self.lock().clone(),
        };
        let path = self.path.clone();
        let r = tokio::task::spawn_blocking(move || atomic::write_json_atomic(&path, &file)).await;
        match r {
            Ok(Ok(())) => *written = version,
            Ok(Err(e)) => {
                tracing::warn!(path = %self.path.display(), "cannot write the job history: {e}")
            }
            Err(e) => tracing::warn!("job history write task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_survives_a_restart_and_running_jobs_are_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.json");
        let jobs = Arc::new(Jobs::load(&path).unwrap());
        let done = jobs.begin(JobKind::Start, "g.a", "api").await;
        done.start().await;
        crate::jobs::within(done.clone(), "api", async {
            crate::jobs::step("settle", async { Ok::<_, String>(()) }).await
        })
        .await
        .unwrap();
        done.finish(Ok(())).await;
        let running = jobs.begin(JobKind::Stop, "g.b", "schedule").await;
        running.start().await;
        let queued = jobs.begin(JobKind::Update, "g.b", "api").await;
        jobs.persist().await;
        drop(jobs);

        let again = Jobs::load(&path).unwrap();
        let all = again.list(&JobFilter::default());
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].id, done.id(), "newest first");
        let d = again.get(done.id()).unwrap();
        assert_eq!(d.state, JobState::Succeeded);
        assert_eq!(d.steps.len(), 1);
        assert_eq!(d.steps[0].name, "settle");
        assert_eq!(d.steps[0].state, JobState::Succeeded);
        for id in [running.id(), queued.id()] {
            let j = again.get(id).unwrap();
            assert_eq!(j.state, JobState::Failed);
            assert_eq!(j.error.as_deref(), Some(INTERRUPTED));
            assert!(j.finished.is_some());
        }
        // The marking was written: a third load finds it as is.
        let third = Jobs::load(&path).unwrap();
        assert_eq!(
            third.get(running.id()).unwrap().error.as_deref(),
            Some(INTERRUPTED)
        );
        assert!(matches!(third.get("nope"), Err(JobError::NotFound(_))));
        let f = JobFilter {
            uid: Some("g.b".into()),
            kind: Some(JobKind::Stop),
            ..Default::default()
        };
        assert_eq!(third.list(&f).len(), 1);
        let f = JobFilter {
            state: Some(JobState::Failed),
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(third.list(&f)[0].id, queued.id());
    }
}
