//! The data dir: where every server's files live (`servers/<game>/<name>/`, PEON's layout), and
//! an in-memory index of the servers' configs so that listing servers needs no disk reads.
//!
//! The server directory is the truth; containers are disposable and rebuilt from `config.json`.
//! Every write goes through [`atomic`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fsio::atomic;

mod planfiles;
mod serverdir;
mod transfer;
mod undo;
use crate::model::exit::ExitRecord;
use crate::model::lifecycle::{PlanLimits, RestartPolicy};
use crate::model::plan::{Plan, parse_plan, problems_text};
use crate::model::update::UpdateRecord;
use crate::names::Uid;
pub use serverdir::{NewServer, Staged};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl StoreError {
    pub fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The layout of the data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// The file in a server directory where peon keeps its own facts about the server.
pub const STATE_FILE: &str = ".peon.json";
/// PEON's server configuration file: the plan with the user's settings merged in.
pub const CONFIG_FILE: &str = "config.json";

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn servers(&self) -> PathBuf {
        self.root.join("servers")
    }

    pub fn server_dir(&self, uid: &Uid) -> PathBuf {
        self.servers().join(uid.game()).join(uid.name())
    }

    /// Where new servers are assembled before they are renamed into place, and where removed
    /// ones are moved before they are deleted (same filesystem, so both are one rename).
    pub fn staging(&self) -> PathBuf {
        self.servers().join(".staging")
    }

    /// Undo points of updates under way: a copy of each server directory being updated, on the
    /// same filesystem as `servers/` so a rollback is one atomic exchange.
    pub fn undo(&self) -> PathBuf {
        self.root.join("undo")
    }

    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    pub fn jobs_file(&self) -> PathBuf {
        self.root.join("jobs.json")
    }

    pub fn rollouts_file(&self) -> PathBuf {
        self.root.join("rollouts.json")
    }

    pub fn schedules_file(&self) -> PathBuf {
        self.root.join("schedules.json")
    }

    /// Creates the top-level folders and clears debris a crash may have left in staging.
    pub fn prepare(&self) -> Result<()> {
        for d in [self.servers(), self.backups(), self.undo()] {
            std::fs::create_dir_all(&d).map_err(|e| StoreError::io("cannot create", &d, e))?;
        }
        let staging = self.staging();
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| StoreError::io("cannot clear", &staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| StoreError::io("cannot create", &staging, e))
    }
}

/// What peon wants of a server, kept in `.peon.json` beside `config.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerState {
    /// `running` when the host asked for the server to run; a restarted daemon brings it back.
    #[serde(default)]
    pub wanted_running: bool,
    /// The plan version the server was built from.
    #[serde(default)]
    pub plan_version: Option<String>,
    /// Unix time of creation.
    #[serde(default)]
    pub created: i64,
    /// The restart policy chosen for this server (the plan's, or the default, when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// The stop grace period chosen for this server, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_s: Option<u64>,
    /// Stop the game after this many seconds with nobody playing (needs the plan's `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop_s: Option<u64>,
    /// No idle stop within this many seconds of a start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_grace_s: Option<u64>,
    /// After an idle stop, hold the game's ports and start it on the first connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wake_on_connect: bool,
    /// Take a backup before an idle stop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup_before_idle_stop: bool,
    /// Stopped for being idle with wake on connect: its ports are held (again after a daemon
    /// restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sleeping: bool,
    /// The server's own resource limits (over the plan's `limits`).
    #[serde(default, skip_serializing_if = "PlanLimits::is_empty")]
    pub limits: PlanLimits,
    /// The last exits of the game, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exits: Vec<ExitRecord>,
    /// An image id the server runs instead of its plan's image: set when an update is rolled
    /// back (the last known good), cleared by the next update that succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pin: Option<String>,
    /// The last update, and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateRecord>,
    /// The backup retention chosen for this server (the daemon's default, when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_policy: Option<crate::backup::Policy>,
    /// Where this server's new backups go (`local` or `s3`; the daemon's default when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_target: Option<String>,
    /// Cluster mode: the node the server is placed on (its world lives there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodePin>,
    /// Cluster mode: actions asked for while the server's node was unreachable, oldest first,
    /// applied in order when it returns (kept across a daemon restart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingChange>,
    /// Cluster mode: rebuild the server on another node from its latest off-node backup after
    /// its node was down this many seconds (off when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_after_s: Option<u64>,
    /// Cluster mode: nodes the server failed over from. Their copy of its directory is stale:
    /// never copied from, never started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_on: Vec<String>,
    /// Cluster mode: the name of the key that placed the server (its private-node rule places
    /// it again on a failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placer: Option<String>,
}

