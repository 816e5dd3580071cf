//! The one place where errors become HTTP responses: `{"status":"error","info":...}` with an
//! `err_code`, as PEON clients read them. Internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::dto::ErrorBody;
use crate::access::AccessError;
use crate::jobs::JobError;
use crate::plans::PlanError;
use crate::rollout::RolloutError;
use crate::runtime::RuntimeError;
use crate::schedule::ScheduleError;
use crate::service::ServiceError;

/// Errors of the API layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0}")]
    BadRequest(String),
    #[error("Not authorized")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A fault of the API layer itself (a route wired to the wrong extractor).
    #[error("{0}")]
    Internal(String),
}

impl From<crate::names::InvalidName> for ApiError {
    fn from(e: crate::names::InvalidName) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        ApiError::Service(ServiceError::Schedule(e))
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        ApiError::Service(ServiceError::Access(e))
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        ApiError::Service(ServiceError::Plan(e))
    }
}

impl ApiError {
    /// Status code and `err_code` of this error.
    pub fn classify(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "req.invalid"),
            ApiError::Unauthorized => (S::UNAUTHORIZED, "auth.denied"),
            ApiError::NotFound(_) => (S::NOT_FOUND, "req.notfound"),
            ApiError::MethodNotAllowed(_) => (S::METHOD_NOT_ALLOWED, "req.method"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "api.internal"),
            ApiError::Service(e) => match e {
                ServiceError::Name(_) | ServiceError::BadRequest(_) => {
                    (S::BAD_REQUEST, "req.invalid")
                }
                ServiceError::NotFound(_) => (S::NOT_FOUND, "srv.notfound"),
                ServiceError::Conflict(_) => (S::CONFLICT, "srv.exists"),
                ServiceError::PortsInUse(_) => (S::CONFLICT, "srv.portsused"),
                ServiceError::Failed(_) => (S::BAD_GATEWAY, "srv.failed"),
                ServiceError::RolledBack(_) => (S::BAD_GATEWAY, "srv.update.rolledback"),
                ServiceError::NotRunning(_) => (S::CONFLICT, "srv.notrunning"),
                ServiceError::Unreachable(_) => (S::CONFLICT, "srv.unreachable"),
                ServiceError::OverQuota(_) => (S::CONFLICT, "srv.quota"),
                ServiceError::NoSpace(_) => (S::INSUFFICIENT_STORAGE, "backup.nospace"),
                ServiceError::Store(_) => (S::INTERNAL_SERVER_ERROR, "store.io"),
                ServiceError::Plan(p) => match p {
                    PlanError::NotFound(_) => (S::NOT_FOUND, "plan.notfound"),
                    PlanError::Invalid { .. } => (S::BAD_REQUEST, "plan.invalid"),
                    PlanError::Name(_) => (S::BAD_REQUEST, "req.invalid"),
                    PlanError::Io { .. } => (S::INTERNAL_SERVER_ERROR, "plan.io"),
                    PlanError::Source { .. } => (S::BAD_GATEWAY, "plan.source"),
                    PlanError::Rejected { .. } => (S::BAD_GATEWAY, "plan.rejected"),
                    PlanError::NoList(_) => (S::NOT_FOUND, "plan.notfound"),
                    PlanError::Update { .. } => (S::INTERNAL_SERVER_ERROR, "plan.io"),
                },
                ServiceError::Access(a) => match a {
                    AccessError::Invalid(_) => (S::BAD_REQUEST, "req.invalid"),
                    AccessError::NotFound(_) => (S::NOT_FOUND, "key.notfound"),
                    AccessError::Conflict(_) => (S::CONFLICT, "key.exists"),
                    AccessError::Forbidden(_) => (S::FORBIDDEN, "auth.forbidden"),
                    AccessError::Locked(_) => (S::TOO_MANY_REQUESTS, "auth.locked"),
                    AccessError::Expired(_) => (S::GONE, "link.expired"),
                    AccessError::Io { .. } => (S::INTERNAL_SERVER_ERROR, "access.io"),
                },
                ServiceError::Schedule(s) => match s {
                    ScheduleError::Invalid(_) => (S::BAD_REQUEST, "req.invalid"),
                    ScheduleError::NotFound(_) => (S::NOT_FOUND, "schedule.notfound"),
                    ScheduleError::Storage(_) => (S::INTERNAL_SERVER_ERROR, "schedule.io"),
                },
                ServiceError::Rollout(r) => match r {
                    RolloutError::NotFound(_) => (S::NOT_FOUND, "rollout.notfound"),
                    RolloutError::Ended(_) => (S::CONFLICT, "rollout.ended"),
                    RolloutError::Io { .. } => (S::INTERNAL_SERVER_ERROR, "rollout.io"),
                },
                ServiceError::Job(j) => match j {
                    JobError::NotFound(_) => (S::NOT_FOUND, "job.notfound"),
                    JobError::Io { .. } => (S::INTERNAL_SERVER_ERROR, "job.io"),
                },
                ServiceError::Docker(d) => match d {
                    RuntimeError::Unavailable { .. } => {
                        (S::SERVICE_UNAVAILABLE, "docker.unavailable")
                    }
                    RuntimeError::NotFound(_) => (S::NOT_FOUND, "docker.notfound"),
                    RuntimeError::Conflict(_) => (S::CONFLICT, "docker.conflict"),
                    RuntimeError::PortInUse(_) => (S::CONFLICT, "srv.portsused"),
                    RuntimeError::ImageUnavailable { .. } => (S::BAD_GATEWAY, "docker.image"),
                    RuntimeError::Engine(_) => (S::BAD_GATEWAY, "docker.error"),
                },
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        let retry_after = match &self {
            ApiError::Service(ServiceError::Access(AccessError::Locked(s))) => Some(*s),
            _ => None,
        };
        let info = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {self}");
            "Internal error; the daemon's log has the details.".to_owned()
        } else {
            if status.is_server_error() {
                tracing::warn!("{self}");
            }
            self.to_string()
        };
        let body = ErrorBody {
            status: "error",
            info,
            err_code: code,
        };
        let mut res = (status, Json(body)).into_response();
        if let Some(s) = retry_after {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        res
    }
}
