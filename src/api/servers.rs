//! Server handlers: they turn PEON's request shapes into service calls.

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Extension, OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::Caller;
use super::dto::{
    Accepted, CreateBody, CreateV10Body, DescriptionBody, DestroyBody, ErrorBody, Logs, Success,
    TimerBody, UpdateBody,
};
use super::error::ApiError;
use super::extract::ServerUid;
use super::jobs::{self as jobs_api, WaitQuery};
use super::{AppState, Body, Loose};
use crate::model::lifecycle::{LimitsPatch, RestartPolicy, parse_limits_patch};
use crate::schedule;
use crate::service::{CreateRequest, JobKind, PlanTarget, ServerObject, UpdateMode, UpdateOptions};

type ApiResult<T> = Result<T, ApiError>;

/// The longest idle time and idle grace.
pub(super) const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[utoipa::path(
    get,
    path = "/servers",
    tag = "servers",
    summary = "All servers",
    responses(
        (status = 200, description = "All servers, sorted by game then name", body = Vec<ServerObject>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /servers`
pub async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<ServerObject>>> {
    let mut all = s.service.list().await?;
    all.retain(|o| caller.sees(&o.uid));
    Ok(Json(all))
}

#[utoipa::path(
    put,
    path = "/servers",
    tag = "servers",
    summary = "Adopt server folders and containers",
    responses(
        (status = 200, description = "All servers", body = Vec<ServerObject>),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /servers`: adopt server directories and give containers to servers without one.
pub async fn import(State(s): State<AppState>) -> ApiResult<Json<Vec<ServerObject>>> {
    Ok(Json(s.service.import().await?))
}

/// Body keys of a create request that are not plan settings.
const CREATE_KEYS: [&str; 17] = [
    "node",
    "limits",
    "idle_stop",
    "idle_grace",
    "wake_on_connect",
    "backup_before_idle_stop",
    "restart_policy",
    "stop_grace",
    "description",
    "start_later",
    "noclean",
    "interval",
    "epoch_time",
    "game_uid",
    "warcamp",
    "servername",
    "settings",
];

/// The common part of the three create forms.
fn create_request(game: &str, name: Option<String>, body: &Body) -> ApiResult<CreateRequest> {
    let settings: Map<String, Value> = body
        .0
        .iter()
        .filter(|(k, _)| !CREATE_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(CreateRequest {
        game: game.to_owned(),
        name,
        description: body.str("description")?,
        settings,
        config_files: Vec::new(),
        start_later: body.flag("start_later"),
        noclean: body.flag("noclean"),
        timer: schedule::timer_from_body(&body.0, now())?,
        restart_policy: restart_policy(body)?,
        stop_grace: stop_grace(body)?,
        idle_stop: idle_stop(body)?.flatten(),
        idle_grace: body.duration("idle_grace", WEEK)?,
        wake_on_connect: flag_key(body, "wake_on_connect")?.unwrap_or(false),
        backup_before_idle_stop: flag_key(body, "backup_before_idle_stop")?.unwrap_or(false),
        node: body.str("node")?,
        placer: None,
        limits: match body.0.get("limits") {
            None | Some(Value::Null) => Default::default(),
            Some(Value::Object(m)) => limits_patch(m)?,
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "limits must be an object: {\"memory\": \"512m\", \"cpus\": 1.5, \"pids\": 200, \"disk\": \"20g\"}.".into(),
                ));
            }
        },
    })
}

/// A `limits` object of a create or limits body.
pub(super) fn limits_patch(m: &Map<String, Value>) -> ApiResult<LimitsPatch> {
    parse_limits_patch(m).map_err(|problems| {
        ApiError::BadRequest(format!(
            "Invalid limits: {}.",
            problems
                .iter()
                .map(|(k, msg)| format!("{k} {msg}"))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}

/// `restart_policy` of a create or options body.
pub(super) fn restart_policy(body: &Body) -> ApiResult<Option<RestartPolicy>> {
    match body.str("restart_policy")? {
        None => Ok(None),
        Some(p) => RestartPolicy::parse(&p).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Unknown restart_policy [{p}]: use never, on-crash or always."
            ))
        }),
    }
}

/// `idle_stop` of a create or options body: a duration; `null`, `off` or `0` turn it off.
pub(super) fn idle_stop(body: &Body) -> ApiResult<Option<Option<std::time::Duration>>> {
    match body.0.get("idle_stop") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s == "off" => Ok(Some(None)),
        Some(_) => Ok(Some(
            body.duration("idle_stop", WEEK)?.filter(|d| !d.is_zero()),
        )),
    }
}

/// A boolean key of a body.
pub(super) fn flag_key(body: &Body, key: &str) -> ApiResult<Option<bool>> {
    match body.0.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{key} must be true or false."
        ))),
    }
}

