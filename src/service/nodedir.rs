//! Cluster mode: a server's directory lives on its node. The node's peon agent holds it under
//! its own data dir ([`NodePin::data_dir`]), and that is what the game's service mounts. The
//! manager keeps a copy in its data dir (where the store reads `config.json` and the plan, and
//! writes `.peon.json`, which stays the manager's), kept in step at fixed points:
//!
//! - **fetched** from the node (the node's files replace the manager's copy, the manager's
//!   `config.json` and `.peon.json` kept) before the manager reads the world or changes the directory: a backup,
//!   an update that touches files;
//! - **sent** to the node (the manager's copy replaces the node's, swapped in whole by the
//!   agent once its checksum matches) after the manager made or changed it: a create, a
//!   restore, an update's files, a rollback, a failover.
//!
//! The agent refuses to replace a directory while the game runs there, so a send always lands
//! on a stopped server. Two data dirs on one storage (the same [`DataDir::storage_id`]: the
//! manager's node itself, or a filesystem shared between nodes) are one copy: nothing is sent
//! or fetched.
//!
//! [`DataDir::storage_id`]: crate::store::DataDir::storage_id

use std::sync::Arc;

use super::{Result, ServerService, ServiceError};
use crate::agent::client::{AgentClient, AgentClientError};
use crate::agent::framing;
use crate::jobs::step;
use crate::names::Uid;
use crate::store::NodePin;

/// How long past its stop grace a removed server's container may take to go on its node.
const GONE_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A server's node as its directory's holder.
struct Home {
    agent: Arc<AgentClient>,
    hostname: String,
    /// The node's agent holds the manager's own data dir (one storage): nothing to copy.
    shared: bool,
}

fn agent_error(node: &str, e: AgentClientError) -> ServiceError {
    match e {
        AgentClientError::NotFound(m) => ServiceError::NotFound(format!("node {node}: {m}")),
        AgentClientError::Busy(m) => ServiceError::Conflict(format!("node {node}: {m}")),
        e => ServiceError::Conflict(format!(
            "node {node}'s peon agent (which holds the server's directory there): {e}"
        )),
    }
}

impl ServerService {
    /// The agent of node `id` (cluster mode only).
    async fn agent_of(&self, id: &str, hostname: &str) -> Result<Arc<AgentClient>> {
        let agents = self.agents().ok_or_else(|| {
            ServiceError::Failed("cluster mode without the nodes' agents wired".into())
        })?;
        agents
            .agent(id)
            .await
            .map_err(|e| ServiceError::Conflict(format!("node {hostname}: {e}")))
    }

    /// `pin` with its node's data dir, asked of the node's agent: the node a server is placed
    /// on must have an agent that answers (it will hold the server's directory).
    pub(super) async fn with_home(&self, mut pin: NodePin) -> Result<NodePin> {
        let agent = self.agent_of(&pin.id, &pin.hostname).await?;
        let info = agent
            .info()
            .await
            .map_err(|e| agent_error(&pin.hostname, e))?;
        if info.data_dir.is_empty() || !info.data_dir.starts_with('/') {
            return Err(ServiceError::Conflict(format!(
                "node {}'s peon agent did not say where it keeps server directories (an older agent?)",
                pin.hostname
            )));
        }
        pin.data_dir = Some(info.data_dir);
        Ok(pin)
    }

    /// The id of the storage the manager's data dir is on: read (or made) once, then kept (the
    /// config refresher asks for every running game every 2 s).
    async fn own_storage(&self) -> Result<String> {
        if let Some(s) = self.own_storage.get() {
            return Ok(s.clone());
        }
        let data = self.store.data_dir().clone();
        let id = tokio::task::spawn_blocking(move || data.storage_id())
            .await
            .map_err(|e| ServiceError::Failed(e.to_string()))??;
        Ok(self.own_storage.get_or_init(|| id).clone())
    }

    /// Where `uid`'s directory lives: `None` on one host (the manager's copy is the one).
    async fn home(&self, uid: &Uid) -> Result<Option<Home>> {
        if self.cluster.get().is_none() {
            return Ok(None);
        }
        let rec = self.record(uid)?;
        // A pin without a data dir (a server placed by an older peon) mounts the manager's
        // own directory on its node: that copy is the one.
        let Some(pin) = rec.state.node.clone().filter(|p| p.data_dir.is_some()) else {
            return Ok(None);
        };
        let agent = self.agent_of(&pin.id, &pin.hostname).await?;
        let theirs = agent
            .storage()
            .await
            .map_err(|e| agent_error(&pin.hostname, e))?;
        let ours = self.own_storage().await?;
        Ok(Some(Home {
            agent,
            hostname: pin.hostname,
            shared: !theirs.is_empty() && theirs == ours,
        }))
    }

