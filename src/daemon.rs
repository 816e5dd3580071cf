//! `peon serve`: wires the layers together and serves the API until shutdown. The binary and
//! the integration tests both start the daemon through [`launch`].

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::{KeySource, Settings};
use crate::docker::Engine;
use crate::plans::{PlanSource, PlanStore, bundled};
use crate::schedule::{Config as ScheduleConfig, Scheduler};
use crate::service::ServerService;

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    #[error("cannot prepare the plans directory {path}: {reason}")]
    Plans { path: String, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cluster mode: {0}")]
    Cluster(String),
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Builds the service from settings: data dir, plans (seeded from the bundled ones when
/// empty), scheduler, Docker engine handle.
pub fn build_service(settings: Settings) -> Result<Arc<ServerService>, DaemonError> {
    let plans_err = |reason: String| DaemonError::Plans {
        path: settings.plans_dir.display().to_string(),
        reason,
    };
    let source_url = settings
        .plans_url
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_PLANS_URL.to_owned());
    let source = PlanSource::parse(&source_url).map_err(&plans_err)?;
    let plans = PlanStore::with_source(&settings.plans_dir, Some(source));
    plans.recover().map_err(|e| plans_err(e.to_string()))?;
    let seeded =
        bundled::seed_if_empty(&settings.plans_dir).map_err(|e| plans_err(e.to_string()))?;
    if seeded {
        tracing::info!(dir = %settings.plans_dir.display(), "plans directory seeded with the bundled plans");
    }
    let docker = Arc::new(Engine::new(&settings.docker_host));
    let cluster = settings.cluster;
    // Cluster mode: servers are Swarm services. Container-level work goes to each node's
    // agent (a node id resolves to its address, the address to the agent client there).
    let (engine, agents): (Arc<dyn crate::runtime::Runtime>, _) = if cluster {
        // The agents on the nodes authenticate with this secret (given to them by file or
        // environment); it is made once and never logged.
        let secret = crate::agent::auth::Secret::load_or_create(&settings.data_dir)
            .map_err(|e| DaemonError::Cluster(e.to_string()))?;
        let agents = crate::agent::delegate::AgentDelegate::new(
            crate::agent::client::Agents::new(secret, settings.agent_port),
            docker.clone(),
        );
        let ce = crate::docker::ClusterEngine::new(docker.clone());
        ce.set_delegate(Arc::new(crate::agent::delegate::Delegate(agents.clone())));
        tracing::info!(
            manager = %settings.docker_host,
            agent_port = settings.agent_port,
            "cluster mode: servers are Swarm services on the manager's nodes"
        );
        (Arc::new(ce), Some(agents))
    } else {
        (docker.clone(), None)
    };
    let data = crate::store::DataDir::new(&settings.data_dir);
    let scheduler = Scheduler::open(ScheduleConfig {
        file: data.schedules_file(),
        peon_file: data.servers().join("schedule.json"),
        timezone: settings.timezone,
        start_grace: settings.start_grace,
    })
    .map_err(crate::service::ServiceError::from)?;
    let service = ServerService::open(Arc::new(settings), engine, plans, scheduler)?;
    if let Some(agents) = agents {
        service.set_cluster(docker);
        service.set_agents(agents);
    }
    Ok(service)
}

/// How long the daemon waits for the first sync with the engine before it serves anyway.
const BOOT_SYNC: std::time::Duration = std::time::Duration::from_secs(5);

/// How often cluster mode rereads the nodes' addresses (for their agents).
const NODE_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves the API on `listener` until `shutdown` completes.
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    match &settings.key_source {
        KeySource::Generated(p) => tracing::warn!(
            "no API key configured: generated one and stored it in {} (mode 0600); clients send it as X-Api-Key",
            p.display()
        ),
        KeySource::File(p) => tracing::info!("using the API key stored in {}", p.display()),
        KeySource::Configured => tracing::info!("using the configured API key"),
    }
    let service = build_service(settings)?;
    let scheduler = service.scheduler().clone();
    scheduler
        .start()
        .await
        .map_err(crate::service::ServiceError::from)?;
    // The live model: one subscription to the engine's events, resynced at boot and after
    // every reconnect; the first resync brings back wanted servers and fires missed schedules.
    let supervisor = tokio::spawn(service.clone().supervise());
    // Disk use of every server directory, measured in the background.
    let disk = tokio::spawn(service.clone().watch_disk());
    // Who is playing on every game with a query (and the idle stop).
    let players = tokio::spawn(service.clone().watch_players());
    // Cluster mode: the node id -> agent address cache, kept fresh.
    let node_cache = service.agents().map(|a| a.spawn_refresher(NODE_REFRESH));
    // Lists answer from the live model: serve once it is filled (or the engine is slow to
    // answer; it fills as soon as the engine does).
    if !service.wait_synced(BOOT_SYNC).await {
        tracing::warn!(
            "the engine did not answer within {}s; serving, the live model fills when it does",
            BOOT_SYNC.as_secs()
        );
    }
    let metrics_listen = service.settings().metrics_listen;
    let hooks_of = service.clone();
    let state = AppState { service };
    // The metrics address serves `/metrics` without the key, until the API stops.
    let metrics_server = match metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(DaemonError::Serve)?;
            tracing::info!(%addr, "metrics are served at /metrics");
            let app = api::metrics_router(state.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!("the metrics listener failed: {e}");
                }
            }))
        }
        None => None,
    };
    let app = api::router(state);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "peon is listening");
    }
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(DaemonError::Serve);
    supervisor.abort();
    // Webhook deliveries stop here; the queue on disk is sent by the next start.
    hooks_of.stop_hooks();
    // Cluster mode: changes waiting for a node stay queued on disk for the next start.
    hooks_of.stop_pending();
    if let Some(m) = metrics_server {
        m.abort();
    }
    disk.abort();
    players.abort();
    if let Some(t) = node_cache {
        t.abort();
    }
    scheduler.shutdown().await;
    served
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
