//! Key and audit handlers (admin only, see [`super::ROUTE_CLASSES`]): `GET /keys`,
//! `POST /keys`, `DELETE /key/{name}`, `GET /audit`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::dto::{AuditInfo, ErrorBody, KeyBody, KeyInfo, KeyScope, NewKeyInfo, Success};
use super::error::ApiError;
use crate::access::{AuditEntry, AuditQuery, KeyView, Scope};

type ApiResult<T> = Result<T, ApiError>;

/// Entries `GET /audit` returns when no limit is given, and at most.
const AUDIT_LIMIT: usize = 100;
const AUDIT_MAX: usize = 10_000;

fn info(k: KeyView) -> KeyInfo {
    KeyInfo {
        name: k.name,
        role: k.role.as_str().to_owned(),
        scope: k.scope.map(|s| KeyScope {
            games: s.games,
            uids: s.uids,
        }),
        created: k.created,
        configured: k.configured,
    }
}

#[utoipa::path(
    get,
    path = "/keys",
    tag = "access",
    summary = "The API keys (admin)",
    responses(
        (status = 200, description = "Every key, the configured one first; never a secret", body = Vec<KeyInfo>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /keys`
pub async fn list(State(s): State<AppState>) -> Json<Vec<KeyInfo>> {
    Json(s.service.list_keys().into_iter().map(info).collect())
}

#[utoipa::path(
    post,
    path = "/keys",
    tag = "access",
    summary = "Create a named key (admin); its secret is shown once",
    request_body = KeyBody,
    responses(
        (status = 201, description = "The key and its secret", body = NewKeyInfo),
        (status = 400, description = "Invalid name, role or scope", body = ErrorBody),
        (status = 409, description = "A key of that name exists", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /keys`
pub async fn create(
    State(s): State<AppState>,
    body: super::Body,
) -> ApiResult<(StatusCode, Json<NewKeyInfo>)> {
    let b: KeyBody = serde_json::from_value(serde_json::Value::Object(body.0))
        .map_err(|e| ApiError::BadRequest(format!("Invalid key request: {e}")))?;
    let scope = b.scope.map(|s| Scope {
        games: s.games,
        uids: s.uids,
    });
    let new = s.service.create_key(&b.name, &b.role, scope).await?;
    tracing::info!(key = %new.key.name, role = %new.key.role, "created an API key");
    Ok((
        StatusCode::CREATED,
        Json(NewKeyInfo {
            key: info(new.key),
            secret: new.secret,
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/key/{name}",
    tag = "access",
    summary = "Revoke a named key (admin), effective at once",
    params(("name" = String, Path, description = "The key's name")),
    responses(
        (status = 200, description = "Revoked", body = Success),
        (status = 400, description = "The configured admin key, or an invalid name", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /key/{name}`
pub async fn revoke(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Success>> {
    s.service.revoke_key(&name).await?;
    tracing::info!(key = %name, "revoked an API key");
    Ok(Json(Success::new(format!("The key [{name}] is revoked."))))
}

/// `GET /audit` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditParams {
    /// Only entries at or after this time (RFC 3339, or Unix seconds).
    pub since: Option<String>,
    /// Only entries of this server uid.
    pub uid: Option<String>,
    /// Only entries of this key name.
    pub key: Option<String>,
    /// At most this many entries (default 100, at most 10000).
    pub limit: Option<usize>,
}

fn parse_since(s: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    if let Ok(n) = s.parse::<i64>() {
        return chrono::DateTime::from_timestamp(n, 0)
            .ok_or_else(|| ApiError::BadRequest(format!("since [{s}] is out of range")));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "since [{s}] is neither RFC 3339 (2026-01-31T12:00:00Z) nor Unix seconds"
            ))
        })
}

fn audit_info(e: AuditEntry) -> AuditInfo {
    AuditInfo {
        time: e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        key: e.key,
        addr: e.addr,
        method: e.method,
        route: e.route,
        uid: e.uid,
        status: e.status,
        job_id: e.job_id,
    }
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "access",
    summary = "The audit log of mutating requests, newest first (admin)",
    params(AuditParams),
    responses(
        (status = 200, description = "Matching entries, newest first", body = Vec<AuditInfo>),
        (status = 400, description = "Invalid since", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /audit`
pub async fn audit(
    State(s): State<AppState>,
    Query(p): Query<AuditParams>,
) -> ApiResult<Json<Vec<AuditInfo>>> {
    let q = AuditQuery {
        since: p.since.as_deref().map(parse_since).transpose()?,
        uid: p.uid,
        key: p.key,
        limit: p.limit.unwrap_or(AUDIT_LIMIT).clamp(1, AUDIT_MAX),
    };
    let entries = s.service.audit(q).await?;
    Ok(Json(entries.into_iter().map(audit_info).collect()))
}
