//! Rollouts: an update of many servers in batches, with a success rule per batch, kept in
//! `<data>/rollouts.json` so that a rollout resumes after a daemon restart. This module holds the
//! model and the file; the service runs rollouts (`service/rollout.rs`). It imports only `fsio`.

use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::fsio::atomic;

/// Rollouts kept in the file (finished ones beyond this go, oldest first).
const KEEP: usize = 100;

/// Errors of the rollout history.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("There is no rollout [{0}].")]
    NotFound(String),
    #[error("The rollout [{0}] has already ended.")]
    Ended(String),
    #[error("cannot write the rollouts {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    /// Every batch succeeded.
    Succeeded,
    /// A batch failed (or the rollout ran out of time); the servers it updated were rolled back
    /// to the last known good, and the target is marked bad.
    Failed,
    /// Aborted by a host; the servers it updated were rolled back.
    Aborted,
}

/// Where one server is in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServerStep {
    Pending,
    Updating,
    /// On the target and ready in time.
    Updated,
    /// Its update failed (and was undone by itself).
    Failed,
    /// It was updated, then taken back to the last known good because the rollout failed.
    RolledBack,
    /// Its way back failed too: see `error`.
    RollbackFailed,
}

/// One server of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutServer {
    pub uid: String,
    /// The batch it belongs to, from 0.
    pub batch: usize,
    pub state: ServerStep,
    /// The image id it ran before the rollout (its last known good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_image: Option<String>,
    /// The plan version it ran before the rollout (for a rollout to a plan version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_plan_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A rollout, as shown by `GET /rollout/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    pub id: String,
    /// The image the servers go to (empty for a rollout to a plan version).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_image: String,
    /// The plan version of their game the servers go to (with its files, settings and image),
    /// instead of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_plan_version: Option<String>,
    /// The game whose servers it updates, when it was asked for by game.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game: Option<String>,
    pub batch_percent: u32,
    pub success_percent: u32,
    /// Seconds a server has to get ready on the target.
    pub success_timeout_s: u64,
    /// Seconds the whole rollout may take.
    pub duration_timeout_s: u64,
    /// Seconds an updated server must stay up after getting ready.
    pub watch_s: u64,
    pub state: RolloutState,
    /// The batch under way (or the last one), from 0, and how many there are.
    pub batch: usize,
    pub batches: usize,
    pub servers: Vec<RolloutServer>,
    /// What the servers ran before (the last known good), when they all ran the same: an image
    /// id, or for a rollout to a plan version, a plan version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_good: Option<String>,
    /// The target (an image, or a plan version), once a batch failed on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_known_bad: Option<String>,
    /// Set by `POST /rollout/<id>/abort`; honoured before the next server update begins.
    #[serde(default)]
    pub abort_requested: bool,
    /// Why it failed or was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who asked (an API key's name).
    pub requester: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// How many times a daemon start resumed it.
    #[serde(default)]
    pub resumed: u32,
}

impl Rollout {
    /// The target in words: `image <ref>` or `plan version <v>`.
    pub fn target_text(&self) -> String {
        match &self.target_plan_version {
            Some(v) => format!("plan version {v}"),
            None => format!("image {}", self.target_image),
        }
    }

    /// The target as recorded in `last_known_bad`.
    pub fn target_value(&self) -> String {
        self.target_plan_version
            .clone()
            .unwrap_or_else(|| self.target_image.clone())
    }

    /// The servers of batch `b`.
    pub fn batch_servers(&self, b: usize) -> impl Iterator<Item = &RolloutServer> {
        self.servers.iter().filter(move |s| s.batch == b)
    }
}

/// Splits `n` servers into batches of `batch_percent` (at least one server each).
pub fn batch_size(n: usize, batch_percent: u32) -> usize {
    let pct = batch_percent.clamp(1, 100) as usize;
    (n * pct).div_ceil(100).max(1)
}

/// Whether `ok` successes out of `total` meet `success_percent`.
pub fn batch_succeeded(ok: usize, total: usize, success_percent: u32) -> bool {
    total == 0 || ok * 100 >= total * success_percent.min(100) as usize
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// Oldest first.
    rollouts: Vec<Rollout>,
}

/// The rollouts, in memory and in `<data>/rollouts.json` (rewritten whole and atomically on
/// every change: a rollout changes a few times per server).
pub struct Rollouts {
    path: PathBuf,
    all: Mutex<Vec<Rollout>>,
}