    /// Sends the manager's copy of `uid`'s directory to its node (a step of the running job).
    /// Refused by the agent while the game runs there.
    pub(super) async fn send_to_node(&self, uid: &Uid) -> Result<()> {
        let Some(home) = self.home(uid).await? else {
            return Ok(());
        };
        if home.shared {
            return Ok(());
        }
        step(&format!("send the directory to {}", home.hostname), async {
            let dir = self.store.data_dir().server_dir(uid);
            let stream = framing::pack_stream(dir, |_| {});
            let pushed = home
                .agent
                .push_dir(uid, stream)
                .await
                .map_err(|e| agent_error(&home.hostname, e))?;
            tracing::info!(uid = %uid, node = %home.hostname, bytes = pushed.bytes, sha256 = %pushed.sha256, "server directory sent to its node");
            Ok(())
        })
        .await
    }

    /// Replaces the manager's copy of `uid`'s directory with its node's (the manager's
    /// `.peon.json` kept), as a step of the running job. `Ok(false)` when the node holds no
    /// directory for it (nothing changed here).
    pub(super) async fn fetch_from_node(&self, uid: &Uid) -> Result<bool> {
        let Some(home) = self.home(uid).await? else {
            return Ok(true);
        };
        if home.shared {
            return Ok(true);
        }
        step(&format!("fetch the directory from {}", home.hostname), async {
            let stream = match home.agent.pull_dir(uid).await {
                Ok(s) => s,
                Err(AgentClientError::NotFound(m)) => {
                    tracing::warn!(uid = %uid, node = %home.hostname, "{m}");
                    return Ok(false);
                }
                Err(e) => return Err(agent_error(&home.hostname, e)),
            };
            let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
                futures_util::TryStreamExt::map_err(stream, std::io::Error::other),
            ));
            let svc = self
                .me
                .upgrade()
                .ok_or_else(|| ServiceError::Failed("the service is shutting down".into()))?;
            let u = uid.clone();
            let got = tokio::task::spawn_blocking(move || {
                Ok::<_, ServiceError>(
                    svc.store
                        .refresh_from_node(&u, |stage| framing::unpack_framed(reader, stage))?,
                )
            })
            .await
            .map_err(|e| ServiceError::Failed(e.to_string()))?
            .map_err(|e| {
                ServiceError::Failed(format!(
                    "fetching the directory of [{uid}] from node {} failed, the manager's copy is unchanged: {e}",
                    home.hostname
                ))
            })?;
            tracing::info!(uid = %uid, node = %home.hostname, bytes = got.bytes, sha256 = %got.sha256, "server directory fetched from its node");
            Ok(true)
        })
        .await
    }

    /// What `uid`'s node says of its directory (disk use, the game's `config/` files); `None`
    /// when the manager's copy is the one the game uses (one host, one storage).
    pub(super) async fn node_facts(
        &self,
        uid: &Uid,
    ) -> Result<Option<crate::fsio::gamefiles::DirFacts>> {
        let Some(home) = self.home(uid).await? else {
            return Ok(None);
        };
        if home.shared {
            return Ok(None);
        }
        home.agent
            .facts(uid)
            .await
            .map(Some)
            .map_err(|e| agent_error(&home.hostname, e))
    }

    /// Removes `uid`'s directory on its node (an eradicate, its service removed just before).
    /// `Ok` when there was none. The node's container may take its stop grace to go: a
    /// refusal because it still runs is asked again until then.
    pub(super) async fn remove_on_node(&self, uid: &Uid) -> Result<()> {
        let Some(home) = self.home(uid).await? else {
            return Ok(());
        };
        if home.shared {
            return Ok(());
        }
        let rec = self.record(uid)?;
        let deadline = std::time::Instant::now() + self.stop_grace(&rec) + GONE_MARGIN;
        let removed = loop {
            match home.agent.delete_dir(uid).await {
                Ok(r) => break r,
                Err(AgentClientError::Busy(_)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(agent_error(&home.hostname, e)),
            }
        };
        tracing::info!(uid = %uid, node = %home.hostname, removed, "server directory removed on its node");
        Ok(())
    }
}
