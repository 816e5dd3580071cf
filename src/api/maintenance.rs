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
pub async fn capacity(
    State(s): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
) -> Result<Json<Capacity>, ApiError> {
    let mut c = s.service.capacity().await?;
    // A scoped key sees its servers only; the totals stay the daemon's.
    c.servers.retain(|u| caller.sees(&u.uid));
    Ok(Json(c))
}
