//! `ServerService`: the server lifecycle. The API layer calls it; it drives the container engine
//! through the runtime seam ([`crate::runtime::Runtime`]), keeps server files through
//! [`crate::store`], reads plans through [`crate::plans`], sets timers through
//! [`crate::schedule`], and keeps the live model of every server in a [`Registry`] of handles
//! fed by the engine's event stream (`supervise`).
//!
//! Actions on one server are serialized by its handle's power lock (a kill goes through without
//! it); different servers run in parallel.

mod access;
mod backup;
mod backups;
mod capacity;
mod console;
mod container;
mod create;
mod disk;
mod failover;
mod gameconfig;
mod jobs;
mod lifecycle;
mod limits;
mod maintenance;
mod metrics;
mod moves;
mod nodedir;
mod nodeloss;
mod nodes;
mod notify;
mod pending;
mod placement;
mod plans;
mod planver;
mod players;
mod ports;
mod readiness;
pub mod relocate;
mod rollout;
mod schedules;
mod supervise;
mod system;
mod update;
mod view;
mod wake;

use std::sync::{Arc, Weak};

use tokio::sync::OwnedMutexGuard;

use crate::access::{Access, AccessConfig, AccessError, LockoutConfig};
use crate::config::Settings;
use crate::jobs::{JobError, Jobs};
use crate::live::console::ConsoleConfig;
use crate::live::{Registry, ServerHandle};
use crate::names::{InvalidName, Uid};
use crate::plans::{PlanError, PlanStore};
use crate::runtime::{Runtime, RuntimeError};
use crate::schedule::{ScheduleError, Scheduler};
use crate::store::{DataDir, ServerStore, StoreError};

pub use crate::backup::{BackupInfo, Policy as BackupPolicy, Reason as BackupReason};
pub use crate::hooks::{DeadLetter, HookInfo, HookSpec};
pub use crate::jobs::{Job, JobFilter, JobKind, JobState, JobView, Step, noting_job};
pub use crate::store::PendingOptions;
pub use backup::{Backup, LINK_TTL_MAX, SaveLink};
pub use capacity::{Capacity, ImageUsage, ServerUsage};
pub use console::{ConsoleStream, EventStream};
pub use create::CreateRequest;
pub use lifecycle::{ServerOptions, UpdateMode};
pub use nodes::{NodeReserved, NodeUpdate, NodeView};
pub use notify::message_of;
pub use pending::{can_wait, restart_options, timer_options, update_options};
pub use planver::PlanTarget;
pub use players::{PLAYERS_INTERVAL, QUERY_TIMEOUT};
pub use rollout::{RolloutRequest, RolloutTarget};
pub use system::EngineStatus;
pub use update::UpdateOptions;
pub use view::{LimitsView, ServerObject, StatsView};

