//! Schedule handlers: a server's timers and cron schedules, and their last firings.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::dto::{AllSchedules, ErrorBody, ScheduleBody, Success};
use super::error::ApiError;
use super::extract::ServerUid;
use super::{AppState, Body};
use crate::schedule::{ScheduleView, ServerSchedules};

type ApiResult<T> = Result<T, ApiError>;

#[utoipa::path(
    get,
    path = "/server/schedules/{uid}",
    tag = "schedules",
    summary = "A server's schedules and last firings",
    params(("uid" = String, Path, description = "Server uid <game>.<name>")),
    responses(
        (status = 200, description = "Schedules (soonest first) and results (newest first)", body = Object),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
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
    request_body = ScheduleBody,
    responses(
        (status = 201, description = "The new schedule", body = Object),
        (status = 400, description = "Invalid action, cron or at", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
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
    let req = ScheduleBody::parse(&body, chrono::Utc::now().timestamp())?;
    let view = s
        .service
        .add_schedule_with(&uid, req.action, req.when, req.when_empty)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    delete,
    path = "/server/schedules/{uid}/{id}",
    tag = "schedules",
    summary = "Remove a schedule",
    params(("uid" = String, Path, description = "Server uid"), ("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "Removed", body = Success),
        (status = 404, description = "No such server or schedule", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /server/schedules/<uid>/<id>`
pub async fn remove(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Path((_, schedule_id)): Path<(String, String)>,
) -> ApiResult<Json<Success>> {
    s.service.remove_schedule(&uid, &schedule_id).await?;
    Ok(Json(Success::new(format!(
        "Schedule {schedule_id} of {uid} was removed."
    ))))
}

#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    summary = "Every schedule of every server",
    responses(
        (status = 200, description = "The time zone and every schedule, soonest first", body = AllSchedules),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /schedules`: every schedule of every server, soonest first.
pub async fn all(
    State(s): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
) -> Json<AllSchedules> {
    let mut schedules = s.service.all_schedules();
    schedules.retain(|v| caller.sees(&v.server_uid));
    Json(AllSchedules {
        time_zone: s.service.schedule_time_zone().name(),
        schedules,
    })
}
