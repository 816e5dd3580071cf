//! Plans: the registry, one plan's settings, and updating from the plan source.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::plans;

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

/// `PUT /plans`: update the local plans from the plan source.
pub async fn update(State(_s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Err(ApiError::NotFound(
        "Updating plans from a source is not available yet.".into(),
    ))
}

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
