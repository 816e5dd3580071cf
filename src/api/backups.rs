//! Backup handlers: take, list, download, delete and restore whole-server backups, set a
//! server's retention, and serve `save` zips through signed links (no key).

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::dto::{ErrorBody, Success};
use super::error::ApiError;
use super::extract::ServerUid;
use super::jobs::{self as jobs_api, WaitQuery};
use super::{AppState, Body};
use crate::names::Uid;
use crate::service::{Backup, BackupInfo, BackupPolicy, BackupReason, JobKind, ServerObject};

type ApiResult<T> = Result<T, ApiError>;

#[utoipa::path(
    post,
    path = "/server/backup/{uid}",
    tag = "backups",
    summary = "Back up the whole server folder (world data included) as a tar.zst",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    responses(
        (status = 200, description = "The new backup", body = BackupInfo),
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = super::dto::Accepted),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 502, description = "The game did not confirm its save", body = ErrorBody),
        (status = 507, description = "Not enough free space (`backup.nospace`)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /server/backup/<uid>`
pub async fn create(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
) -> ApiResult<Response> {
    s.service.record(&uid)?;
    let (svc, id) = (s.service.clone(), uid.to_string());
    let work = async move { svc.backup(&uid, BackupReason::Manual).await };
    jobs_api::run(&s, &uri, &w, JobKind::Backup, &id, work).await
}

#[utoipa::path(
    get,
    path = "/server/backups/{uid}",
    tag = "backups",
    summary = "The server's backups, oldest first",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    responses(
        (status = 200, description = "Backups", body = Vec<BackupInfo>),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/backups/<uid>`
pub async fn list(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
) -> ApiResult<Json<Vec<BackupInfo>>> {
    Ok(Json(s.service.backups(&uid).await?))
}

#[utoipa::path(
    get,
    path = "/server/backup/{uid}/{id}",
    tag = "backups",
    summary = "Download one backup (tar.zst)",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("id" = String, Path, description = "The backup's id")),
    responses(
        (status = 200, description = "The archive; its sha256 in `X-Backup-Sha256`", content_type = "application/zstd"),
        (status = 404, description = "No such server or backup", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/backup/<uid>/<id>`: the archive, streamed.
pub async fn download(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (info, stream) = s.service.open_backup(&uid, &id).await?;
    let name = format!("{uid}-{}.tar.zst", info.id);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let sha = HeaderValue::from_str(&info.sha256).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zstd"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, HeaderValue::from(info.bytes)),
        ],
        [("x-backup-sha256", sha)],
        HttpBody::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/server/backup/{uid}/{id}",
    tag = "backups",
    summary = "Delete one backup",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("id" = String, Path, description = "The backup's id")),
    responses(
        (status = 200, description = "Deleted", body = Success),
        (status = 404, description = "No such server or backup", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /server/backup/<uid>/<id>`
pub async fn delete(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Success>> {
    let b = s.service.delete_backup(&uid, &id).await?;
    Ok(Json(Success::new(format!(
        "Backup {} of {uid} was deleted.",
        b.id
    ))))
}

#[utoipa::path(
    post,
    path = "/server/restore/{uid}/{id}",
    tag = "backups",
    summary = "Restore a backup: unpack, verify and sync, stop, safety backup, swap, start again",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("id" = String, Path, description = "The backup's id"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    responses(
        (status = 200, description = "The server after the restore", body = ServerObject),
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = super::dto::Accepted),
        (status = 404, description = "No such server or backup", body = ErrorBody),
        (status = 500, description = "The restore failed (e.g. a checksum mismatch); the server is as it was", body = ErrorBody),
        (status = 507, description = "Not enough free space (`backup.nospace`)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /server/restore/<uid>/<id>`
pub async fn restore(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Path((_, id)): Path<(String, String)>,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
) -> ApiResult<Response> {
    s.service.backup_info(&uid, &id).await?;
    let (svc, sid) = (s.service.clone(), uid.to_string());
    let work = async move { svc.restore(&uid, &id).await };
    jobs_api::run(&s, &uri, &w, JobKind::Restore, &sid, work).await
}

#[utoipa::path(
    put,
    path = "/server/backup-policy/{uid}",
    tag = "backups",
    summary = "Set the server's backup retention (an empty body restores the default)",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    request_body(content = Option<BackupPolicy>, content_type = "application/json", description = "The retention rules, plus an optional `target`: `local`, `s3` or `default`"),
    responses(
        (status = 200, description = "The server, with its `backup_policy`", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/backup-policy/<uid>` with `{"keep_last": N, "keep_daily": N, "keep_weekly": N,
/// "target": "local"|"s3"|"default"}`.
pub async fn policy(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    body: Body,
) -> ApiResult<Json<ServerObject>> {
    let count = |k: &str| -> ApiResult<Option<u32>> {
        match body.0.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n <= 10_000)
                .map(|n| Some(n as u32))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{k} must be a whole number from 0 to 10000."))
                }),
        }
    };
    if let Some(k) = body
        .0
        .keys()
        .find(|k| !["keep_last", "keep_daily", "keep_weekly", "target"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "Unknown field [{k}]: use keep_last, keep_daily, keep_weekly, target."
        )));
    }
    let p = BackupPolicy {
        keep_last: count("keep_last")?,
        keep_daily: count("keep_daily")?,
        keep_weekly: count("keep_weekly")?,
    };
    let target = body.str("target")?;
    Ok(Json(s.service.set_backup_policy(&uid, p, target).await?))
}

/// `?expires=&sig=` of a signed link.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    expires: Option<i64>,
    sig: Option<String>,
}

#[utoipa::path(
    get,
    path = "/link/save/{uid}/{file}",
    tag = "backups",
    summary = "Download a save zip through a signed link (no API key)",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("file" = String, Path, description = "The zip's name"), ("expires" = i64, Query, description = "Unix seconds"), ("sig" = String, Query, description = "The link's signature")),
    responses(
        (status = 200, description = "A zip archive", content_type = "application/zip"),
        (status = 403, description = "The signature is wrong (`auth.forbidden`)", body = ErrorBody),
        (status = 404, description = "The zip no longer exists", body = ErrorBody),
        (status = 410, description = "The link expired (`link.expired`)", body = ErrorBody)
    )
)]
/// `GET /link/save/<uid>/<file>?expires=&sig=`: public by signature.
pub async fn link(
    State(s): State<AppState>,
    Path((raw_uid, file)): Path<(String, String)>,
    Query(q): Query<LinkQuery>,
) -> ApiResult<Response> {
    let uid = Uid::parse(&raw_uid)?;
    let b: Backup = s.service.open_save_link(
        &uid,
        &file,
        q.expires.unwrap_or(0),
        q.sig.as_deref().unwrap_or(""),
    )?;
    stream_file(&b.path, &b.file_name, "application/zip", None).await
}

/// Streams a file as an attachment.
pub(super) async fn stream_file(
    path: &std::path::Path,
    name: &str,
    content_type: &'static str,
    sha256: Option<&str>,
) -> ApiResult<Response> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ApiError::Service(e.into()))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::Service(e.into()))?
        .len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut res = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
        ],
        HttpBody::from_stream(stream),
    )
        .into_response();
    if let Some(h) = sha256.and_then(|h| HeaderValue::from_str(h).ok()) {
        res.headers_mut().insert("x-backup-sha256", h);
    }
    Ok(res)
}
