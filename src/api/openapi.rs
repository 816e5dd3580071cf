//! The OpenAPI 3 document of the API, generated from the handlers' `#[utoipa::path]`
//! attributes and the response types. Served without the key at `{base}/openapi.json` (PEON's
//! WebUI fetches it before it has a key); `peon openapi` prints it and `docs/openapi.json` is
//! checked to be current by a test.
//!
//! The request and answer shapes below that handlers build with `json!` are described here
//! for the document only.

use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{live, maintenance, plans, schedules, servers, system};
use crate::service::{Capacity, ImageUsage, ServerObject, ServerUsage, StatsView};

/// Every error: `{"status": "error", "info": ..., "err_code": ...}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    pub status: String,
    /// What went wrong, for people.
    pub info: String,
    /// A stable code: `req.invalid`, `auth.denied`, `srv.notfound`, `srv.exists`,
    /// `srv.portsused`, `srv.failed`, `plan.notfound`, `plan.invalid`, `docker.unavailable`, ...
    pub err_code: String,
}

/// `{"status": "success", "info": ...}`.
#[derive(Serialize, ToSchema)]
pub struct SuccessBody {
    pub status: String,
    pub info: String,
}

/// PEON's stop timer fields; give at most one.
#[derive(Serialize, ToSchema)]
pub struct TimerBody {
    /// Stop after this long: `30s`, `10m`, `2h`, `1d`, compounds such as `1h30m`.
    pub interval: Option<String>,
    /// Stop at this Unix time: 10 digits, a string or a number.
    #[schema(value_type = Option<String>)]
    pub epoch_time: Option<Value>,
}

/// A create request: plan settings as flat keys (e.g. `"SERVER_NAME": "Alpha"`) plus these.
#[derive(Serialize, ToSchema)]
pub struct CreateBody {
    pub description: Option<String>,
    /// Create the server stopped.
    pub start_later: Option<bool>,
    pub interval: Option<String>,
    #[schema(value_type = Option<String>)]
    pub epoch_time: Option<Value>,
    /// `POST /server/create` only: the game.
    pub game_uid: Option<String>,
    /// `POST /server/create` only: the server name (also `warcamp`).
    pub servername: Option<String>,
}

/// PEON 1.0's create (`POST /servers`).
#[derive(Serialize, ToSchema)]
pub struct CreateV10Body {
    pub game_uid: String,
    pub servername: String,
    pub description: Option<String>,
    /// `[{"type": "env"|"json"|"txt", "name": ..., "content": ...}]`
    #[schema(value_type = Option<Vec<Object>>)]
    pub settings: Option<Value>,
}

/// `{"mode": ...}` for update.
#[derive(Serialize, ToSchema)]
pub struct UpdateBody {
    /// `full` (default, also `all`), `image` (`container`), `server` (`game`), `reinit`.
    pub mode: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DescriptionBody {
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct DestroyBody {
    /// Also delete the server's files (required as `true` by eradicate).
    pub eradicate: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct LogsBody {
    pub logs: Vec<String>,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// Whether the Docker engine answers.
    pub docker: bool,
}

/// `GET /orchestrator`.
#[derive(Serialize, ToSchema)]
pub struct Orchestrator {
    pub version: String,
    pub instance: String,
    /// Number of servers.
    pub servers: usize,
    /// `{"reachable": true, "version", "api_version", "os"}` or `{"reachable": false, "error"}`.
    #[schema(value_type = Object)]
    pub engine: Value,
}

/// `POST /server/schedules/<uid>`: give `cron` or `at`.
#[derive(Serialize, ToSchema)]
pub struct ScheduleBody {
    /// `start`, `stop` or `restart`.
    pub action: String,
    /// 5 or 6 fields (seconds optional), in the daemon's time zone, e.g. `0 18 * * FRI`.
    pub cron: Option<String>,
    /// Once: RFC 3339 or Unix seconds.
    #[schema(value_type = Option<String>)]
    pub at: Option<Value>,
}

/// One entry of `GET /plans`.
#[derive(Serialize, ToSchema)]
pub struct PlanEntry {
    pub game_uid: String,
    pub title: String,
    pub plan_url: Option<String>,
}

/// Adds the `X-Api-Key` scheme.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "peon",
        description = "A game-server orchestrator compatible with PEON. Every route is served under `/api/1.0` and `/api/v1`; all but `/health` and `/openapi.json` need the `X-Api-Key` header. Errors have the shape `ErrorBody`."
    ),
    servers((url = "/api/1.0"), (url = "/api/v1")),
    paths(
        system::health,
        system::orchestrator,
        servers::list,
        servers::import,
        servers::create_v10,
        servers::create_post,
        servers::create_put,
        servers::get,
        servers::stats,
        servers::logs,
        servers::save,
        servers::start,
        servers::stop,
        servers::restart,
        servers::description,
        servers::skip,
        servers::update,
        servers::destroy,
        servers::eradicate,
        live::kill,
        live::options,
        live::command,
        live::sse,
        live::ws,
        live::events,
        plans::list,
        plans::update,
        plans::settings,
        maintenance::capacity,
        schedules::list,
        schedules::add,
        schedules::remove,
        schedules::all,
    ),
    components(schemas(
        ServerObject, StatsView, Capacity, ServerUsage, ImageUsage, ErrorBody, SuccessBody,
        TimerBody, CreateBody, CreateV10Body, UpdateBody, DescriptionBody, DestroyBody,
        LogsBody, Health, Orchestrator, PlanEntry, ScheduleBody, live::CommandBody, live::Done,
        live::OptionsBody, crate::live::Event, crate::live::ExitRecord
    )),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "system", description = "Health and the daemon itself"),
        (name = "servers", description = "Game servers"),
        (name = "plans", description = "Game plans"),
        (name = "maintenance", description = "Resource and disk use"),
        (name = "schedules", description = "Timers and recurring schedules"),
        (name = "console", description = "The live console of a game"),
        (name = "events", description = "What happens to servers, as it happens"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON with the daemon's version.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!("cannot serialize the OpenAPI document: {e}");
        "{}".to_owned()
    })
}

/// `GET /openapi.json` (no key needed).
pub async fn serve() -> Json<Value> {
    Json(serde_json::from_str(&document()).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_the_routes_and_the_key() {
        let doc: Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        for p in [
            "/servers",
            "/server/create/{id}",
            "/server/logs/{uid}",
            "/plan/{game}",
            "/capacity",
            "/health",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["api_key"]["name"],
            "X-Api-Key"
        );
        assert!(doc["components"]["schemas"].get("ServerObject").is_some());
    }

    /// `docs/openapi.json` is the generated document. To refresh it after an API change:
    /// `cargo run -- openapi --output docs/openapi.json`.
    #[test]
    fn docs_openapi_json_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == document() + "\n",
            "docs/openapi.json is stale: run `cargo run -- openapi --output docs/openapi.json`"
        );
    }
}
