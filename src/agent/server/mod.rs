//! `peon agent`: the node's agent server. Routes (all under [`PREFIX`](super::PREFIX), all
//! signed, see [`super::auth`]):
//!
//! | route | what |
//! |---|---|
//! | `GET ping` | the agent's version, engine and storage id (the same for agents sharing a data dir) |
//! | `GET server/{uid}/container` | the server's container (inspect), 404 when none |
//! | `GET server/{uid}/logs?tail=N` | the last lines of its output |
//! | `GET server/{uid}/stats` | one stats sample (`null` when not running) |
//! | `POST server/{uid}/kill?signal=SIG` | a signal to its main process |
//! | `GET server/{uid}/attach` | WebSocket: binary frames of stdout and stderr out, of stdin in |
//! | `GET server/{uid}/dir` | its directory, streamed ([`super::framing`]) |
//! | `PUT server/{uid}/dir` | a directory streamed in, verified, swapped in whole |
//! | `DELETE server/{uid}/dir` | its directory removed (refused while its container runs) |
//!
//! A server's container on this node is the one labelled `peon.uid=<uid>` (of the configured
//! instance, when one is given): a Swarm task's container is named after its task, not the
//! server. Paths come only from checked uids ([`crate::names::Uid`]) and the data dir.

mod container;
mod dir;
mod error;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub use error::AgentError;

use super::auth::{self, NONCE_HEADER, SECRET_ENV, SIGNATURE_HEADER, Secret, Signed, TIME_HEADER};
use crate::names::Uid;
use crate::runtime::Runtime;
use crate::store::DataDir;

/// `peon agent`'s options (flags, then environment).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Address to listen on (the node's address in the cluster's network).
    #[arg(long, env = "PEON_AGENT_LISTEN", default_value = "0.0.0.0:8470")]
    pub listen: SocketAddr,
    /// The node's local Docker engine.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,
    /// The node's data dir (servers in `servers/<game>/<name>`, as on a single host). Game
    /// containers bind-mount from it, so in a container it must be mounted at its host path.
    #[arg(long, env = "PEON_DATA_DIR", default_value = "/home/peon")]
    pub data_dir: PathBuf,
    /// File holding the cluster secret (`<manager data>/cluster.secret`, or a Docker secret
    /// such as `/run/secrets/peon_cluster_secret`). Without it, `PEON_CLUSTER_SECRET` holds the
    /// secret itself.
    #[arg(long, env = "PEON_CLUSTER_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Only containers of this peon instance (label `peon.instance`) are this agent's.
    #[arg(long, env = "PEON_INSTANCE")]
    pub instance: Option<String>,
}

impl AgentArgs {
    /// The secret: from the file, else from `PEON_CLUSTER_SECRET`.
    pub fn secret(&self) -> Result<Secret, String> {
        match &self.secret_file {
            Some(p) => Secret::from_file(p).map_err(|e| e.to_string()),
            None => match std::env::var(SECRET_ENV) {
                Ok(v) => Secret::new(&v).map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "no cluster secret: give --secret-file (PEON_CLUSTER_SECRET_FILE) or set {SECRET_ENV}"
                )),
            },
        }
    }
}

/// What the agent runs with.
pub struct AgentConfig {
    pub engine: Arc<dyn Runtime>,
    pub data: DataDir,
    pub secret: Secret,
    pub instance: Option<String>,
}

/// The agent's shared state.
pub(crate) struct Agent {
    engine: Arc<dyn Runtime>,
    data: DataDir,
    secret: Secret,
    /// Nonces of the requests accepted within the clock window.
    replays: auth::Replays,
    instance: Option<String>,
    /// Servers with a directory transfer (in or out of a delete) under way.
    busy: Mutex<HashSet<Uid>>,
}

type Shared = Arc<Agent>;

