//! Plans: the registry, one plan's settings, and updating from the plan source.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::plans;

#[utoipa::path(
    get,
    path = "/plans",
    tag = "plans",
    summary = "The plans registry, sorted by title",
    responses(
        (status = 200, description = "Plans", body = Vec<crate::api::openapi::PlanEntry>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "No local plans list", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /plans`: the registry, sorted by title without regard to case.
pub async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let path = s.service.plans().dir().join("plans.json");
    let text = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::NotFound("There is no local plans list; run PUT /plans.".into()))?;
    let mut list: Vec<Value> = serde_json::from_slice(&text)
        .map_err(|e| ApiError::NotFound(format!("The local plans list is not valid: {e}")))?;
    list.sort_by_key(|p| {
        p.get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase()
    });
    Ok(Json(Value::Array(list)))
}

#[utoipa::path(
    put,
    path = "/plans",
    tag = "plans",
    summary = "Update the local plans from the plan source",
    responses(
        (status = 200, description = "What changed (added plans under `new_recipies`)", body = Object),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Not available", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "The plan source failed", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /plans`: update the local plans from the plan source.
pub async fn update(State(_s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Err(ApiError::NotFound(
        "Updating plans from a source is not available yet.".into(),
    ))
}

#[utoipa::path(
    get,
    path = "/plan/{game}",
    tag = "plans",
    summary = "The settings a server of this game takes",
    params(("game" = String, Path, description = "Game id")),
    responses(
        (status = 200, description = "Required keys with \"\", optional keys with their default, and description", body = Object),
        (status = 401, description = "Missing or wrong X-Api-Key", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "No such plan", body = crate::api::openapi::ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /plan/<game>`: the settings a user must and may give.
pub async fn settings(
    State(s): State<AppState>,
    Path(game): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = s.service.plans().load(&game)?;
    Ok(Json(Value::Object(plans::settings_summary(
        &game,
        &loaded.plan,
    ))))
}