/// An action queued while its server's node is unreachable (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingChange {
    /// The job that carries it out (state `queued` until the node returns).
    pub job_id: String,
    /// `start`, `stop`, `restart`, `update`, `destroy` or `eradicate`.
    pub action: String,
    /// When it was asked for (RFC 3339).
    pub requested: String,
    /// Who asked.
    pub requester: String,
    /// What the action was asked with, so that it is carried out the same after a daemon
    /// restart (absent when it had no options).
    #[serde(default, skip_serializing_if = "PendingOptions::is_empty")]
    pub options: PendingOptions,
}

/// The options of a queued action (each absent when not given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingOptions {
    /// start, stop: the stop timer, Unix seconds when it falls due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer_due: Option<i64>,
    /// start, stop: the timer as the client gave it (shown as the server's `time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub timer_shown: Option<Value>,
    /// restart, update: wait until nobody plays first, at most this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_empty_s: Option<u64>,
    /// restart, update: with `when_empty_s`, told to the players first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<String>,
    /// update: the mode (`full`, `image`, `server` or `reinit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// update: how long the new version must stay up, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_s: Option<u64>,
    /// update: the plan version to move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
}

impl PendingOptions {
    pub fn is_empty(&self) -> bool {
        *self == PendingOptions::default()
    }
}

/// The node a server is pinned to (cluster mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodePin {
    /// The Swarm node id.
    pub id: String,
    pub hostname: String,
    /// Where players reach the server (its host-mode ports are published there).
    pub address: String,
    /// Where the node's peon agent keeps server directories (its data dir): the server's
    /// directory there is what its game mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
}

/// One server as the store knows it.
#[derive(Debug, Clone)]
pub struct ServerRecord {
    pub uid: Uid,
    pub dir: PathBuf,
    /// `config.json` as written.
    pub config: Value,
    /// The runnable plan parsed from `config.json`.
    pub plan: Plan,
    pub state: ServerState,
}

impl ServerRecord {
    pub fn description(&self) -> Option<&str> {
        self.config
            .pointer("/metadata/description")
            .and_then(Value::as_str)
    }
}

/// Reads and parses a server's files.
pub fn read_server(uid: &Uid, dir: &Path) -> Result<ServerRecord> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read(&cfg_path).map_err(|e| StoreError::io("cannot read", &cfg_path, e))?;
    let config: Value = serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
        path: cfg_path.clone(),
        reason: e.to_string(),
    })?;
    let plan = parse_plan(uid.game(), &config).map_err(|p| StoreError::Corrupt {
        path: cfg_path.clone(),
        reason: problems_text(&p),
    })?;
    let state_path = dir.join(STATE_FILE);
    let state = match std::fs::read(&state_path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(uid = %uid, "ignoring unreadable {}: {e}", state_path.display());
            ServerState::default()
        }),
        Err(_) => ServerState::default(),
    };
    Ok(ServerRecord {
        uid: uid.clone(),
        dir: dir.to_owned(),
        config,
        plan,
        state,
    })
}

/// The index of all servers, sorted by game then name.
pub struct ServerStore {
    dir: DataDir,
    servers: RwLock<BTreeMap<Uid, Arc<ServerRecord>>>,
    /// Held while a `.peon.json` is read, changed and written: two changes at once never lose
    /// one another's.
    state_writes: std::sync::Mutex<()>,
}

