//! PEON's maintenance views: disk use of the servers and their images.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::dto::ErrorBody;
use super::error::ApiError;
use crate::service::Capacity;

/// `GET /capacity`: disk used by each server's folder, backups, plans and the images in use.
#[utoipa::path(
    get,
    path = "/capacity",
    tag = "maintenance",
    responses(
        (status = 200, description = "Disk use", body = Capacity),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn capacity(State(s): State<AppState>) -> Result<Json<Capacity>, ApiError> {
    Ok(Json(s.service.capacity().await?))
}
