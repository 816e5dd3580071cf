//! Webhook handlers (admin only, see [`super::ROUTE_CLASSES`]): `GET /hooks`, `POST /hooks`,
//! `GET /hook/{id}`, `DELETE /hook/{id}`, `POST /hook/{id}/test`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::dto::{ErrorBody, HookBody, HookDetail, Success};
use super::error::ApiError;
use crate::service::{HookInfo, HookSpec};

type ApiResult<T> = Result<T, ApiError>;

#[utoipa::path(
    get,
    path = "/hooks",
    tag = "hooks",
    summary = "The webhooks and their delivery counts (admin); never a secret",
    responses(
        (status = 200, description = "Every hook, by id", body = Vec<HookInfo>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /hooks`
pub async fn list(State(s): State<AppState>) -> Json<Vec<HookInfo>> {
    Json(s.service.hooks())
}

#[utoipa::path(
    post,
    path = "/hooks",
    tag = "hooks",
    summary = "Add a webhook (admin)",
    request_body = HookBody,
    responses(
        (status = 201, description = "The hook", body = HookInfo),
        (status = 400, description = "Invalid id, URL, events or format", body = ErrorBody),
        (status = 409, description = "A hook with that id exists", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /hooks`
pub async fn create(
    State(s): State<AppState>,
    body: super::Body,
) -> ApiResult<(StatusCode, Json<HookInfo>)> {
    let b: HookBody = serde_json::from_value(serde_json::Value::Object(body.0))
        .map_err(|e| ApiError::BadRequest(format!("Invalid hook: {e}")))?;
    let format = match b.format.as_deref() {
        None => None,
        Some(f) => Some(crate::hooks::Format::parse(f).ok_or_else(|| {
            ApiError::BadRequest(format!("Unknown format [{f}]: use generic or discord."))
        })?),
    };
    let info = s
        .service
        .add_hook(HookSpec {
            id: b.id,
            url: b.url,
            events: b.events,
            secret: b.secret.filter(|s| !s.is_empty()),
            format,
            source: crate::hooks::Source::Api,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(
    get,
    path = "/hook/{id}",
    tag = "hooks",
    summary = "One webhook with its latest dead letters (admin)",
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 200, description = "The hook", body = HookDetail),
        (status = 404, description = "No such hook", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /hook/{id}`
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<HookDetail>> {
    let (hook, dead_letters) = s.service.hook(&id).await?;
    Ok(Json(HookDetail { hook, dead_letters }))
}

#[utoipa::path(
    delete,
    path = "/hook/{id}",
    tag = "hooks",
    summary = "Remove a webhook made through the API, with its pending deliveries (admin)",
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 200, description = "Removed", body = Success),
        (status = 404, description = "No such hook", body = ErrorBody),
        (status = 409, description = "The hook comes from the configuration file", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /hook/{id}`
pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Success>> {
    s.service.remove_hook(&id).await?;
    Ok(Json(Success::new(format!("The hook [{id}] is removed."))))
}

#[utoipa::path(
    post,
    path = "/hook/{id}/test",
    tag = "hooks",
    summary = "Queue a `test` message to one webhook (admin); see its status for the outcome",
    params(("id" = String, Path, description = "The hook's id")),
    responses(
        (status = 202, description = "Queued", body = Success),
        (status = 404, description = "No such hook", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /hook/{id}/test`
pub async fn test(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Success>)> {
    s.service.test_hook(&id)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Success::new(format!("A test message to [{id}] is queued."))),
    ))
}
