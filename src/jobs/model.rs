//! The job record, its compact view for the event stream, and the history's bounds: the last
//! [`KEEP_TOTAL`] jobs, and at least the last [`KEEP_PER_SERVER`] of every server.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How many jobs the history keeps in all (more when servers need their own minimum).
pub const KEEP_TOTAL: usize = 1000;
/// How many jobs of each server are kept at least.
pub const KEEP_PER_SERVER: usize = 50;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Create,
    Start,
    Stop,
    Restart,
    Kill,
    Update,
    Destroy,
    Eradicate,
    Backup,
    Limits,
    Restore,
    /// A move to another node (cluster mode).
    Move,
    /// Cluster mode: rebuilt on another node from a backup after its node was lost.
    Failover,
}

impl JobKind {
    pub const ALL: [JobKind; 13] = [
        JobKind::Create,
        JobKind::Start,
        JobKind::Stop,
        JobKind::Restart,
        JobKind::Kill,
        JobKind::Update,
        JobKind::Destroy,
        JobKind::Eradicate,
        JobKind::Backup,
        JobKind::Limits,
        JobKind::Restore,
        JobKind::Move,
        JobKind::Failover,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Create => "create",
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Kill => "kill",
            JobKind::Update => "update",
            JobKind::Destroy => "destroy",
            JobKind::Eradicate => "eradicate",
            JobKind::Backup => "backup",
            JobKind::Limits => "limits",
            JobKind::Restore => "restore",
            JobKind::Move => "move",
            JobKind::Failover => "failover",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a job (or a step) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// True once the job (or step) ended.
    pub fn is_done(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    pub name: String,
    /// `running`, `succeeded` or `failed`.
    pub state: JobState,
    /// RFC 3339, UTC.
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job: one mutating action on one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// The server's uid (for a create with a random name: what was asked until the name is
    /// picked).
    pub uid: String,
    /// Who asked: `api` (an HTTP request), `schedule` (a scheduled firing), `policy` (an
    /// automatic restart), `daemon` (bringing servers back at boot).
    pub requester: String,
    pub state: JobState,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

/// A job without its step list, with its latest step: what the event stream carries.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: JobKind,
    pub uid: String,
    pub requester: String,
    pub state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The latest step, while or after it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

impl Job {
    pub fn view(&self) -> JobView {
        JobView {
            id: self.id.clone(),
            kind: self.kind,
            uid: self.uid.clone(),
            requester: self.requester.clone(),
            state: self.state,
            error: self.error.clone(),
            step: self.steps.last().cloned(),
            created: self.created.clone(),
            started: self.started.clone(),
            finished: self.finished.clone(),
        }
    }

    /// Ends the job (and any step still open) with `result`, unless it already ended.
    pub fn end(&mut self, result: Result<(), String>, now: &str) {
        if self.state.is_done() {
            return;
        }
        for s in self.steps.iter_mut().filter(|s| !s.state.is_done()) {
            s.state = JobState::Failed;
            s.finished = Some(now.to_owned());
        }
        self.started.get_or_insert_with(|| now.to_owned());
        self.finished = Some(now.to_owned());
        match result {
            Ok(()) => self.state = JobState::Succeeded,
            Err(e) => {
                self.state = JobState::Failed;
                self.error = Some(e);
            }
        }
    }
}

/// What `GET /jobs` asks for.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub uid: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub limit: Option<usize>,
}

impl JobFilter {
    pub fn matches(&self, j: &Job) -> bool {
        self.uid.as_ref().is_none_or(|u| *u == j.uid)
            && self.state.is_none_or(|s| s == j.state)
            && self.kind.is_none_or(|k| k == j.kind)
    }
}

/// Drops the oldest jobs beyond [`KEEP_TOTAL`], but never one of the last
/// [`KEEP_PER_SERVER`] of its server, nor one that has not ended. `jobs` is oldest first.
pub fn prune(jobs: &mut Vec<Job>) {
    if jobs.len() <= KEEP_TOTAL {
        return;
    }
    let mut per: HashMap<&str, usize> = HashMap::new();
    let mut keep = vec![false; jobs.len()];
    for (rank, i) in (0..jobs.len()).rev().enumerate() {
        let j = &jobs[i];
        let c = per.entry(j.uid.as_str()).or_default();
        *c += 1;
        keep[i] = rank < KEEP_TOTAL || *c <= KEEP_PER_SERVER || !j.state.is_done();
    }
    let mut it = keep.into_iter();
    jobs.retain(|_| it.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn job(id: usize, uid: &str) -> Job {
        Job {
            id: format!("j{id:05}"),
            kind: JobKind::Start,
            uid: uid.into(),
            requester: "api".into(),
            state: JobState::Succeeded,
            steps: Vec::new(),
            error: None,
            created: "t".into(),
            started: None,
            finished: None,
        }
    }

    #[test]
    fn history_keeps_the_last_thousand() {
        let mut jobs: Vec<Job> = (0..1500)
            .map(|i| job(i, &format!("g.s{}", i % 10)))
            .collect();
        prune(&mut jobs);
        assert_eq!(jobs.len(), KEEP_TOTAL);
        assert_eq!(jobs[0].id, "j00500");
        assert_eq!(jobs.last().unwrap().id, "j01499");
    }

    #[test]
    fn history_keeps_fifty_of_every_server() {
        // One quiet server's 60 old jobs, then 2000 of a busy one.
        let mut jobs: Vec<Job> = (0..60).map(|i| job(i, "g.quiet")).collect();
        jobs.extend((60..2060).map(|i| job(i, "g.busy")));
        prune(&mut jobs);
        let quiet: Vec<&Job> = jobs.iter().filter(|j| j.uid == "g.quiet").collect();
        assert_eq!(quiet.len(), KEEP_PER_SERVER);
        assert_eq!(
            quiet[0].id, "j00010",
            "the newest 50 of the quiet server are kept"
        );
        assert_eq!(jobs.len(), KEEP_TOTAL + KEEP_PER_SERVER);
        // Under the bound, nothing goes.
        let mut few: Vec<Job> = (0..KEEP_TOTAL).map(|i| job(i, "g.a")).collect();
        prune(&mut few);
        assert_eq!(few.len(), KEEP_TOTAL);
    }

    #[test]
    fn unfinished_jobs_are_never_dropped() {
        let mut jobs: Vec<Job> = (0..1200).map(|i| job(i, "g.a")).collect();
        jobs[0].state = JobState::Running;
        prune(&mut jobs);
        assert_eq!(jobs[0].id, "j00000");
        assert_eq!(jobs.len(), KEEP_TOTAL + 1);
    }

    #[test]
    fn end_closes_open_steps_once() {
        let mut j = job(1, "g.a");
        j.state = JobState::Running;
        j.steps.push(Step {
            name: "start".into(),
            state: JobState::Running,
            started: "t0".into(),
            finished: None,
            error: None,
        });
        j.end(Err("boom".into()), "t1");
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.steps[0].state, JobState::Failed);
        assert_eq!(j.error.as_deref(), Some("boom"));
        j.end(Ok(()), "t2");
        assert_eq!(j.state, JobState::Failed, "an ended job stays ended");
    }
}
