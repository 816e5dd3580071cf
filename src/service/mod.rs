//! `ServerService`: the server lifecycle. The API layer calls it; it drives Docker through
//! [`crate::docker::Engine`], keeps server files through [`crate::store`], reads plans through
//! [`crate::plans`] and sets timers through [`crate::schedule`].
//!
//! Actions on one server are serialized by a per-server lock; different servers run in parallel.

mod backup;
mod capacity;
mod container;
mod create;
mod lifecycle;
mod ports;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

use crate::config::Settings;
use crate::docker::{DockerError, Engine};
use crate::names::{InvalidName, Uid};
use crate::plans::{PlanError, PlanStore};
use crate::schedule::{ScheduleError, Scheduler};
use crate::store::{DataDir, ServerStore, StoreError};

pub use backup::Backup;
pub use capacity::{Capacity, ImageUsage, ServerUsage};
pub use create::CreateRequest;
pub use lifecycle::UpdateMode;
pub use view::{ServerObject, StatsView};

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
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The game server did not reach the wanted state.
    #[error("{0}")]
    Failed(String),
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
    engine: Arc<Engine>,
    store: ServerStore,
    plans: PlanStore,
    scheduler: Arc<Scheduler>,
    locks: Mutex<HashMap<Uid, Arc<tokio::sync::Mutex<()>>>>,
    me: Weak<ServerService>,
}

impl ServerService {
    /// Opens the data dir and indexes its servers. Does not touch Docker.
    pub fn open(
        settings: Arc<Settings>,
        engine: Arc<Engine>,
        plans: PlanStore,
        scheduler: Arc<Scheduler>,
    ) -> Result<Arc<ServerService>> {
        let dir = DataDir::new(&settings.data_dir);
        dir.prepare()?;
        let store = ServerStore::load(dir)?;
        let svc = Arc::new_cyclic(|me| ServerService {
            settings,
            engine,
            store,
            plans,
            scheduler: scheduler.clone(),
            locks: Mutex::new(HashMap::new()),
            me: me.clone(),
        });
        let runner: Weak<dyn crate::schedule::Runner> = svc.me.clone();
        scheduler.attach(runner);
        Ok(svc)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
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

    /// Takes the server's action lock; actions on one server run one at a time.
    async fn lock(&self, uid: &Uid) -> OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(uid.clone())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    fn record(&self, uid: &Uid) -> Result<Arc<crate::store::ServerRecord>> {
        self.store
            .get(uid)
            .ok_or_else(|| ServiceError::NotFound(format!("There is no server [{uid}].")))
    }
}

impl crate::schedule::Runner for ServerService {
    fn run_scheduled<'a>(
        &'a self,
        uid: &'a Uid,
        action: crate::schedule::Action,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<String, String>> + Send + 'a>,
    > {
        Box::pin(async move {
            use crate::schedule::Action;
            let r = match action {
                Action::Start => self.start_inner(uid, false).await,
                Action::Stop => self.stop_inner(uid).await,
                Action::Restart => self.restart(uid).await,
            };
            r.map(|o| o.container_state).map_err(|e| e.to_string())
        })
    }
}
