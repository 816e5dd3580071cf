//! Every call to the Docker engine lives in this module, one file per resource. It implements
//! the runtime seam ([`crate::runtime::Runtime`]); bollard's types stop here.
//!
//! The engine is reached lazily and the API version is negotiated at connect time (the engine on
//! a host may speak an older API than bollard's default). When the engine is down, calls fail
//! with [`RuntimeError::Unavailable`] and the next call tries again, so peon recovers by itself.

mod attach;
mod cluster;
mod containers;
mod events;
mod images;
mod networks;
mod seam;
mod services;
mod stats;
mod swarm;

use bollard::Docker;
use tokio::sync::RwLock;

pub use crate::runtime::{
    ContainerDetails, ContainerInfo, ContainerSpec, EngineInfo, PublishedPort, Result,
    RuntimeError, Stats, labels,
};
pub use cluster::ClusterEngine;
pub use images::busybox_game_context;

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
        let unavailable = |e: bollard::errors::Error| RuntimeError::Unavailable {
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
    async fn fail(&self, what: &str, e: bollard::errors::Error) -> RuntimeError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => RuntimeError::NotFound(format!("{what}: {message}")),
                409 => RuntimeError::Conflict(format!("{what}: {message}")),
                _ if is_port_clash(&message) => RuntimeError::PortInUse(message),
                _ => RuntimeError::Engine(format!("{what}: {message}")),
            },
            E::SocketNotFoundError(_)
            | E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::HttpClientError { .. }
            | E::RequestTimeoutError => {
                *self.client.write().await = None;
                RuntimeError::Unavailable {
                    host: self.host.clone(),
                    reason: e.to_string(),
                }
            }
            other => RuntimeError::Engine(format!("{what}: {other}")),
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
