//! Rollout handlers: `POST /rollouts`, `GET /rollouts`, `GET /rollout/{id}`,
//! `POST /rollout/{id}/abort`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;
use utoipa::ToSchema;

use super::dto::ErrorBody;
use super::error::ApiError;
use super::{AppState, Body, Loose};
use crate::names::Uid;
use crate::rollout::Rollout;
use crate::service::{RolloutRequest, RolloutTarget};

type ApiResult<T> = Result<T, ApiError>;

/// The longest timeout or watch a rollout takes.
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

/// `POST /rollouts`.
#[derive(Debug, ToSchema)]
pub struct RolloutBody {
    /// Update every server of this game ...
    pub game: Option<String>,
    /// ... or these servers (`<game>.<name>`).
    pub uids: Option<Vec<String>>,
    /// What the servers go to: `{"image": "repo:tag"}`, or `{"plan_version": "1.1.0"}`: that
    /// version of their game's plan (its files, settings and image; the plan is refreshed from
    /// the plan source when this host does not hold it yet, 409 when it is not available).
    #[schema(value_type = Object, example = json!({"plan_version": "1.1.0"}))]
    pub target: Value,
    /// Servers per batch, as a percentage of all (at least one) [default: 25].
    pub batch_percent: Option<u32>,
    /// Servers of a batch that must get ready in time for the next batch to go [default: 100].
    pub success_percent: Option<u32>,
    /// How long a server has to get ready on the target: seconds or `"5m"` [default: 300].
    #[schema(value_type = Option<String>)]
    pub success_timeout: Option<Duration>,
    /// How long the whole rollout may take [default: 3600].
    #[schema(value_type = Option<String>)]
    pub duration_timeout: Option<Duration>,
    /// How long each updated server must stay up after getting ready [default: the daemon's
    /// `update_watch`].
    #[schema(value_type = Option<String>)]
    pub watch: Option<Duration>,
}

fn percent_field(body: &Body, key: &str) -> ApiResult<Option<u32>> {
    match body.0.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p @ 1..=100) => Ok(Some(p as u32)),
            _ => Err(ApiError::BadRequest(format!(
                "The field {key} must be a whole percentage from 1 to 100, not {n}."
            ))),
        },
        Some(other) => Err(ApiError::BadRequest(format!(
            "The field {key} must be a whole percentage from 1 to 100, not {other}."
        ))),
    }
}

impl TryFrom<Body> for RolloutBody {
    type Error = ApiError;

    fn try_from(body: Body) -> Result<Self, ApiError> {
        let uids = match body.0.get("uids") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            ApiError::BadRequest("The field uids must list strings.".into())
                        })
                    })
                    .collect::<ApiResult<Vec<String>>>()?,
            ),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "The field uids must be a list of server uids.".into(),
                ));
            }
        };
        Ok(RolloutBody {
            game: body.str("game")?,
            uids,
            target: body.0.get("target").cloned().unwrap_or(Value::Null),
            batch_percent: percent_field(&body, "batch_percent")?,
            success_percent: percent_field(&body, "success_percent")?,
            success_timeout: body.duration("success_timeout", LONGEST)?,
            duration_timeout: body.duration("duration_timeout", LONGEST)?,
            watch: body.duration("watch", LONGEST)?,
        })
    }
}

impl RolloutBody {
    fn request(self) -> ApiResult<RolloutRequest> {
        let text = |m: &serde_json::Map<String, Value>, k: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let target = match &self.target {
            Value::Object(m) => match (text(m, "image"), text(m, "plan_version")) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadRequest(
                        "The rollout's target is an image or a plan version, not both.".into(),
                    ));
                }
                (Some(i), None) => Some(RolloutTarget::Image(i)),
                (None, Some(v)) => Some(RolloutTarget::PlanVersion(v)),
                (None, None) => None,
            },
            _ => None,
        };
        let target = target.ok_or_else(|| {
            ApiError::BadRequest(
                "The rollout needs a target: {\"image\": \"repo:tag\"} or {\"plan_version\": \"1.1.0\"}.".into(),
            )
        })?;
        if self.game.is_none() && self.uids.as_ref().is_none_or(Vec::is_empty) {
            return Err(ApiError::BadRequest(
                "The rollout needs a game or a list of uids.".into(),
            ));
        }
        let uids = self
            .uids
            .unwrap_or_default()
            .iter()
            .map(|u| Uid::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(RolloutRequest {
            game: self.game,
            uids,
            target,
            batch_percent: self.batch_percent.unwrap_or(25),
            success_percent: self.success_percent.unwrap_or(100),
            success_timeout: self.success_timeout.unwrap_or(Duration::from_secs(300)),
            duration_timeout: self.duration_timeout.unwrap_or(Duration::from_secs(3600)),
            watch: self.watch,
        })
    }
}

#[utoipa::path(
    post,
    path = "/rollouts",
    tag = "rollouts",
    summary = "Update many servers to a target image or plan version in batches, rolling back a failed batch",
    request_body(content = RolloutBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The rollout, now running in the background", body = Rollout),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "A server does not exist", body = ErrorBody),
        (status = 409, description = "The plan version is not available, or a server lacks a setting it requires", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /rollouts`
pub async fn create(
    State(s): State<AppState>,
    Loose(body): Loose<RolloutBody>,
) -> ApiResult<(StatusCode, Json<Rollout>)> {
    let req = body.request()?;
    let r = s
        .service
        .start_rollout(req, &super::auth::requester())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(r)))
}

#[utoipa::path(
    get,
    path = "/rollouts",
    tag = "rollouts",
    summary = "Rollouts, newest first",
    responses(
        (status = 200, description = "Rollouts", body = Vec<Rollout>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /rollouts`
pub async fn list(State(s): State<AppState>) -> Json<Vec<Rollout>> {
    Json(s.service.rollouts())
}

#[utoipa::path(
    get,
    path = "/rollout/{id}",
    tag = "rollouts",
    summary = "One rollout: progress, last known good and bad",
    params(("id" = String, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout", body = Rollout),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such rollout (`rollout.notfound`)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /rollout/<id>`
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Rollout>> {
    Ok(Json(s.service.rollout(&id)?))
}

#[utoipa::path(
    post,
    path = "/rollout/{id}/abort",
    tag = "rollouts",
    summary = "Stop a rollout: no new server update begins; the servers it updated go back",
    params(("id" = String, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout, with the abort requested", body = Rollout),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such rollout (`rollout.notfound`)", body = ErrorBody),
        (status = 409, description = "The rollout has ended (`rollout.ended`)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /rollout/<id>/abort`
pub async fn abort(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Rollout>> {
    Ok(Json(s.service.abort_rollout(&id).await?))
}
