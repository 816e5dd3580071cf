//! The agent server's one error type and its HTTP form, the same body as the API's:
//! `{"status":"error","info":...,"err_code":...}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// Errors of the agent server.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Busy(String),
    /// A transfer that was damaged, cut off, or did not match its checksum.
    #[error("{0}")]
    Damaged(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody {
    status: &'static str,
    info: String,
    err_code: &'static str,
}

impl AgentError {
    /// Status code and `err_code`.
    pub fn classify(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            AgentError::Unauthorized(_) => (S::UNAUTHORIZED, "agent.auth"),
            AgentError::BadRequest(_) => (S::BAD_REQUEST, "req.invalid"),
            AgentError::NotFound(_) => (S::NOT_FOUND, "agent.notfound"),
            AgentError::Busy(_) => (S::CONFLICT, "agent.busy"),
            AgentError::Damaged(_) => (S::UNPROCESSABLE_ENTITY, "agent.transfer"),
            AgentError::Runtime(e) => match e {
                RuntimeError::Unavailable { .. } => (S::SERVICE_UNAVAILABLE, "docker.unavailable"),
                RuntimeError::NotFound(_) => (S::NOT_FOUND, "docker.notfound"),
                RuntimeError::Conflict(_) | RuntimeError::PortInUse(_) => {
                    (S::CONFLICT, "docker.conflict")
                }
                RuntimeError::ImageUnavailable { .. } => (S::BAD_GATEWAY, "docker.image"),
                RuntimeError::Engine(_) => (S::BAD_GATEWAY, "docker.error"),
            },
            AgentError::Store(_) => (S::INTERNAL_SERVER_ERROR, "store.io"),
            AgentError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "agent.internal"),
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        if status.is_server_error() {
            tracing::warn!("agent: {self}");
        }
        let body = ErrorBody {
            status: "error",
            info: self.to_string(),
            err_code: code,
        };
        (status, Json(body)).into_response()
    }
}
