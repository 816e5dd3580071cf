//! Job handlers: the job history (`GET /jobs`, `GET /job/{id}`), and how a long action is
//! answered: at once with `202` and its job when called with `?wait=false`, else when done.

use std::future::Future;

use axum::Json;
use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::dto::{Accepted, ErrorBody};
use super::error::ApiError;
use super::{AppState, BASES};
use crate::service::{Job, JobFilter, JobKind, JobState, PendingOptions};

type ApiResult<T> = Result<T, ApiError>;

/// `?wait=false` on a long action.
#[derive(Debug, Default, Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

impl WaitQuery {
    /// True when the client asked not to wait.
    fn background(&self) -> ApiResult<bool> {
        match self.wait.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "true" | "1" | "yes") => Ok(false),
            Some("false" | "0" | "no") => Ok(true),
            Some(o) => Err(ApiError::BadRequest(format!(
                "wait [{o}] must be true or false."
            ))),
        }
    }
}

/// Runs a long action as a job of `kind` on `uid`: in the background with `?wait=false`
/// (`202`, `{"status":"accepted","job_id":...}`, `Location: <base>/job/<id>`), else now,
/// answering what it returns.
pub(super) async fn run<T, F>(
    s: &AppState,
    uri: &OriginalUri,
    wait: &WaitQuery,
    kind: JobKind,
    uid: &str,
    work: F,
) -> ApiResult<Response>
where
    T: Serialize + Send + 'static,
    F: Future<Output = crate::service::Result<T>> + Send + 'static,
{
    run_with(s, uri, wait, kind, uid, PendingOptions::default(), work).await
}

/// [`run`] for an action with options: when it has to wait for its server's node, the
/// pending change keeps `options`, so that it is carried out as asked after a daemon restart.
pub(super) async fn run_with<T, F>(
    s: &AppState,
    uri: &OriginalUri,
    wait: &WaitQuery,
    kind: JobKind,
    uid: &str,
    options: PendingOptions,
    work: F,
) -> ApiResult<Response>
where
    T: Serialize + Send + 'static,
    F: Future<Output = crate::service::Result<T>> + Send + 'static,
{
    let background = wait.background()?;
    // Cluster mode: an action on a server whose node is unreachable waits for it, queued.
    if let Ok(u) = crate::names::Uid::parse(uid)
        && s.service.is_unreachable(&u)
    {
        let work = async move { work.await.map(|_| ()) };
        let job = s
            .service
            .queue_pending(&super::auth::requester(), kind, &u, options, work)
            .await?;
        return accepted(uri, job);
    }
    if !background {
        let v = s.service.acting(&super::auth::requester(), work).await?;
        return Ok(Json(v).into_response());
    }
    let job = s
        .service
        .detach(&super::auth::requester(), kind, uid, work)
        .await;
    accepted(uri, job)
}

/// `202` with the job: `{"status":"accepted","job_id":...}`, `Location: <base>/job/<id>`.
fn accepted(uri: &OriginalUri, job: Job) -> ApiResult<Response> {
    let base = BASES
        .iter()
        .find(|b| uri.path().starts_with(*b))
        .unwrap_or(&BASES[0]);
    let location = HeaderValue::from_str(&format!("{base}/job/{}", job.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Accepted {
            status: "accepted",
            job_id: job.id,
        }),
    )
        .into_response())
}

/// `GET /jobs` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only this server's jobs.
    uid: Option<String>,
    /// `queued`, `running`, `succeeded` or `failed`.
    state: Option<String>,
    /// `create`, `start`, `stop`, `restart`, `kill`, `update`, `destroy`, `eradicate`, `backup`, `restore`, `move`, `failover`.
    kind: Option<String>,
    /// At most this many (the newest).
    limit: Option<String>,
}

impl JobsQuery {
    fn filter(&self) -> ApiResult<JobFilter> {
        let state = match self.state.as_deref() {
            None | Some("") => None,
            Some(v) => Some(JobState::parse(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Unknown job state [{v}]: use queued, running, succeeded or failed."
                ))
            })?),
        };
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(v) => Some(JobKind::parse(v).ok_or_else(|| {
                let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
                ApiError::BadRequest(format!("Unknown job kind [{v}]: use {}.", all.join(", ")))
            })?),
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("limit [{v}] must be a positive number."))
            })?),
        };
        Ok(JobFilter {
            uid: self.uid.clone().filter(|u| !u.is_empty()),
            state,
            kind,
            limit,
        })
    }
}

#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    summary = "The job history, newest first",
    params(JobsQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Job>),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /jobs?uid=&state=&kind=&limit=`
pub async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Json<Vec<Job>>> {
    let mut jobs = s.service.jobs(&q.filter()?);
    jobs.retain(|j| caller.sees(&j.uid));
    Ok(Json(jobs))
}

#[utoipa::path(
    get,
    path = "/job/{id}",
    tag = "jobs",
    summary = "One job with its steps",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such job (`job.notfound`)", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /job/<id>`
pub async fn get(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    let job = s.service.job(&id)?;
    caller.require(&job.uid)?;
    Ok(Json(job))
}
