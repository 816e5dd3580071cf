//! Plans: the registry, one plan's settings, and updating from the plan source.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::dto::{ErrorBody, PlanEntry};
use super::error::ApiError;
use crate::plans;

#[utoipa::path(
    get,
    path = "/plans",
    tag = "plans",
    summary = "The plans registry, sorted by title",
    responses(
        (status = 200, description = "Plans", body = Vec<PlanEntry>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No local plans list", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /plans`: the registry sorted by title without regard to case, plus the plan folders
/// missing from it (`in_registry: false`).
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<PlanEntry>>, ApiError> {
    let list = s.service.plan_listing().await?;
    Ok(Json(list.into_iter().map(PlanEntry).collect()))
}

#[utoipa::path(
    put,
    path = "/plans",
    tag = "plans",
    summary = "Update the local plans from the plan source",
    responses(
        (status = 200, description = "What changed (added plans under `new_recipies`)", body = Object),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
                (status = 502, description = "The plan source failed", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /plans`: update the local plans from the plan source; answers what was added (also as
/// PEON's `new_recipies`), removed and changed.
pub async fn update(State(s): State<AppState>) -> Result<Json<plans::UpdateReport>, ApiError> {
    Ok(Json(s.service.update_plans_from_source().await?))
}

#[derive(Debug, Deserialize)]
pub struct PlanQuery {
    full: Option<String>,
}

#[utoipa::path(
    get,
    path = "/plan/{game}",
    tag = "plans",
    summary = "The settings a server of this game takes",
    params(("game" = String, Path, description = "Game id"), ("full" = Option<String>, Query, description = "true: the whole plan")),
    responses(
        (status = 200, description = "Required keys with \"\", optional keys with their default, and description", body = Object),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such plan", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /plan/<game>`: the settings a user must and may give; with `?full=true` the whole plan
/// (ports, volumes, files, image, actions) as well.
pub async fn settings(
    State(s): State<AppState>,
    Path(game): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    let full = q
        .full
        .as_deref()
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    if full {
        return Ok(Json(s.service.plan_full(&game)?));
    }
    Ok(Json(Value::Object(s.service.plan_settings(&game)?)))
}
