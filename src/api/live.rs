//! Live handlers: the console (a WebSocket, and the same frames as Server-Sent Events), console
//! commands, kill, a server's restart and stop options, and the event stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::dto::{ErrorBody, Success};
use super::error::ApiError;
use super::extract::ServerUid;
use super::{AppState, Body};
use crate::live::console::{Frame, Subscription, connected_json};
use crate::names::Uid;
use crate::service::{ConsoleStream, EventStream, ServerObject, ServerOptions, ServerService};

type ApiResult<T> = Result<T, ApiError>;

/// How many recent lines a console client gets unless it asks otherwise.
const REPLAY: usize = 150;
/// Keep-alive comments on idle SSE streams.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn uid(s: &str) -> ApiResult<Uid> {
    Ok(Uid::parse(s)?)
}

fn error_json(message: &str) -> String {
    Frame::Error(message.to_owned()).to_json()
}

/// What a console client gets first: `connected`, the recent lines, the current state.
fn opening_frames(uid: &Uid, sub: &mut Subscription, state: String) -> Vec<String> {
    let mut first = vec![connected_json(&uid.to_string())];
    first.extend(sub.replay.drain(..).map(|l| Frame::Log(l).to_json()));
    first.push(Frame::Status(state).to_json());
    first
}

/// The notice a console client gets when it was dropped for reading too slowly.
const TOO_SLOW: &str =
    "this console client read too slowly and was disconnected; reconnect to continue";

#[utoipa::path(
    get,
    path = "/ws/console/{uid}",
    tag = "console",
    summary = "The server's console as a WebSocket",
    description = "JSON text frames: first `{\"type\":\"connected\",\"server_uid\":...}`, then the recent lines (150) and live output as `{\"type\":\"log\",\"data\":line}`, state changes as `{\"type\":\"status\",\"data\":state}`, problems as `{\"type\":\"error\",\"message\":...}`. A text frame from the client is a console command. Authenticated by the `X-Api-Key` header.",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /ws/console/<uid>`: the console over a WebSocket.
pub async fn ws(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let console = s.service.console(&u, REPLAY)?;
    let svc = s.service.clone();
    tracing::info!(uid = %u, "console client connected (WebSocket)");
    Ok(upgrade
        .on_upgrade(move |socket| ws_session(socket, svc, console))
        .into_response())
}

async fn ws_session(socket: WebSocket, svc: Arc<ServerService>, c: ConsoleStream) {
    let (mut tx, mut rx) = socket.split();
    let ConsoleStream {
        uid,
        mut sub,
        state,
    } = c;
    for f in opening_frames(&uid, &mut sub, state) {
        if tx.send(Message::Text(f.into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            frame = sub.rx.recv() => match frame {
                Some(f) => {
                    if tx.send(Message::Text(f.to_json().into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    if sub.dropped_for_lag() {
                        let _ = tx.send(Message::Text(error_json(TOO_SLOW).into())).await;
                    }
                    let _ = tx.send(Message::Close(None)).await;
                    break;
                }
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let cmd = t.as_str().trim_end_matches(['\r', '\n']);
                    if let Err(e) = svc.command(&uid, cmd).await {
                        let _ = tx.send(Message::Text(error_json(&e.to_string()).into())).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    tracing::info!(uid = %uid, "console client disconnected");
}

#[derive(Debug, Deserialize)]
pub struct ReplayQuery {
    replay: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/server/console/{uid}",
    tag = "console",
    summary = "The server's console as Server-Sent Events",
    description = "The same JSON frames as the WebSocket console, one per event's `data`.",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`"), ("replay" = Option<usize>, Query, description = "How many recent lines first, 0-1000 (default 150)")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /server/console/<uid>?replay=N`: the console as Server-Sent Events.