impl ServerStore {
    /// Scans `servers/<game>/<name>/config.json`. Folders whose names are not valid ids, or
    /// whose config cannot be read, are reported and skipped, never changed.
    pub fn load(dir: DataDir) -> Result<ServerStore> {
        let store = ServerStore {
            dir,
            servers: RwLock::new(BTreeMap::new()),
            state_writes: std::sync::Mutex::new(()),
        };
        store.rescan()?;
        Ok(store)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    /// Re-reads the servers folder; returns the uids that were not known before.
    pub fn rescan(&self) -> Result<Vec<Uid>> {
        let root = self.dir.servers();
        let mut found = BTreeMap::new();
        let games = match std::fs::read_dir(&root) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("cannot list", &root, e)),
        };
        for g in games.flatten() {
            let gname = g.file_name().to_string_lossy().into_owned();
            if gname.starts_with('.') || !g.path().is_dir() {
                continue;
            }
            let Ok(servers) = std::fs::read_dir(g.path()) else {
                continue;
            };
            for s in servers.flatten() {
                let sname = s.file_name().to_string_lossy().into_owned();
                if !s.path().join(CONFIG_FILE).is_file() {
                    continue;
                }
                let Ok(uid) = Uid::new(&gname, &sname) else {
                    tracing::warn!("skipping {}: not a valid <game>/<name>", s.path().display());
                    continue;
                };
                match read_server(&uid, &s.path()) {
                    Ok(r) => {
                        found.insert(uid, Arc::new(r));
                    }
                    Err(e) => tracing::warn!(uid = %uid, "skipping server: {e}"),
                }
            }
        }
        let mut map = self.servers.write().unwrap_or_else(|p| p.into_inner());
        let new = found
            .keys()
            .filter(|k| !map.contains_key(*k))
            .cloned()
            .collect();
        for (k, v) in found {
            map.entry(k).or_insert(v);
        }
        Ok(new)
    }

    pub fn get(&self, uid: &Uid) -> Option<Arc<ServerRecord>> {
        self.read().get(uid).cloned()
    }

    pub fn contains(&self, uid: &Uid) -> bool {
        self.read().contains_key(uid)
    }

    pub fn list(&self) -> Vec<Arc<ServerRecord>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uid, Arc<ServerRecord>>> {
        self.servers.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, record: ServerRecord) -> Arc<ServerRecord> {
        let r = Arc::new(record);
        self.servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.uid.clone(), r.clone());
        r
    }

    pub fn forget(&self, uid: &Uid) {
        self.servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    /// Rewrites `config.json` atomically and updates the index.
    pub fn write_config(&self, uid: &Uid, config: Value) -> Result<Arc<ServerRecord>> {
        let _w = self.state_writes();
        let cur = self.get(uid).ok_or_else(|| StoreError::Corrupt {
            path: self.dir.server_dir(uid),
            reason: "server is not known".into(),
        })?;
        let plan = parse_plan(uid.game(), &config).map_err(|p| StoreError::Corrupt {
            path: cur.dir.join(CONFIG_FILE),
            reason: problems_text(&p),
        })?;
        let path = cur.dir.join(CONFIG_FILE);
        atomic::write_json_atomic(&path, &config)
            .map_err(|e| StoreError::io("cannot write", &path, e))?;
        Ok(self.insert(ServerRecord {
            config,
            plan,
            ..(*cur).clone()
        }))
    }

    /// Changes a server's `.peon.json` (read, `change`, written atomically, the index updated)
    /// as one step: changes made at once by different tasks are all kept. `None` for a server
    /// the store does not know. Blocks.
    pub fn change_state(
        &self,
        uid: &Uid,
        change: impl FnOnce(&mut ServerState),
    ) -> Result<Option<Arc<ServerRecord>>> {
        let _w = self.state_writes();
        let Some(rec) = self.get(uid) else {
            return Ok(None);
        };
        let mut state = rec.state.clone();
        change(&mut state);
        self.write_state(uid, state).map(Some)
    }

    /// The lock of every write that rereads a record and puts it back in the index.
    fn state_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.state_writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites `.peon.json` atomically and updates the index.
    fn write_state(&self, uid: &Uid, state: ServerState) -> Result<Arc<ServerRecord>> {
        let cur = self.get(uid).ok_or_else(|| StoreError::Corrupt {
            path: self.dir.server_dir(uid),
            reason: "server is not known".into(),
        })?;
        if cur.state == state {
            return Ok(cur);
        }
        let path = cur.dir.join(STATE_FILE);
        atomic::write_json_atomic(&path, &state)
            .map_err(|e| StoreError::io("cannot write", &path, e))?;
        Ok(self.insert(ServerRecord {
            state,
            ..(*cur).clone()
        }))
    }
}
