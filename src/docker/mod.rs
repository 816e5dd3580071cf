//! Every call to the Docker engine lives in this module, one file per resource. bollard's types
//! stop here: the rest of peon sees the small types defined below.
//!
//! The engine is reached lazily and the API version is negotiated at connect time (the engine on
//! a host may speak an older API than bollard's default). When the engine is down, calls fail
//! with [`DockerError::Unavailable`] and the next call tries again, so peon recovers by itself.

mod containers;
mod images;
mod networks;
mod stats;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use serde::Serialize;
use tokio::sync::RwLock;

use crate::model::plan::Protocol;

pub use images::busybox_game_context;
pub use stats::Stats;

/// Label keys peon puts on everything it creates.
pub mod labels {
    /// Marks a container or network as peon's; the value is the daemon instance name.
    pub const INSTANCE: &str = "peon.instance";
    /// The server uid `<game>.<name>`.
    pub const UID: &str = "peon.uid";
    pub const GAME: &str = "peon.game";
    pub const SERVER: &str = "peon.server";
    /// `CONTAINER_TYPE` and `VERSION` of the image, read once at container creation.
    pub const CONTAINER_TYPE: &str = "peon.container_type";
    pub const BUILD_VERSION: &str = "peon.build_version";
}

/// Errors of the Docker layer.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the Docker engine at {host} is unreachable: {reason}")]
    Unavailable { host: String, reason: String },
    #[error("{0} was not found on the Docker engine")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PortInUse(String),
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },
    #[error("the Docker engine refused the request: {0}")]
    Engine(String),
}

pub type Result<T> = std::result::Result<T, DockerError>;

/// A container to create.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub hostname: String,
    pub image: String,
    pub env: Vec<String>,
    /// `host_path:container_path` bind mounts.
    pub binds: Vec<String>,
    pub ports: Vec<(u16, Protocol)>,
    /// Host address the ports are published on (`0.0.0.0` for the world, `127.0.0.1` for tests).
    pub publish_ip: String,
    pub labels: HashMap<String, String>,
    pub network: String,
    pub user: Option<String>,
    pub stop_timeout: Duration,
}

/// A port a container publishes on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// A container as seen in the engine's list.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    /// created, running, paused, restarting, exited, dead, removing.
    pub state: String,
    pub status: String,
    pub labels: HashMap<String, String>,
    pub ports: Vec<PublishedPort>,
}

impl ContainerInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Details of one container from inspect.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// How often the engine restarted the container (restart policy).
    pub restart_count: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub labels: HashMap<String, String>,
}

/// What the engine says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub os: String,
}

/// A lazily connected, self-reconnecting handle on the Docker engine.
pub struct Engine {
    host: String,
    client: RwLock<Option<Docker>>,
    /// Serializes taking subnets from peon's own network pool.
    net_alloc: tokio::sync::Mutex<()>,
}

const CLIENT_TIMEOUT_S: u64 = 120;

impl Engine {
    /// `host` is `unix:///path`, a plain socket path, or `tcp://host:port`.
    pub fn new(host: &str) -> Self {
        Engine {
            host: host.to_owned(),
            client: RwLock::new(None),
            net_alloc: tokio::sync::Mutex::new(()),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The connected client, connecting and negotiating the API version if needed.
    async fn client(&self) -> Result<Docker> {
        if let Some(c) = self.client.read().await.as_ref() {
            return Ok(c.clone());
        }
        let mut slot = self.client.write().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect().await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn connect(&self) -> Result<Docker> {
        let unavailable = |e: bollard::errors::Error| DockerError::Unavailable {
            host: self.host.clone(),
            reason: e.to_string(),
        };
        let h = self.host.as_str();
        let docker = if let Some(addr) = h
            .strip_prefix("tcp://")
            .or_else(|| h.strip_prefix("http://"))
        {
            Docker::connect_with_http(addr, CLIENT_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        } else {
            let path = h.strip_prefix("unix://").unwrap_or(h);
            Docker::connect_with_unix(path, CLIENT_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        }
        .map_err(unavailable)?;
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        tracing::info!(host = %self.host, api = %docker.client_version(), "connected to the Docker engine");
        Ok(docker)
    }

    /// Maps a bollard error, forgetting the client when the engine is unreachable so that the
    /// next call reconnects and negotiates again (the engine may have been upgraded).
    async fn fail(&self, what: &str, e: bollard::errors::Error) -> DockerError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => DockerError::NotFound(format!("{what}: {message}")),
                409 => DockerError::Conflict(format!("{what}: {message}")),
                _ if is_port_clash(&message) => DockerError::PortInUse(message),
                _ => DockerError::Engine(format!("{what}: {message}")),
            },
            E::SocketNotFoundError(_)
            | E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::HttpClientError { .. }
            | E::RequestTimeoutError => {
                *self.client.write().await = None;
                DockerError::Unavailable {
                    host: self.host.clone(),
                    reason: e.to_string(),
                }
            }
            other => DockerError::Engine(format!("{what}: {other}")),
        }
    }

    /// The engine's version, proving it answers.
    pub async fn info(&self) -> Result<EngineInfo> {
        let c = self.client().await?;
        let v = match c.version().await {
            Ok(v) => v,
            Err(e) => return Err(self.fail("version", e).await),
        };
        Ok(EngineInfo {
            version: v.version.unwrap_or_default(),
            api_version: c.client_version().to_string(),
            os: v.os.unwrap_or_default(),
        })
    }
}

fn is_port_clash(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("port is already allocated") || m.contains("address already in use")
}
