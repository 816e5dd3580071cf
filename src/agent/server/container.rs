//! The server's container on this node: inspect, logs, stats, kill, and the console over a
//! WebSocket. One log line per engine action, with the server's uid.

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Agent, AgentError, Shared};
use crate::runtime::{Attached, ContainerDetails, Stats};

pub(super) async fn inspect(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
) -> Result<Json<ContainerDetails>, AgentError> {
    let uid = Agent::uid(&uid)?;
    let name = agent.container_of(&uid).await?;
    match agent.engine.inspect(&name).await? {
        Some(d) => Ok(Json(d)),
        None => Err(AgentError::NotFound(format!(
            "server {uid} has no container on this node"
        ))),
    }
}

#[derive(Deserialize)]
pub(super) struct Tail {
    tail: Option<usize>,
}

pub(super) async fn logs(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
    Query(q): Query<Tail>,
) -> Result<Json<serde_json::Value>, AgentError> {
    let uid = Agent::uid(&uid)?;
    let name = agent.container_of(&uid).await?;
    let tail = q.tail.unwrap_or(100).min(10_000);
    let lines = agent.engine.logs(&name, tail).await?;
    Ok(Json(serde_json::json!({ "lines": lines })))
}

pub(super) async fn stats(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
) -> Result<Json<Option<Stats>>, AgentError> {
    let uid = Agent::uid(&uid)?;
    let name = agent.container_of(&uid).await?;
    Ok(Json(agent.engine.stats(&name).await?))
}

#[derive(Deserialize)]
pub(super) struct Signal {
    signal: Option<String>,
}

/// A signal name as the engine takes it: `SIGKILL`, `KILL`, `9`.
fn valid_signal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 16
        && s.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'+')
}

pub(super) async fn kill(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
    Query(q): Query<Signal>,
) -> Result<StatusCode, AgentError> {
    let uid = Agent::uid(&uid)?;
    let signal = q.signal.unwrap_or_else(|| "SIGKILL".into());
    if !valid_signal(&signal) {
        return Err(AgentError::BadRequest(format!(
            "invalid signal [{signal}]: use a name like SIGTERM or a number"
        )));
    }
    let name = agent.container_of(&uid).await?;
    tracing::info!(uid = %uid, container = %name, %signal, "agent: kill");
    agent.engine.kill(&name, &signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The console: attached before the upgrade (so a missing container is a plain 404), then the
/// game's output goes out as binary frames and every frame received goes to its stdin. The
/// socket closes when the output ends (the container stopped).
pub(super) async fn attach(
    State(agent): State<Shared>,
    Path(uid): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AgentError> {
    let uid = Agent::uid(&uid)?;
    let name = agent.container_of(&uid).await?;
    let attached = agent.engine.attach(&name).await?;
    tracing::info!(uid = %uid, container = %name, "agent: console attached");
    Ok(upgrade
        .on_upgrade(move |socket| async move {
            relay(socket, attached).await;
            tracing::info!(uid = %uid, "agent: console detached");
        })
        .into_response())
}

async fn relay(socket: WebSocket, attached: Attached) {
    let Attached {
        mut output,
        mut input,
    } = attached;
    let (mut tx, mut rx) = socket.split();
    let out = async {
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(b) => {
                    if tx.send(Message::Binary(b)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!("agent: console output ended: {e}");
                    break;
                }
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    };
    let inp = async {
        while let Some(Ok(m)) = rx.next().await {
            let bytes = match m {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_str().as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                break;
            }
        }
    };
    // Output ending (the game stopped) or the client leaving ends the session.
    tokio::select! {
        () = out => {}
        () = inp => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals() {
        for ok in ["SIGKILL", "TERM", "9", "SIGRTMIN+3"] {
            assert!(super::valid_signal(ok), "{ok}");
        }
        for bad in ["", "sigkill", "SIG KILL", "SIGKILL;rm", &"A".repeat(17)] {
            assert!(!super::valid_signal(bad), "{bad}");
        }
    }
}