/// Errors of the service layer. The API maps each to one HTTP status, once.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Name(#[from] InvalidName),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A host port the server needs is held by another container.
    #[error("{0}")]
    PortsInUse(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Docker(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Rollout(#[from] crate::rollout::RolloutError),
    /// The game server did not reach the wanted state.
    #[error("{0}")]
    Failed(String),
    /// An update failed and was rolled back (or the rollback failed too).
    #[error("{0}")]
    RolledBack(String),
    /// The server's node is unreachable and the action cannot wait for it (cluster mode).
    #[error("{0}")]
    Unreachable(String),
    /// The server's directory is over its disk quota.
    #[error("{0}")]
    OverQuota(String),
    /// The action needs a running game (a console command), or the game was stopped meanwhile.
    #[error("{0}")]
    NotRunning(String),
    /// Not enough free disk space for a backup or a restore.
    #[error("{0}")]
    NoSpace(String),
}

pub type Result<T> = std::result::Result<T, ServiceError>;

impl From<std::io::Error> for ServiceError {
    fn from(e: std::io::Error) -> Self {
        ServiceError::Store(StoreError::Io {
            what: "file operation failed",
            path: Default::default(),
            source: e,
        })
    }
}

/// The server service.
pub struct ServerService {
    settings: Arc<Settings>,
    runtime: Arc<dyn Runtime>,
    store: ServerStore,
    plans: PlanStore,
    scheduler: Arc<Scheduler>,
    registry: Registry,
    /// API keys, the lockout of wrong keys, the audit log.
    access: Arc<Access>,
    /// The job history.
    jobs: Arc<Jobs>,
    /// Rollouts, running and finished.
    rollouts: crate::rollout::Rollouts,
    /// Prometheus metrics.
    metrics: Arc<crate::metrics::Metrics>,
    /// Webhooks.
    hooks: Arc<crate::hooks::Hooks>,
    /// True once the live model was first filled from the engine.
    synced: tokio::sync::watch::Sender<bool>,
    /// Held while a create picks its port group until the server is in the index, so two
    /// concurrent creates never pick the same free group.
    allocation: tokio::sync::Mutex<()>,
    /// Servers asleep (stopped for being idle) whose ports peon holds to wake them.
    sleepers: std::sync::Mutex<std::collections::HashMap<Uid, wake::Sleeper>>,
    /// Cluster mode: the Swarm manager (set once by the daemon; unset in single-host mode).
    cluster: std::sync::OnceLock<Arc<dyn crate::runtime::cluster::Swarm>>,
    /// Cluster mode: every node's agent (set once by the daemon).
    agents: std::sync::OnceLock<Arc<crate::agent::delegate::AgentDelegate>>,
    /// Cluster mode: the storage id of the data dir (`service/nodedir.rs`).
    own_storage: std::sync::OnceLock<String>,
    /// Cluster mode: which nodes are down (the node watcher).
    node_health: nodeloss::NodeHealth,
    /// Cluster mode: actions queued while a server's node is unreachable.
    pending: pending::Pending,
    /// Cluster mode: servers failing over now.
    failovers: failover::Failovers,
    me: Weak<ServerService>,
}

impl ServerService {
    /// Opens the data dir and indexes its servers. Does not touch Docker.
    pub fn open(
        settings: Arc<Settings>,
        runtime: Arc<dyn Runtime>,
        plans: PlanStore,
        scheduler: Arc<Scheduler>,
    ) -> Result<Arc<ServerService>> {
        let dir = DataDir::new(&settings.data_dir);
        dir.prepare()?;
        // Half-written archives of backups a crash cut short.
        match crate::backup::Catalog::new(&settings.backup_dir).clear_debris() {
            Ok(gone) => {
                for p in gone {
                    tracing::info!("removed an unfinished backup: {}", p.display());
                }
            }
            Err(e) => tracing::warn!("cannot clear unfinished backups: {e}"),
        }
        let store = ServerStore::load(dir)?;
        let access = Arc::new(Access::open(
            &settings.data_dir,
            &settings.api_key,
            AccessConfig {
                lockout: LockoutConfig {
                    slow_after: settings.auth_slow_after,
                    lock_after: settings.auth_lock_after,
                    lock_for: settings.auth_lock,
                    ..LockoutConfig::default()
                },
                ..AccessConfig::default()
            },
        )?);
        // Pending changes (cluster mode) keep their queued jobs over a restart.
        let queued = store
            .list()
            .iter()
            .flat_map(|r| r.state.pending.iter().map(|p| p.job_id.clone()))
            .collect();
        let jobs = Arc::new(Jobs::load_keeping(&store.data_dir().jobs_file(), &queued)?);
        let rollouts = crate::rollout::Rollouts::load(store.data_dir().rollouts_file());
        let hooks = Arc::new(notify::open_hooks(&settings)?);
        let svc = Arc::new_cyclic(|me| ServerService {
            settings,
            runtime,
            store,
            plans,
            scheduler: scheduler.clone(),
            registry: Registry::new(ConsoleConfig::default()),
            access,
            jobs: jobs.clone(),
            rollouts,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            hooks,
            synced: tokio::sync::watch::channel(false).0,
            allocation: tokio::sync::Mutex::new(()),
            sleepers: Default::default(),
            cluster: std::sync::OnceLock::new(),
            agents: std::sync::OnceLock::new(),
            own_storage: std::sync::OnceLock::new(),
            node_health: Default::default(),
            pending: Default::default(),
            failovers: Default::default(),
            me: me.clone(),
        });
        let me = svc.me.clone();
        jobs.on_change(move |job| {
            if let Some(svc) = me.upgrade() {
                svc.registry
                    .publish(&job.uid, crate::live::EventKind::Job { job: job.view() });
            }
        });
        svc.install_metrics();
        let runner: Weak<dyn crate::schedule::Runner> = svc.me.clone();
        scheduler.attach(runner);
        Ok(svc)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn runtime(&self) -> &dyn Runtime {
        self.runtime.as_ref()
    }

    pub fn plans(&self) -> &PlanStore {
        &self.plans
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    pub fn store(&self) -> &ServerStore {
        &self.store
    }

    /// Waits (at most `within`) until the live model was first filled from the engine; true
    /// when it was.
    pub async fn wait_synced(&self, within: std::time::Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(within, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Takes the server's power lock; actions on one server run one at a time.
    async fn lock(&self, uid: &Uid) -> OwnedMutexGuard<()> {
        self.handle_of(uid).lock_power().await
    }

    /// The handle of `uid` (made on first use; a server being created has one too).
    fn handle_of(&self, uid: &Uid) -> Arc<ServerHandle> {
        self.registry.ensure(uid, || {
            self.store
                .get(uid)
                .map(|r| r.state.exits.clone())
                .unwrap_or_default()
        })
    }

    /// The server's record, or `NotFound` naming it.
    pub fn record(&self, uid: &Uid) -> Result<Arc<crate::store::ServerRecord>> {
        self.store
            .get(uid)
            .ok_or_else(|| ServiceError::NotFound(format!("There is no server [{uid}].")))
    }
}

impl crate::schedule::Runner for ServerService {
    /// Carries out a scheduled action. An action whose server already was in the wanted state
    /// (a start of a running server, a stop of a stopped one) is reported as a no-op.
    fn run_scheduled<'a>(
        &'a self,
        uid: &'a Uid,
        action: crate::schedule::Action,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<crate::schedule::Ran, String>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(self.acting("schedule", async move {
            use crate::schedule::{Action, Ran};
            if action == Action::Backup {
                let b = self
                    .backup(uid, crate::backup::Reason::Scheduled)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(Ran::Done(format!("backup {}", b.id)));
            }
            if action == Action::Restart {
                let o = self.restart(uid).await.map_err(|e| e.to_string())?;
                return Ok(Ran::Done(o.container_state));
            }
            self.record(uid).map_err(|e| e.to_string())?;
            let kind = match action {
                Action::Start => crate::jobs::JobKind::Start,
                _ => crate::jobs::JobKind::Stop,
            };
            let work = async {
                // The state is judged under the server's lock, so an action still under way
                // (a start that takes a while) is not mistaken for work left to do.
                let _g = self.lock(uid).await;
                self.record(uid)?;
                let was_running = self
                    .runtime
                    .inspect(&uid.container_name())
                    .await?
                    .is_some_and(|c| c.running);
                // The action runs even when it changes nothing: it also records what the host
                // wants (a stop of a crashed server must not be undone by the next reconcile).
                let (r, noop) = match action {
                    Action::Start => (self.start_locked(uid, None).await, was_running),
                    _ => (self.stop_locked(uid).await, !was_running),
                };
                let state = r?.container_state;
                Ok(if noop {
                    Ran::Noop(state)
                } else {
                    Ran::Done(state)
                })
            };
            self.action(uid, kind, work)
                .await
                .map_err(|e| e.to_string())
        }))
    }

    /// A scheduled restart that waits for an empty server first.
    fn run_scheduled_when_empty<'a>(
        &'a self,
        uid: &'a Uid,
        action: crate::schedule::Action,
        when_empty: crate::schedule::WhenEmpty,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<crate::schedule::Ran, String>>
                + Send
                + 'a,
        >,
    > {
        if action != crate::schedule::Action::Restart {
            return self.run_scheduled(uid, action);
        }
        Box::pin(self.acting("schedule", async move {
            let o = self
                .restart_when_empty(uid, &when_empty)
                .await
                .map_err(|e| e.to_string())?;
            Ok(crate::schedule::Ran::Done(o.container_state))
        }))
    }
}
