//! The OpenAPI 3 document of the API, generated from the handlers' `#[utoipa::path]`
//! attributes and the response types. Served without the key at `{base}/openapi.json` (PEON's
//! WebUI fetches it before it has a key); `peon openapi` prints it and `docs/openapi.json` is
//! checked to be current by a test.
//! The request and answer types are in [`super::dto`] and the service.

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto::{
    Accepted, AllSchedules, CreateBody, CreateV10Body, DescriptionBody, DestroyBody, ErrorBody,
    Health, Logs, Orchestrator, PlanEntry, ScheduleBody, Success, TimerBody, UpdateBody,
};
use super::dto::{AuditInfo, KeyBody, KeyInfo, KeyScope, NewKeyInfo};
use super::{
    backups, hooks, jobs, keys, live, maintenance, metrics, nodes, plans, resources, rollouts,
    schedules, servers, system,
};
use crate::service::{Capacity, EngineStatus, ImageUsage, ServerObject, ServerUsage, StatsView};

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
        resources::limits,
        live::command,
        live::sse,
        live::ws,
        live::events,
        plans::list,
        plans::update,
        plans::settings,
        maintenance::capacity,
        nodes::list,
        nodes::get,
        nodes::update,
        nodes::move_server,
        schedules::list,
        schedules::add,
        schedules::remove,
        schedules::all,
        keys::list,
        keys::create,
        keys::revoke,
        keys::audit,
        metrics::scrape,
        hooks::list,
        hooks::create,
        hooks::get,
        hooks::remove,
        hooks::test,
        jobs::list,
        jobs::get,
        rollouts::create,
        rollouts::list,
        rollouts::get,
        rollouts::abort,
        backups::create,
        backups::list,
        backups::download,
        backups::delete,
        backups::restore,
        backups::policy,
        backups::link,
    ),
    components(schemas(
        ServerObject, StatsView, Capacity, ServerUsage, ImageUsage, ErrorBody, Success,
        TimerBody, CreateBody, CreateV10Body, UpdateBody, DescriptionBody, DestroyBody,
        Logs, Health, Orchestrator, EngineStatus, PlanEntry, ScheduleBody, AllSchedules,
        live::CommandBody, live::OptionsBody, crate::live::Event, crate::live::ExitRecord,
        KeyScope, KeyBody, KeyInfo, NewKeyInfo, AuditInfo,
        Accepted, crate::service::Job, crate::service::JobView, crate::service::Step,
        crate::service::JobKind, crate::service::JobState,
        crate::model::update::UpdateRecord, crate::model::update::UpdateResult,
        rollouts::RolloutBody, crate::rollout::Rollout, crate::rollout::RolloutServer,
        crate::rollout::RolloutState, crate::rollout::ServerStep,
        super::dto::HookBody, super::dto::HookDetail, crate::hooks::HookInfo,
        crate::hooks::HookStatus, crate::hooks::DeadLetter, crate::hooks::Format,
        crate::hooks::Source,
        resources::LimitsBody, crate::service::LimitsView,
        crate::service::BackupInfo, crate::service::BackupPolicy, crate::service::BackupReason,
        super::dto::SaveLinkBody,
        nodes::NodeBody, nodes::MoveBody, crate::service::NodeView, crate::service::NodeReserved
    )),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "system", description = "Health and the daemon itself"),
        (name = "servers", description = "Game servers"),
        (name = "hooks", description = "Webhook notifications"),
        (name = "plans", description = "Game plans"),
        (name = "maintenance", description = "Resource and disk use"),
        (name = "schedules", description = "Timers and recurring schedules"),
        (name = "console", description = "The live console of a game"),
        (name = "events", description = "What happens to servers, as it happens"),
        (name = "rollouts", description = "Updates of many servers in batches"),
        (name = "console", description = "The live console of a game"),
        (name = "events", description = "What happens to servers, as it happens"),
        (name = "access", description = "API keys, roles and scopes; the audit log"),
        (name = "jobs", description = "Every mutating action, with who asked, its steps and its result"),
        (name = "cluster", description = "Cluster mode: the swarm's nodes and placement"),
        (name = "backups", description = "Whole-server backups, restores, retention and signed links"),
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
