//! The core of a move between nodes (cluster mode, issue 12), independent of Swarm: stop the
//! server, copy its directory from the old node's agent to the new node's with the checksum
//! checked by the receiver, re-pin it to the new node, start it; then the old node's copy is
//! removed. Any failure before the end leaves the server on the old node as it was: its
//! directory there is never touched until the move succeeded, the copy on the new node is
//! removed, it is pinned back and started again when it ran.
//!
//! What a move needs of the cluster (services, placement) is [`MoveOps`], which the cluster
//! runtime implements; the files go through the agents (`agent::client`). Each phase is a
//! step of the job the caller runs the move in (`jobs::step`).

use futures_util::future::BoxFuture;

use super::ServiceError;
use crate::agent::client::{AgentClient, AgentClientError, copy_dir};
use crate::jobs::step;
use crate::names::Uid;

/// What a move asks of the cluster.
pub trait MoveOps: Send + Sync {
    /// Stops the server and returns once its container has exited (service at 0 replicas).
    fn stop<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, Result<(), ServiceError>>;
    /// Pins the server to `node` (the placement constraint `node.id==<node>`).
    fn pin<'a>(&'a self, uid: &'a Uid, node: &'a str) -> BoxFuture<'a, Result<(), ServiceError>>;
    /// Starts the server on the node it is pinned to and returns once it runs.
    fn start<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, Result<(), ServiceError>>;
}

/// One side of a move: a node's id and its agent.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub node: &'a str,
    pub agent: &'a AgentClient,
}

/// What was moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Bytes of the directory's archive on the wire.
    pub bytes: u64,
    /// Its sha256, computed by the receiving agent and equal to the sending agent's.
    pub sha256: String,
    /// The two nodes' agents share one data dir (one storage): nothing was copied or removed.
    pub shared: bool,
}

fn agent_error(e: AgentClientError) -> ServiceError {
    match e {
        AgentClientError::NotFound(m) => ServiceError::NotFound(m),
        AgentClientError::Busy(m) => ServiceError::Conflict(m),
        e => ServiceError::Failed(e.to_string()),
    }
}

/// Moves `uid` from `from` to `to`. `running`: the server runs now (it is stopped first and
/// started on the new node). On failure the server is back on `from` as it was, and the error
/// says what failed (and what the way back could not do, if anything).
pub async fn move_server(
    ops: &dyn MoveOps,
    uid: &Uid,
    from: Side<'_>,
    to: Side<'_>,
    running: bool,
) -> Result<Moved, ServiceError> {
    if from.node == to.node {
        return Err(ServiceError::BadRequest(format!(
            "server {uid} is on node {} already",
            to.node
        )));
    }
    // Both agents must answer before anything is touched.
    let shared = step("check agents", async {
        // Nothing is touched yet: an agent that does not answer is a conflict, not a failure.
        let (a, b) = tokio::try_join!(from.agent.info(), to.agent.info())
            .map_err(|e| ServiceError::Conflict(format!("no move of {uid}: {e}")))?;
        Ok::<_, ServiceError>(!a.storage.is_empty() && a.storage == b.storage)
    })
    .await?;
    if running {
        step("stop", ops.stop(uid)).await?;
    }
    let copied = if shared {
        // One folder seen by both nodes (a shared filesystem): the world is already there.
        Ok(crate::agent::client::Pushed {
            bytes: 0,
            sha256: String::new(),
        })
    } else {
        step("copy", async {
            copy_dir(from.agent, to.agent, uid)
                .await
                .map_err(agent_error)
        })
        .await
    };
    let moved = match copied {
        Ok(p) => Moved {
            bytes: p.bytes,
            sha256: p.sha256,
            shared,
        },
        // The target kept what it had (a transfer is swapped in whole or not at all).
        Err(e) => return Err(back_on_old(ops, uid, from, None, shared, running, e).await),
    };
    if let Err(e) = step("re-pin", ops.pin(uid, to.node)).await {
        return Err(back_on_old(ops, uid, from, Some(to), shared, running, e).await);
    }
    if running && let Err(e) = step("start", ops.start(uid)).await {
        // It may have started and failed: stop it before going back.
        let _ = ops.stop(uid).await;
        return Err(back_on_old(ops, uid, from, Some(to), shared, running, e).await);
    }
    // The world lives on the new node now; the old copy goes (a failure here is only noted).
    if shared {
        tracing::info!(uid = %uid, "the nodes share one data dir: nothing to copy or remove");
    } else if let Err(e) = from.agent.delete_dir(uid).await {
        tracing::warn!(uid = %uid, node = %from.node, "moved, but the old directory could not be removed: {e}");
    }
    tracing::info!(uid = %uid, from = %from.node, to = %to.node, bytes = moved.bytes, sha256 = %moved.sha256, "server moved");
    Ok(moved)
}

/// The way back after a failed move: the copy on the new node removed, the server pinned to
/// the old node and started there when it ran. Returns the error to report.
async fn back_on_old(
    ops: &dyn MoveOps,
    uid: &Uid,
    from: Side<'_>,
    copied_to: Option<Side<'_>>,
    shared: bool,
    running: bool,
    cause: ServiceError,
) -> ServiceError {
    let mut also = Vec::new();
    if copied_to.is_some()
        && let Err(e) = step("pin back", ops.pin(uid, from.node)).await
    {
        also.push(format!("pinning it back to node {} failed: {e}", from.node));
    }
    // (With one shared folder, the "copy" is the original: it stays.)
    if let Some(to) = copied_to.filter(|_| !shared)
        && let Err(e) = to.agent.delete_dir(uid).await
    {
        also.push(format!("the copy on node {} was not removed: {e}", to.node));
    }
    if running && let Err(e) = step("start on the old node", ops.start(uid)).await {
        also.push(format!("starting it again failed: {e}"));
    }
    tracing::warn!(uid = %uid, node = %from.node, "move failed, the server stays on its node: {cause}");
    if also.is_empty() {
        ServiceError::Failed(format!(
            "the move of {uid} failed, it stays on node {} as it was: {cause}",
            from.node
        ))
    } else {
        ServiceError::Failed(format!(
            "the move of {uid} failed: {cause}; and on the way back: {}",
            also.join("; ")
        ))
    }
}