pub async fn sse(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    Query(q): Query<ReplayQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let c = s
        .service
        .console(&u, q.replay.unwrap_or(REPLAY).min(1000))?;
    let ConsoleStream {
        uid,
        mut sub,
        state,
    } = c;
    let head = stream::iter(opening_frames(&uid, &mut sub, state));
    let live = stream::unfold((sub, false), |(mut sub, done)| async move {
        if done {
            return None;
        }
        match sub.rx.recv().await {
            Some(f) => Some((f.to_json(), (sub, false))),
            None if sub.dropped_for_lag() => Some((error_json(TOO_SLOW), (sub, true))),
            None => None,
        }
    });
    let events = head
        .chain(live)
        .map(|data| Ok(SseEvent::default().data(data)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// `{"command": "..."}`
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CommandBody {
    /// One console line (no newline), written to the game's stdin.
    pub command: String,
}

#[utoipa::path(
    post,
    path = "/server/command/{uid}",
    tag = "console",
    summary = "Write one command to the game's console",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    request_body(content = CommandBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Written", body = Success),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody),
        (status = 409, description = "The game is not running", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `POST /server/command/<uid>` with `{"command": "..."}`.
pub async fn command(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    body: Body,
) -> ApiResult<Json<Success>> {
    let cmd = body
        .str("command")?
        .ok_or_else(|| ApiError::BadRequest("The field command is required.".into()))?;
    s.service.command(&u, &cmd).await?;
    Ok(Json(Success::new(format!("Command sent to [{u}]."))))
}

#[utoipa::path(
    put,
    path = "/server/kill/{uid}",
    tag = "servers",
    summary = "Kill a server at once (SIGKILL), even while another action runs",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/kill/<uid>`
pub async fn kill(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
) -> ApiResult<Json<ServerObject>> {
    let kill = s.service.kill(&u);
    Ok(Json(
        s.service.acting(&super::auth::requester(), kill).await?,
    ))
}

/// `{"restart_policy": ..., "stop_grace": ...}`; either may be left out.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct OptionsBody {
    /// `never`, `on-crash` or `always`.
    pub restart_policy: Option<String>,
    /// Seconds, or a duration like `90s` or `2m` (at most 1h).
    #[schema(value_type = Option<String>)]
    pub stop_grace: Option<serde_json::Value>,
    /// Stop the game after this long with nobody playing (`30m`); `null` or `off`: never. Needs
    /// the plan's `query`.
    #[schema(value_type = Option<String>)]
    pub idle_stop: Option<serde_json::Value>,
    /// No idle stop within this long of a start (default 10m).
    #[schema(value_type = Option<String>)]
    pub idle_grace: Option<serde_json::Value>,
    /// After an idle stop, hold the game's ports and start it on the first connection.
    pub wake_on_connect: Option<bool>,
    /// Take a backup (`save`) before an idle stop.
    pub backup_before_idle_stop: Option<bool>,
    /// Cluster mode: `{"after": "60s"}` rebuilds the server on another node from its latest
    /// off-node backup once its node was down that long; `null` or `false`: off (the default).
    #[schema(value_type = Option<Object>)]
    pub failover: Option<serde_json::Value>,
}

#[utoipa::path(
    put,
    path = "/server/options/{uid}",
    tag = "servers",
    summary = "Change a server's restart policy and stop grace period",
    params(("uid" = String, Path, description = "Server uid `<game>.<name>`")),
    request_body(content = OptionsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The server", body = ServerObject),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `PUT /server/options/<uid>`
pub async fn options(
    State(s): State<AppState>,
    ServerUid(u): ServerUid,
    body: Body,
) -> ApiResult<Json<ServerObject>> {
    let o = ServerOptions {
        restart_policy: super::servers::restart_policy(&body)?,
        stop_grace: super::servers::stop_grace(&body)?,
        idle_stop: super::servers::idle_stop(&body)?,
        idle_grace: body.duration("idle_grace", super::servers::WEEK)?,
        wake_on_connect: super::servers::flag_key(&body, "wake_on_connect")?,
        backup_before_idle_stop: super::servers::flag_key(&body, "backup_before_idle_stop")?,
        failover_after: failover(&body)?,
    };
    Ok(Json(s.service.set_options(&u, o).await?))
}

/// `failover`: `{"after": "60s"}`, or `null` / `false` / `"off"` for off.
fn failover(body: &Body) -> ApiResult<Option<Option<std::time::Duration>>> {
    use serde_json::Value;
    match body.0.get("failover") {
        None => Ok(None),
        Some(Value::Null | Value::Bool(false)) => Ok(Some(None)),
        Some(Value::String(s)) if s == "off" => Ok(Some(None)),
        Some(Value::Object(o)) => {
            let inner = super::body::Body(o.clone());
            match inner.duration("after", super::servers::WEEK)? {
                Some(d) if d.as_secs() > 0 => Ok(Some(Some(d))),
                _ => Err(ApiError::BadRequest(
                    "failover needs {\"after\": <duration>}, e.g. {\"after\": \"60s\"}.".into(),
                )),
            }
        }
        Some(other) => Err(ApiError::BadRequest(format!(
            "failover [{other}] must be {{\"after\": \"60s\"}} or null."
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    uid: Option<String>,
}

#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    summary = "Every server's events as Server-Sent Events",
    description = "Each event's `data` is JSON with `type` (state, exit, restart, gave_up, ready, action), `uid`, `time` and the fields of its type. A reader that falls behind gets `{\"type\":\"lagged\",\"missed\":n}`.",
    params(("uid" = Option<String>, Query, description = "Only this server's events")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 401, description = "Missing or wrong X-Api-Key", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)
    ),
    security(("api_key" = []))
)]
/// `GET /events?uid=`
pub async fn events(
    State(s): State<AppState>,
    axum::extract::Extension(caller): axum::extract::Extension<super::auth::Caller>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let filter = q.uid.as_deref().map(uid).transpose()?;
    if let Some(u) = &filter {
        caller.require(&u.to_string())?;
    }
    let es = s.service.events(filter.as_ref())?;
    let stream = stream::unfold(
        (es, caller),
        |(mut es, caller): (EventStream, super::auth::Caller)| async move {
            loop {
                match es.rx.recv().await {
                    Ok(e) => {
                        if es.uid.as_ref().is_none_or(|u| *u == e.uid) && caller.sees(&e.uid) {
                            return Some((e.to_json(), (es, caller)));
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        return Some((
                            format!("{{\"type\":\"lagged\",\"missed\":{n}}}"),
                            (es, caller),
                        ));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    )
    .map(|data| Ok(SseEvent::default().data(data)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
