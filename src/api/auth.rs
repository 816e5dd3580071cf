//! The `X-Api-Key` check: constant-time, and the offered key is never logged.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

pub const HEADER: &str = "x-api-key";

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let offered = req
        .headers()
        .get(HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = state.api_key.as_bytes();
    let ok = offered.len() == expected.len() && bool::from(offered.ct_eq(expected));
    if ok {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "rejected a request with a missing or wrong API key");
        ApiError::Unauthorized.into_response()
    }
}
