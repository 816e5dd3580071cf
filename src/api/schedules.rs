//! Schedule handlers: a server's timers and cron schedules, and their last firings.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::ServerUid;
use super::{AppState, Body};
use crate::schedule::{self, Action, ScheduleError, ScheduleView, ServerSchedules, When};

type ApiResult<T> = Result<T, ApiError>;

fn invalid(msg: impl Into<String>) -> ApiError {
    ScheduleError::Invalid(msg.into()).into()
}

#[utoipa::path(
    get,
    path = "/server/schedules/{uid}",
    tag = "schedules",
    summary = "A server's schedules and last firings",
    params(("uid" = String, Path, description = "Server uid <game>.<name>")),
    responses(
        (status = 200, description = "Schedules (soonest first) and results (newest first)", body = Object),
        (status = 404, description = "No such server", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/schedules/<uid>`: schedules (soonest first) and last firings (newest first).
pub async fn list(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
) -> ApiResult<Json<ServerSchedules>> {
    Ok(Json(s.service.schedules_of(&uid)?))
}

#[utoipa::path(
    post,
    path = "/server/schedules/{uid}",
    tag = "schedules",
    summary = "Add a recurring (cron) or one-shot (at) schedule",
    params(("uid" = String, Path, description = "Server uid <game>.<name>")),
    request_body = crate::api::openapi::ScheduleBody,
    responses(
        (status = 201, description = "The new schedule", body = Object),
        (status = 400, description = "Invalid action, cron or at", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "No such server", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /server/schedules/<uid>` with `{"action", "cron"}` or `{"action", "at"}`.
pub async fn add(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    body: Body,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    // An unknown server is a 404 before the body's fields are judged.
    s.service.record(&uid)?;
    let action = match body.0.get("action") {
        Some(Value::String(a)) => Action::parse(a)?,
        _ => return Err(invalid("action is required: start, stop or restart")),
    };
    let field = |k: &str| body.0.get(k).filter(|v| !v.is_null());
    let when = match (field("cron"), field("at")) {
        (Some(Value::String(c)), None) => When::Cron(schedule::cron::CronSpec::parse(c)?),
        (Some(c), None) => {
            return Err(invalid(format!(
                "cron {c} must be a string such as \"0 18 * * FRI\""
            )));
        }
        (None, Some(at)) => When::At(schedule::parse_at(at, chrono::Utc::now().timestamp())?),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give either cron (recurring) or at (once), not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                "cron or at is required: cron as 5 or 6 fields, at as RFC 3339 or Unix seconds",
            ));
        }
    };
    let view = s.service.add_schedule(&uid, action, when).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    delete,
    path = "/server/schedules/{uid}/{id}",
    tag = "schedules",
    summary = "Remove a schedule",
    params(("uid" = String, Path, description = "Server uid"), ("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Removed", body = crate::api::openapi::SuccessBody),
        (status = 404, description = "No such server or schedule", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /server/schedules/<uid>/<id>`
pub async fn remove(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Path((_, schedule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.service.remove_schedule(&uid, &schedule_id).await?;
    Ok(Json(json!({
        "status": "success",
        "info": format!("Schedule {schedule_id} of {uid} was removed.")
    })))
}

#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    summary = "Every schedule of every server",
    responses(
        (status = 200, description = "{time_zone, schedules}", body = Object),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /schedules`: every schedule of every server, soonest first.
pub async fn all(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "time_zone": s.service.schedule_time_zone().name(),
        "schedules": s.service.all_schedules(),
    }))
}