/// The agent's routes, behind the signature check.
pub fn router(config: AgentConfig) -> Router {
    let agent = Arc::new(Agent {
        engine: config.engine,
        data: config.data,
        secret: config.secret,
        replays: auth::Replays::default(),
        instance: config.instance,
        busy: Mutex::new(HashSet::new()),
    });
    let p = super::PREFIX;
    Router::new()
        .route(&format!("{p}/ping"), get(ping))
        .route(
            &format!("{p}/server/{{uid}}/container"),
            get(container::inspect),
        )
        .route(&format!("{p}/server/{{uid}}/logs"), get(container::logs))
        .route(&format!("{p}/server/{{uid}}/stats"), get(container::stats))
        .route(
            &format!("{p}/server/{{uid}}/kill"),
            axum::routing::post(container::kill),
        )
        .route(
            &format!("{p}/server/{{uid}}/attach"),
            get(container::attach),
        )
        .route(&format!("{p}/server/{{uid}}/facts"), get(dir::facts))
        .route(
            &format!("{p}/server/{{uid}}/dir"),
            get(dir::pull).put(dir::push).delete(dir::delete),
        )
        .fallback(|| async { AgentError::NotFound("no such agent route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            agent.clone(),
            check_signature,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(agent)
}

/// Runs the agent on `listener` until `shutdown` completes.
pub async fn launch(
    config: AgentConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    config
        .data
        .prepare()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, engine = %config.engine.host(), data = %config.data.root().display(), "peon agent listening");
    axum::serve(
        listener,
        router(config).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Refuses every request not signed with the cluster secret. The refusal says why (a missing
/// header, a clock too far off, a wrong signature), never what the secret is.
async fn check_signature(State(agent): State<Shared>, req: Request, next: Next) -> Response {
    let verdict = verify(&agent, &req);
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            tracing::warn!(%peer, path = %req.uri().path(), "agent: request refused: {e}");
            AgentError::Unauthorized(format!("agent: request refused: {e}")).into_response()
        }
    }
}

fn verify(agent: &Agent, req: &Request) -> Result<(), auth::AuthError> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |p| p.as_str());
    let now = auth::now();
    let signed = Signed {
        time: header(TIME_HEADER),
        nonce: header(NONCE_HEADER),
        signature: header(SIGNATURE_HEADER),
    };
    let time = agent
        .secret
        .verify(req.method().as_str(), pq, signed, now)?;
    agent
        .replays
        .check(signed.nonce.unwrap_or_default(), time, now)
}

async fn ping(State(agent): State<Shared>) -> Result<axum::Json<serde_json::Value>, AgentError> {
    let info = agent.engine.info().await?;
    let data = agent.data.clone();
    let storage = tokio::task::spawn_blocking(move || data.storage_id())
        .await
        .map_err(|e| AgentError::Internal(e.to_string()))?
        .map_err(|e| AgentError::Internal(format!("the storage id: {e}")))?;
    Ok(axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "engine": info.version,
        "storage": storage,
        // Where this node keeps server directories: the bind sources of its games (the agent
        // sees its data dir at the host's path).
        "data_dir": agent.data.root(),
    })))
}

impl Agent {
    /// The checked uid of a path segment.
    fn uid(raw: &str) -> Result<Uid, AgentError> {
        Uid::parse(raw).map_err(|e| AgentError::BadRequest(e.to_string()))
    }

    /// The name of the server's container on this node: the running one labelled with its uid
    /// (of this agent's instance), else the one with the server's usual name, else any.
    async fn container_of(&self, uid: &Uid) -> Result<String, AgentError> {
        let mut found: Vec<_> = self
            .engine
            .list_labelled(crate::runtime::labels::UID, &uid.to_string())
            .await?
            .into_iter()
            .filter(|c| {
                self.instance
                    .as_deref()
                    .is_none_or(|i| c.label(crate::runtime::labels::INSTANCE) == Some(i))
            })
            .collect();
        let usual = uid.container_name();
        found.sort_by_key(|c| {
            (
                c.state != "running",
                c.name.trim_start_matches('/') != usual,
            )
        });
        found
            .into_iter()
            .next()
            .map(|c| c.name.trim_start_matches('/').to_owned())
            .ok_or_else(|| {
                AgentError::NotFound(format!("server {uid} has no container on this node"))
            })
    }

    /// Marks a server busy with a directory operation until the guard drops; a second one is
    /// refused.
    fn claim(self: &Arc<Self>, uid: &Uid) -> Result<Claim, AgentError> {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !b.insert(uid.clone()) {
            return Err(AgentError::Busy(format!(
                "server {uid}'s directory is being transferred already"
            )));
        }
        Ok(Claim {
            agent: self.clone(),
            uid: uid.clone(),
        })
    }
}

/// A server's directory claimed by one transfer.
struct Claim {
    agent: Arc<Agent>,
    uid: Uid,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.agent
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.uid);
    }
}
