//! `GET /metrics` (Prometheus text format) and the counting of every API request by route
//! template. See [`crate::metrics`] for what is measured.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::dto::ErrorBody;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    summary = "Prometheus metrics: servers, requests, jobs, backups, the engine connection",
    description = "Also served without the key on the `--metrics-listen` address, when set.",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /metrics`: every metric, read from memory (no engine call).
pub async fn scrape(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        s.service.metrics_text(),
    )
        .into_response()
}

/// Counts a request and its latency under its route template (without the base path;
/// `unmatched` when no route matched).
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| super::auth::relative(m.as_str()))
        .to_owned();
    let res = next.run(req).await;
    s.service.metrics().request(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}
