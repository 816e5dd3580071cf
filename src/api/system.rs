//! Health and the orchestrator's own description.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::dto::{ErrorBody, Health, Orchestrator};

/// The daemon's version: `VERSION` from the environment (set in the image), else the crate's.
pub fn version() -> String {
    std::env::var("VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    summary = "Liveness and whether the Docker engine answers (no key; also at /health)",
    responses((status = 200, description = "The daemon answers", body = Health))
)]
/// `GET /health`: no key needed; says whether the engine answers.
pub async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: version(),
        docker: s.service.engine_status().await.reachable,
    })
}

#[utoipa::path(
    get,
    path = "/orchestrator",
    tag = "system",
    summary = "The daemon's version, instance, engine and server count",
    responses(
        (status = 200, description = "About the daemon", body = Orchestrator),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /orchestrator`: PEON's `{"version"}`, plus the engine and server counts.
pub async fn orchestrator(State(s): State<AppState>) -> Json<Orchestrator> {
    Json(Orchestrator {
        version: version(),
        instance: s.service.instance().to_owned(),
        servers: s.service.server_count(),
        engine: s.service.engine_status().await,
    })
}