/// `stop_grace` (seconds, or a duration like `90s`, `2m`) of a create or options body.
pub(super) fn stop_grace(body: &Body) -> ApiResult<Option<std::time::Duration>> {
    body.duration("stop_grace", std::time::Duration::from_secs(3600))
}

#[utoipa::path(
    put,
    path = "/server/create/{id}",
    tag = "servers",
    summary = "Create and start a server from a plan",
    params(("id" = String, Path, description = "`<game>.<name>`, or `<game>` for a random name"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    request_body(content = Option<CreateBody>, content_type = "application/json", description = "Optional: plan settings as flat keys (`GET /plan/<game>` lists them) plus the fields below"),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such plan", body = ErrorBody),
        (status = 409, description = "The server exists or its ports are in use", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/create/<game>[.<name>]`: PEON's create with flat settings. The parameter may
/// be a game alone (a random name is picked), so it is read as text, not as a [`ServerUid`].
pub async fn create_put(
    State(s): State<AppState>,
    Path(id): Path<String>,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> ApiResult<Response> {
    let (game, name) = match id.split_once('.') {
        Some((g, n)) => (g.to_owned(), Some(n.to_owned())),
        None => (id.clone(), None),
    };
    let req = create_request(&game, name, &body)?;
    create(&s, &uri, &w, &id, req).await
}

/// Runs a create as a job (in the background with `?wait=false`).
async fn create(
    s: &AppState,
    uri: &OriginalUri,
    w: &WaitQuery,
    id: &str,
    mut req: CreateRequest,
) -> ApiResult<Response> {
    // Cluster mode: private nodes are placed on by their own key only.
    req.placer = Some(super::auth::requester());
    let svc = s.service.clone();
    let work = async move { svc.create(req).await };
    jobs_api::run(s, uri, w, JobKind::Create, id, work).await
}

#[utoipa::path(
    post,
    path = "/server/create",
    tag = "servers",
    summary = "Create a server (the WebUI's form)",
    request_body(content = CreateBody, content_type = "application/json", description = "`game_uid` and `servername` (or `warcamp`), plan settings as flat keys, plus the fields below"),
    params(("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 409, description = "The server exists or its ports are in use", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /server/create`: the WebUI's create, with `game_uid` and `servername` in the body.
pub async fn create_post(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> ApiResult<Response> {
    let game = body
        .str("game_uid")?
        .ok_or_else(|| ApiError::BadRequest("The field game_uid is required.".into()))?;
    caller.require(&game)?;
    let name = match body.str("servername")? {
        Some(n) => Some(n),
        None => body.str("warcamp")?,
    }
    .filter(|n| !n.is_empty());
    let id = name
        .as_ref()
        .map_or(game.clone(), |n| format!("{game}.{n}"));
    let req = create_request(&game, name, &body)?;
    create(&s, &uri, &w, &id, req).await
}

/// One entry of PEON 1.0's `settings` array.
#[derive(Debug, Deserialize)]
struct Setting10 {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    content: Value,
}

#[utoipa::path(
    post,
    path = "/servers",
    tag = "servers",
    summary = "Create a server (PEON 1.0's typed settings)",
    request_body(content = CreateV10Body, content_type = "application/json", description = "PEON 1.0's create"),
    params(("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 409, description = "The server exists or its ports are in use", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /servers`: PEON 1.0's create, `settings: [{type: env|json|txt, name, content}]`.
pub async fn create_v10(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> ApiResult<Response> {
    let need = |k: &str| -> ApiResult<String> {
        body.str(k)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("The field {k} is required.")))
    };
    let game = need("game_uid")?;
    caller.require(&game)?;
    let name = need("servername")?;
    let entries: Vec<Setting10> = match body.0.get("settings") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::BadRequest(format!(
                "settings must be a list of {{type, name, content}}: {e}"
            ))
        })?,
    };
    let mut req = CreateRequest {
        game,
        name: Some(name),
        description: body.str("description")?,
        timer: schedule::timer_from_body(&body.0, now())?,
        ..Default::default()
    };
    for e in entries {
        let kind = e.kind.to_ascii_lowercase();
        if kind.contains("env") {
            match e.content {
                Value::Object(m) => req.settings.extend(m),
                v => {
                    req.settings.insert(e.name, v);
                }
            }
        } else if kind.contains("json") {
            let text = serde_json::to_vec_pretty(&e.content)
                .map_err(|err| ApiError::BadRequest(err.to_string()))?;
            req.config_files.push((e.name, text));
        } else if kind.contains("txt") {
            let text = match e.content {
                Value::String(s) => s,
                other => other.to_string(),
            };
            req.config_files.push((e.name, text.into_bytes()));
        } else {
            return Err(ApiError::BadRequest(format!(
                "Unknown setting type [{}]: use env, json or txt.",
                e.kind
            )));
        }
    }
    let id = format!("{}.{}", req.game, req.name.clone().unwrap_or_default());
    create(&s, &uri, &w, &id, req).await
}

#[utoipa::path(
    get,
    path = "/server/get/{uid}",
    tag = "servers",
    summary = "One server (also /server/info/{uid})",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/get/<uid>` (also `info`)
pub async fn get(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
) -> ApiResult<Json<ServerObject>> {
    Ok(Json(s.service.get(&uid).await?))
}

#[utoipa::path(
    get,
    path = "/server/stats/{uid}",
    tag = "servers",
    summary = "One server with its resource use",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/stats/<uid>`
pub async fn stats(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
) -> ApiResult<Json<ServerObject>> {
    Ok(Json(s.service.stats(&uid).await?))
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    lines: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/server/logs/{uid}",
    tag = "servers",
    summary = "The last lines of the server's console",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("lines" = Option<usize>, Query, description = "How many lines, 1-10000 (default 100)")),
    responses(
        (status = 200, description = "Console lines", body = Logs),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/logs/<uid>?lines=N` → `{"logs": [...]}`
pub async fn logs(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Logs>> {
    let lines = q.lines.unwrap_or(100).clamp(1, 10_000);
    let logs = s.service.logs(&uid, lines).await?;
    Ok(Json(Logs { logs }))
}

#[derive(Debug, Deserialize)]
pub struct SaveQuery {
    expires_in: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/server/save/{uid}",
    tag = "servers",
    summary = "Back up the server's files (without data/) and download the zip, or get a signed link to it",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("expires_in" = Option<u64>, Query, description = "With `Accept: application/json`: seconds the link works (1-86400, default 900)")),
    responses(
        (status = 200, description = "A zip archive; with `Accept: application/json`, a signed link to it that works without the key", content_type = "application/zip", body = super::dto::SaveLinkBody),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/save/<uid>`: a zip of the server's files without `data/`, streamed; with
/// `Accept: application/json`, `{"download_url", "expires_at"}`: a signed link to the zip that
/// works without the key until it expires (PEON's Discord bot posts it into chat).
pub async fn save(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
    Query(q): Query<SaveQuery>,
    headers: axum::http::HeaderMap,
    OriginalUri(original): OriginalUri,
) -> ApiResult<Response> {
    // Only a client that asks for JSON alone gets the link; `*/*` or `application/zip` beside
    // it (a browser's, axios' default) still gets the zip PEON's clients expect.
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.contains("application/json") && !a.contains("*/*") && !a.contains("application/zip")
        });
    if wants_json {
        let ttl = q.expires_in.unwrap_or(900);
        if !(1..=crate::service::LINK_TTL_MAX.as_secs()).contains(&ttl) {
            return Err(ApiError::BadRequest(format!(
                "expires_in [{ttl}] must be from 1 to {} seconds.",
                crate::service::LINK_TTL_MAX.as_secs()
            )));
        }
        let link = s
            .service
            .acting(
                &super::auth::requester(),
                s.service
                    .save_link(&uid, std::time::Duration::from_secs(ttl)),
            )
            .await?;
        let base = super::BASES
            .iter()
            .find(|b| original.path().starts_with(*b))
            .unwrap_or(&super::BASES[0]);
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        let expires_at = chrono::DateTime::from_timestamp(link.expires, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        return Ok(Json(super::dto::SaveLinkBody {
            download_url: format!("{scheme}://{host}{base}/{}", link.path),
            expires_at,
        })
        .into_response());
    }
    let b = s
        .service
        .acting(&super::auth::requester(), s.service.save(&uid))
        .await?;
    let file = tokio::fs::File::open(&b.path)
        .await
        .map_err(|e| ApiError::Service(e.into()))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", b.file_name))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        HttpBody::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(
    put,
    path = "/server/start/{uid}",
    tag = "servers",
    summary = "Start a server, with an optional stop timer",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    request_body(content = Option<TimerBody>, content_type = "application/json", description = "Optional stop timer"),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/start/<uid>` with an optional `interval` / `epoch_time` stop timer.
pub async fn start(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> ApiResult<Response> {
    let timer = schedule::timer_from_body(&body.0, now())?;
    s.service.record(&u)?;
    let options = crate::service::timer_options(timer.as_ref());
    let (svc, id) = (s.service.clone(), u.to_string());
    let work = async move { svc.start(&u, timer).await };
    jobs_api::run_with(&s, &uri, &w, JobKind::Start, &id, options, work).await
}

#[utoipa::path(
    put,
    path = "/server/stop/{uid}",
    tag = "servers",
    summary = "Stop a server now, or later with a timer",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    request_body(content = Option<TimerBody>, content_type = "application/json", description = "Optional: stop later instead of now"),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/stop/<uid>`: now, or at the time given by `interval` / `epoch_time`.
pub async fn stop(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> ApiResult<Response> {
    let timer = schedule::timer_from_body(&body.0, now())?;
    s.service.record(&u)?;
    let options = crate::service::timer_options(timer.as_ref());
    let (svc, id) = (s.service.clone(), u.to_string());
    let work = async move { svc.stop(&u, timer).await };
    jobs_api::run_with(&s, &uri, &w, JobKind::Stop, &id, options, work).await
}

#[utoipa::path(
    put,
    path = "/server/restart/{uid}",
    tag = "servers",
    summary = "Restart a server",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/restart/<uid>`
pub async fn restart(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    body: Body,
) -> ApiResult<Response> {
    s.service.record(&u)?;
    let when_empty = schedule::WhenEmpty::parse(body.0.get("when_empty"))
        .map_err(crate::service::ServiceError::from)?;
    let options = crate::service::restart_options(when_empty.as_ref());
    let (svc, id) = (s.service.clone(), u.to_string());
    let work = async move {
        match when_empty {
            Some(we) => svc.restart_when_empty(&u, &we).await,
            None => svc.restart(&u).await,
        }
    };
    jobs_api::run_with(&s, &uri, &w, JobKind::Restart, &id, options, work).await
}

#[utoipa::path(
    put,
    path = "/server/description/{uid}",
    tag = "servers",
    summary = "Set a server's description",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    request_body(content = DescriptionBody, content_type = "application/json", description = "The new description"),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/description/<uid>` with `{"description": str}`
pub async fn description(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    Loose(body): Loose<DescriptionBody>,
) -> ApiResult<Json<ServerObject>> {
    Ok(Json(s.service.describe(&u, &body.description).await?))
}

#[utoipa::path(
    put,
    path = "/server/skip/{uid}",
    tag = "servers",
    summary = "Do nothing and return the server (PEON)",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/skip/<uid>`: does nothing and returns the server (PEON).
pub async fn skip(
    State(s): State<AppState>,
    ServerUid(uid): ServerUid,
) -> ApiResult<Json<ServerObject>> {
    Ok(Json(s.service.get(&uid).await?))
}

#[utoipa::path(
    put,
    path = "/server/update/{uid}",
    tag = "servers",
    summary = "Update a server's image and/or game",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    request_body(content = Option<UpdateBody>, content_type = "application/json", description = "Optional; mode defaults to full"),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "The plan version asked for is not available, or the server lacks a setting it requires", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/update/<uid>` with `{"mode": ...}` (default `full`).
pub async fn update(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    Loose(body): Loose<UpdateBody>,
) -> ApiResult<Response> {
    let mode = UpdateMode::parse(body.mode.as_deref().unwrap_or("full"))?;
    s.service.record(&u)?;
    let when_empty = body.when_empty;
    let (svc, id) = (s.service.clone(), u.to_string());
    let opts = UpdateOptions {
        watch: body.watch,
        plan: body.plan_version.map(PlanTarget::Version),
        ..UpdateOptions::default()
    };
    let options = crate::service::update_options(mode, &opts, when_empty.as_ref());
    let work = async move {
        match when_empty {
            Some(we) => svc.update_when_empty(&u, mode, opts, &we).await,
            None => svc.update(&u, mode, opts).await,
        }
    };
    jobs_api::run_with(&s, &uri, &w, JobKind::Update, &id, options, work).await
}

#[utoipa::path(
    delete,
    path = "/server/destroy/{uid}",
    tag = "servers",
    summary = "Remove the container and network (and the files with eradicate)",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    request_body(content = Option<DestroyBody>, content_type = "application/json", description = "Optional; eradicate defaults to false"),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "Done", body = Success),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /server/destroy/<uid>`: container and network go; `{"eradicate": true}` also
/// deletes the files.
pub async fn destroy(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    Loose(body): Loose<DestroyBody>,
) -> ApiResult<Response> {
    destroy_job(&s, &uri, &w, u, body.eradicate).await
}

/// Runs a destroy as a job (in the background with `?wait=false`).
async fn destroy_job(
    s: &AppState,
    uri: &OriginalUri,
    w: &WaitQuery,
    u: crate::names::Uid,
    eradicate: bool,
) -> ApiResult<Response> {
    s.service.record(&u)?;
    let kind = if eradicate {
        JobKind::Eradicate
    } else {
        JobKind::Destroy
    };
    let (svc, id) = (s.service.clone(), u.to_string());
    let work = async move { svc.destroy(&u, eradicate).await.map(Success::new) };
    jobs_api::run(s, uri, w, kind, &id, work).await
}

#[utoipa::path(
    delete,
    path = "/server/eradicate/{uid}",
    tag = "servers",
    summary = "Remove the server with all its files (needs eradicate: true)",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("wait" = Option<bool>, Query, description = "`false`: answer 202 at once and run the action as a background job")),
    request_body(content = DestroyBody, content_type = "application/json", description = "Must be {\"eradicate\": true}"),
    responses(
        (status = 202, description = "With `?wait=false`: accepted, running as a job", body = Accepted),
        (status = 200, description = "Done", body = Success),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `DELETE /server/eradicate/<uid>` with `{"eradicate": true}`: container, network and files.
pub async fn eradicate(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    uri: OriginalUri,
    Query(w): Query<WaitQuery>,
    Loose(body): Loose<DestroyBody>,
) -> ApiResult<Response> {
    if !body.eradicate {
        return Err(ApiError::BadRequest(format!(
            "Eradicating [{u}] deletes all its files: confirm with {{\"eradicate\": true}}."
        )));
    }
    destroy_job(&s, &uri, &w, u, true).await
}

/// Any other `/server/<action>/<uid>`.
pub async fn unsupported(Path((action, _id)): Path<(String, String)>) -> ApiError {
    ApiError::BadRequest(format!(
        "Unsupported action [{action}]. Supported: get, info, stats, logs, save, console (GET); create, start, stop, restart, kill, options, description, skip, update (PUT); command (POST); destroy, eradicate (DELETE); schedules (GET, POST)."
    ))
}
