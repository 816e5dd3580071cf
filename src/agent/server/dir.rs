//! A server's directory on this node: streamed out as it is packed (`tar.zst`, then the
//! sha256 trailer of [`crate::agent::framing`]), streamed in (unpacked into staging while it
//! arrives, checked, swapped in whole by the store; a damaged or cut transfer leaves the old
//! directory as it was), and removed. File work runs on the blocking pool.

use std::io;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::{Agent, AgentError, Shared};
use crate::agent::framing::{self, FORMAT, FORMAT_HEADER};

/// `GET .../dir`: the directory, packed as it is sent. A failure while packing cuts the
/// stream before its trailer, so the receiver refuses it.
pub(super) async fn pull(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
) -> Result<Response, AgentError> {
    let uid = Agent::uid(&uid)?;
    let dir = agent.data.server_dir(&uid);
    if !dir.is_dir() {
        return Err(AgentError::NotFound(format!(
            "server {uid} has no directory on this node"
        )));
    }
    let claim = agent.claim(&uid)?;
    let stream = framing::pack_stream(dir, move |r| {
        let _claim = claim;
        match r {
            Ok(st) => {
                tracing::info!(uid = %uid, bytes = st.bytes, files = st.files, sha256 = %st.sha256, "agent: directory sent");
            }
            Err(e) => tracing::warn!(uid = %uid, "agent: sending the directory failed: {e}"),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::HeaderName::from_static(FORMAT_HEADER), FORMAT),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

impl Agent {
    /// A 409 when the server's container runs on this node.
    async fn refuse_if_running(
        &self,
        uid: &crate::names::Uid,
        what: &str,
    ) -> Result<(), AgentError> {
        let Ok(name) = self.container_of(uid).await else {
            return Ok(());
        };
        if self.engine.inspect(&name).await?.is_some_and(|d| d.running) {
            return Err(AgentError::Busy(format!(
                "server {uid} is running on this node: stop it before {what}"
            )));
        }
        Ok(())
    }
}

/// `PUT .../dir`: a directory streamed in. It is unpacked into staging as it arrives, and
/// swapped in only when the archive is whole and matches its trailer. Refused while the
/// server's game runs on this node.
pub(super) async fn push(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, AgentError> {
    let uid = Agent::uid(&uid)?;
    // A running game keeps its mounts on the old tree: it would write into a deleted folder.
    agent
        .refuse_if_running(&uid, "replacing its directory")
        .await?;
    let claim = agent.claim(&uid)?;
    let stream = body.into_data_stream().map_err(io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let (a, u) = (agent.clone(), uid.clone());
    let received = tokio::task::spawn_blocking(move || {
        let _claim = claim;
        let mut damaged = None;
        let r = a.data.receive_server(&u, |stage| {
            framing::unpack_framed(reader, stage).inspect_err(|e| damaged = Some(e.to_string()))
        });
        (r, damaged)
    })
    .await
    .map_err(|e| AgentError::Internal(format!("the receiving task failed: {e}")))?;
    match received {
        (Ok(r), _) => {
            tracing::info!(uid = %uid, bytes = r.bytes, sha256 = %r.sha256, "agent: directory received and swapped in");
            Ok(Json(serde_json::json!({
                "status": "ok",
                "bytes": r.bytes,
                "sha256": r.sha256,
            })))
        }
        (Err(_), Some(why)) => {
            tracing::warn!(uid = %uid, "agent: directory transfer refused, the old directory is unchanged: {why}");
            Err(AgentError::Damaged(format!(
                "the directory transfer of {uid} was refused ({why}); the old directory is unchanged"
            )))
        }
        (Err(e), None) => Err(e.into()),
    }
}

/// `GET .../facts`: the directory's disk use and the game's `config/` files (secrets masked).
pub(super) async fn facts(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
) -> Result<Json<crate::fsio::gamefiles::DirFacts>, AgentError> {
    let uid = Agent::uid(&uid)?;
    let dir = agent.data.server_dir(&uid);
    if !dir.is_dir() {
        return Err(AgentError::NotFound(format!(
            "server {uid} has no directory on this node"
        )));
    }
    let f = tokio::task::spawn_blocking(move || crate::fsio::gamefiles::facts(&dir))
        .await
        .map_err(|e| AgentError::Internal(format!("the reading task failed: {e}")))?;
    Ok(Json(f))
}

/// `DELETE .../dir`: removes the directory, unless the server's container runs on this node.
pub(super) async fn delete(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
) -> Result<Json<serde_json::Value>, AgentError> {
    let uid = Agent::uid(&uid)?;
    agent
        .refuse_if_running(&uid, "removing its directory")
        .await?;
    let claim = agent.claim(&uid)?;
    let (a, u) = (agent.clone(), uid.clone());
    let removed = tokio::task::spawn_blocking(move || {
        let _claim = claim;
        a.data.remove_server_dir(&u)
    })
    .await
    .map_err(|e| AgentError::Internal(format!("the removing task failed: {e}")))??;
    tracing::info!(uid = %uid, removed, "agent: directory removed");
    Ok(Json(
        serde_json::json!({ "status": "ok", "removed": removed }),
    ))
}
