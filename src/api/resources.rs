//! A server's resource limits: `PUT /server/limits/<uid>`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dto::ErrorBody;
use super::error::ApiError;
use super::extract::ServerUid;
use super::{AppState, Body};
use crate::service::ServerObject;

/// `{"memory": "512m", "cpus": 1.5, "pids": 200, "disk": "20g"}`: each key given is set, `null`
/// puts it back to the plan's; keys left out do not change.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct LimitsBody {
    /// Bytes, or a size like `512m`, `2g` (at least 6m).
    #[schema(value_type = Option<String>)]
    pub memory: Option<Value>,
    /// CPU cores as a decimal, like `0.5` or `2`.
    #[schema(value_type = Option<f64>)]
    pub cpus: Option<Value>,
    /// How many processes and threads the game may have (at least 8).
    #[schema(value_type = Option<i64>)]
    pub pids: Option<Value>,
    /// Disk quota of the server directory: bytes, or a size like `20g`.
    #[schema(value_type = Option<String>)]
    pub disk: Option<Value>,
}

#[utoipa::path(
    put,
    path = "/server/limits/{uid}",
    tag = "servers",
    summary = "Change a server's resource limits and disk quota",
    description = "Memory, CPU and process limits are applied to a running container in place, without a restart. A limit put back to none (`null`, with no plan default) that the engine cannot lift in place (memory, CPU) is lifted when the container is next rebuilt, at the next start of a stopped server.",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    request_body(content = LimitsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/limits/<uid>`
pub async fn limits(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    body: Body,
) -> Result<Json<ServerObject>, ApiError> {
    let patch = super::servers::limits_patch(&body.0)?;
    if patch.is_empty() {
        return Err(ApiError::BadRequest(
            "Give at least one of memory, cpus, pids, disk.".into(),
        ));
    }
    let set = s.service.set_limits(&u, patch);
    Ok(Json(
        s.service.acting(&super::auth::requester(), set).await?,
    ))
}
