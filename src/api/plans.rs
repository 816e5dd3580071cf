//! Plans: the registry, one plan's settings, and updating from the plan source.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::plans;

/// `GET /plans`: the registry sorted by title without regard to case, plus the plan folders
/// missing from it (`in_registry: false`).
pub async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = s.service.plans().clone();
    let dir = store.dir().to_owned();
    let list = tokio::task::spawn_blocking(move || store.listing())
        .await
        .map_err(|e| plans::PlanError::Io {
            game: "*".into(),
            path: dir,
            reason: format!("the listing task failed: {e}"),
        })??;
    Ok(Json(Value::Array(list)))
}

/// `PUT /plans`: update the local plans from the plan source; answers what was added (also as
/// PEON's `new_recipies`), removed and changed.
pub async fn update(State(s): State<AppState>) -> Result<Json<plans::UpdateReport>, ApiError> {
    Ok(Json(s.service.plans().update().await?))
}

#[derive(Debug, Deserialize)]
pub struct PlanQuery {
    full: Option<String>,
}

/// `GET /plan/<game>`: the settings a user must and may give; with `?full=true` the whole plan
/// (ports, volumes, files, image, actions) as well.
pub async fn settings(
    State(s): State<AppState>,
    Path(game): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    let loaded = s.service.plans().load(&game)?;
    let full = q
        .full
        .as_deref()
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    if full {
        return Ok(Json(plans::full_view(&game, &loaded)));
    }
    Ok(Json(Value::Object(plans::settings_summary(
        &game,
        &loaded.plan,
    ))))
}
