//! A server's directory on this node: streamed out as it is packed (`tar.zst`, then the
//! sha256 trailer of [`crate::agent::framing`]), streamed in (unpacked into staging while it
//! arrives, checked, swapped in whole by the store; a damaged or cut transfer leaves the old
//! directory as it was), and removed. File work runs on the blocking pool.

use std::io::{self, Write};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{Agent, AgentError, Shared};
use crate::agent::framing::{self, FORMAT, FORMAT_HEADER};
use crate::backup::glob::Globs;

/// Bytes per chunk of an outgoing stream.
const CHUNK: usize = 256 << 10;

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
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let _claim = claim;
        let sink = ChunkSender {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let packed = crate::backup::pack(&dir, &Globs::new::<&str>(&[]), sink)
            .and_then(|(mut sink, st)| sink.send_now().map(|()| st));
        match packed {
            Ok(st) => {
                tracing::info!(uid = %uid, bytes = st.bytes, files = st.files, sha256 = %st.sha256, "agent: directory sent");
                let _ = tx.blocking_send(Ok(Bytes::from(framing::trailer(&st.sha256))));
            }
            Err(e) => {
                tracing::warn!(uid = %uid, "agent: sending the directory failed: {e}");
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::HeaderName::from_static(FORMAT_HEADER), FORMAT),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A writer that sends what it gets in chunks through a channel; it fails once the receiver is
/// gone (the client left), which stops the packing.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
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

impl ChunkSender {
    fn send_now(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver went away"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() >= CHUNK {
            self.send_now()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
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