impl Rollouts {
    /// Reads the file; a missing file is no rollouts, an unreadable one is set aside.
    pub fn load(path: PathBuf) -> Rollouts {
        let all = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice::<File>(&b) {
                Ok(f) => f.rollouts,
                Err(e) => {
                    let aside =
                        path.with_extension(format!("json.bad-{}", atomic::random_suffix()));
                    tracing::warn!(
                        "rollouts: {} is unreadable ({e}); set aside as {}",
                        path.display(),
                        aside.display()
                    );
                    let _ = std::fs::rename(&path, &aside);
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        };
        Rollouts {
            path,
            all: Mutex::new(all),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rollout>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All rollouts, newest first.
    pub fn list(&self) -> Vec<Rollout> {
        self.lock().iter().rev().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Result<Rollout, RolloutError> {
        self.lock()
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| RolloutError::NotFound(id.to_owned()))
    }

    /// The rollouts a daemon start must resume.
    pub fn running(&self) -> Vec<Rollout> {
        self.lock()
            .iter()
            .filter(|r| r.state == RolloutState::Running)
            .cloned()
            .collect()
    }

    /// Records a new rollout (or replaces one with the same id), then writes the file.
    /// Blocks: call it off the async workers.
    pub fn put(&self, r: Rollout) -> Result<(), RolloutError> {
        let mut all = self.lock();
        match all.iter_mut().find(|x| x.id == r.id) {
            Some(x) => *x = r,
            None => all.push(r),
        }
        self.write_locked(&mut all)
    }

    /// Changes a rollout and writes the file, all under the lock: two changes at once (the
    /// servers of one batch) never lose one another's, and the file never goes back to an
    /// older state. Blocks.
    pub fn change(&self, id: &str, f: impl FnOnce(&mut Rollout)) -> Result<Rollout, RolloutError> {
        let mut all = self.lock();
        let r = all
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| RolloutError::NotFound(id.to_owned()))?;
        f(r);
        let r = r.clone();
        self.write_locked(&mut all)?;
        Ok(r)
    }

    /// Drops the oldest finished rollouts over [`KEEP`] and writes the file (the lock held).
    fn write_locked(&self, all: &mut Vec<Rollout>) -> Result<(), RolloutError> {
        while all.len() > KEEP {
            match all.iter().position(|x| x.state != RolloutState::Running) {
                Some(i) => {
                    all.remove(i);
                }
                None => break,
            }
        }
        let snapshot = File {
            rollouts: all.clone(),
        };
        atomic::write_json_atomic(&self.path, &snapshot).map_err(|source| RolloutError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_success_rule() {
        assert_eq!(batch_size(4, 50), 2);
        assert_eq!(batch_size(5, 50), 3);
        assert_eq!(batch_size(3, 1), 1);
        assert_eq!(batch_size(3, 100), 3);
        assert_eq!(batch_size(3, 0), 1);
        assert!(batch_succeeded(2, 2, 100));
        assert!(!batch_succeeded(1, 2, 100));
        assert!(batch_succeeded(1, 2, 50));
        assert!(!batch_succeeded(0, 3, 50));
    }

    #[test]
    fn file_round_trip_and_resume_list() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rollouts.json");
        let rs = Rollouts::load(path.clone());
        let r = Rollout {
            id: "r1".into(),
            target_image: "img:2".into(),
            target_plan_version: None,
            game: Some("g".into()),
            batch_percent: 50,
            success_percent: 100,
            success_timeout_s: 60,
            duration_timeout_s: 600,
            watch_s: 5,
            state: RolloutState::Running,
            batch: 0,
            batches: 2,
            servers: vec![],
            last_known_good: None,
            last_known_bad: None,
            abort_requested: false,
            error: None,
            requester: "admin".into(),
            created: "t".into(),
            finished: None,
            resumed: 0,
        };
        rs.put(r.clone()).unwrap();
        rs.change("r1", |r| r.batch = 1).unwrap();
        let again = Rollouts::load(path.clone());
        assert_eq!(again.get("r1").unwrap().batch, 1);
        assert_eq!(again.running().len(), 1);
        assert!(matches!(again.get("nope"), Err(RolloutError::NotFound(_))));

        // The servers of one batch change the rollout at once: no change is lost, in memory
        // or in the file.
        let n = 16;
        rs.change("r1", |r| {
            r.servers = (0..n)
                .map(|i| RolloutServer {
                    uid: format!("g.s{i}"),
                    batch: 0,
                    state: ServerStep::Pending,
                    from_image: None,
                    from_plan_version: None,
                    error: None,
                })
                .collect()
        })
        .unwrap();
        std::thread::scope(|sc| {
            for i in 0..n {
                let rs = &rs;
                sc.spawn(move || {
                    rs.change("r1", |r| {
                        r.servers[i].state = ServerStep::Updating;
                        r.servers[i].from_image = Some(format!("img:{i}"));
                    })
                    .unwrap();
                });
            }
        });
        for r in [
            rs.get("r1").unwrap(),
            Rollouts::load(path).get("r1").unwrap(),
        ] {
            for (i, s) in r.servers.iter().enumerate() {
                assert_eq!(s.from_image.as_deref(), Some(format!("img:{i}").as_str()));
                assert_eq!(s.state, ServerStep::Updating);
            }
        }
    }
}
