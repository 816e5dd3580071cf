//! The HTTP API. The same routes are served under `/api/1.0` (peon's base path) and `/api/v1`
//! (what existing PEON clients call). Read [`router`] to find where a request goes.

mod auth;
mod backups;
mod body;
pub mod dto;
pub mod error;
mod extract;
mod hooks;
mod jobs;
mod keys;
mod live;
mod maintenance;
mod metrics;
mod nodes;
pub mod openapi;
mod plans;
mod resources;
mod rollouts;
mod schedules;
mod servers;
mod system;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderName, Method};
use axum::middleware;
use axum::routing::{any, get, post, put};
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::access::Class;
use crate::service::ServerService;
use error::ApiError;

pub use body::{Body, Loose};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ServerService>,
}

/// The base paths the API is served under.
pub const BASES: [&str; 2] = ["/api/1.0", "/api/v1"];

/// Long actions (an image pull on create or update) may take minutes; nothing takes longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// The API routes, relative to a base path. All of them require the API key.
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/orchestrator", get(system::orchestrator))
        .route("/capacity", get(maintenance::capacity))
        .route("/nodes", get(nodes::list))
        .route("/node/{id}", get(nodes::get).put(nodes::update))
        .route("/server/move/{uid}", post(nodes::move_server))
        .route(
            "/servers",
            get(servers::list)
                .put(servers::import)
                .post(servers::create_v10),
        )
        .route("/plans", get(plans::list).put(plans::update))
        .route("/plan/{game}", get(plans::settings))
        .route("/server/create", post(servers::create_post))
        .route("/server/create/{uid}", put(servers::create_put))
        .route("/server/get/{uid}", get(servers::get))
        .route("/server/info/{uid}", get(servers::get))
        .route("/server/stats/{uid}", get(servers::stats))
        .route("/server/logs/{uid}", get(servers::logs))
        .route("/server/save/{uid}", get(servers::save))
        .route("/server/start/{uid}", put(servers::start))
        .route("/server/stop/{uid}", put(servers::stop))
        .route("/server/restart/{uid}", put(servers::restart))
        .route("/server/description/{uid}", put(servers::description))
        .route("/server/skip/{uid}", put(servers::skip))
        .route("/server/update/{uid}", put(servers::update))
        .route(
            "/server/destroy/{uid}",
            axum::routing::delete(servers::destroy),
        )
        .route(
            "/server/eradicate/{uid}",
            axum::routing::delete(servers::eradicate),
        )
        .route("/server/kill/{uid}", put(live::kill))
        .route("/server/options/{uid}", put(live::options))
        .route("/server/limits/{uid}", put(resources::limits))
        .route("/server/command/{uid}", post(live::command))
        .route("/server/console/{uid}", get(live::sse))
        .route("/ws/console/{uid}", get(live::ws))
        .route("/events", get(live::events))
        .route("/jobs", get(jobs::list))
        .route("/job/{id}", get(jobs::get))
        .route("/schedules", get(schedules::all))
        .route(
            "/server/schedules/{uid}",
            get(schedules::list).post(schedules::add),
        )
        .route(
            "/server/schedules/{uid}/{id}",
            axum::routing::delete(schedules::remove),
        )
        .route("/keys", get(keys::list).post(keys::create))
        .route("/key/{name}", axum::routing::delete(keys::revoke))
        .route("/audit", get(keys::audit))
        .route("/rollouts", get(rollouts::list).post(rollouts::create))
        .route("/rollout/{id}", get(rollouts::get))
        .route("/rollout/{id}/abort", post(rollouts::abort))
        .route("/metrics", get(metrics::scrape))
        .route("/hooks", get(hooks::list).post(hooks::create))
        .route("/hook/{id}", get(hooks::get).delete(hooks::remove))
        .route("/hook/{id}/test", post(hooks::test))
        .route("/server/backup/{uid}", post(backups::create))
        .route("/server/backups/{uid}", get(backups::list))
        .route(
            "/server/backup/{uid}/{id}",
            get(backups::download).delete(backups::delete),
        )
        .route("/server/restore/{uid}/{id}", post(backups::restore))
        .route("/server/backup-policy/{uid}", put(backups::policy))
        .route("/link/save/{uid}/{file}", get(backups::link))
        .route("/server/{action}/{uid}", any(servers::unsupported))
}

/// Every route of [`api_routes`]: method (`*` for any), template, the class a key's role must
/// allow, and what a refusal says the key may not do. Routes with a `{uid}` are also checked
/// against the key's scope; creates with the game in the body check it in the handler; lists
/// show only the servers in scope. A route missing here is refused (and a unit test fails).
pub const ROUTE_CLASSES: &[(&str, &str, Class, &str)] = &[
    ("GET", "/orchestrator", Class::Read, "read the orchestrator"),
    ("GET", "/capacity", Class::Read, "read the capacity"),
    ("GET", "/nodes", Class::Read, "list nodes"),
    ("GET", "/node/{id}", Class::Read, "read nodes"),
    ("PUT", "/node/{id}", Class::Admin, "change nodes"),
    ("POST", "/server/move/{uid}", Class::Operate, "move servers"),
    ("GET", "/servers", Class::Read, "list servers"),
    ("GET", "/jobs", Class::Read, "list jobs"),
    ("GET", "/rollouts", Class::Read, "list rollouts"),
    ("GET", "/rollout/{id}", Class::Read, "read rollouts"),
    ("POST", "/rollouts", Class::Admin, "start rollouts"),
    (
        "POST",
        "/rollout/{id}/abort",
        Class::Admin,
        "abort rollouts",
    ),
    ("GET", "/job/{id}", Class::Read, "read jobs"),
    ("PUT", "/servers", Class::Admin, "import servers"),
    ("POST", "/servers", Class::Operate, "create servers"),
    ("GET", "/plans", Class::Read, "list plans"),
    ("PUT", "/plans", Class::Admin, "update plans"),
    ("GET", "/plan/{game}", Class::Read, "read plans"),
    ("POST", "/server/create", Class::Operate, "create servers"),
    (
        "PUT",
        "/server/create/{uid}",
        Class::Operate,
        "create servers",
    ),
    ("GET", "/server/get/{uid}", Class::Read, "read servers"),
    ("GET", "/server/info/{uid}", Class::Read, "read servers"),
    (
        "GET",
        "/server/stats/{uid}",
        Class::Read,
        "read server stats",
    ),
    ("GET", "/server/logs/{uid}", Class::Read, "read server logs"),
    ("GET", "/server/save/{uid}", Class::Operate, "save servers"),
    (
        "PUT",
        "/server/start/{uid}",
        Class::Operate,
        "start servers",
    ),
    ("PUT", "/server/stop/{uid}", Class::Operate, "stop servers"),
    (
        "PUT",
        "/server/restart/{uid}",
        Class::Operate,
        "restart servers",
    ),
    (
        "PUT",
        "/server/description/{uid}",
        Class::Operate,
        "describe servers",
    ),
    (
        "PUT",
        "/server/skip/{uid}",
        Class::Operate,
        "skip on servers",
    ),
    (
        "PUT",
        "/server/update/{uid}",
        Class::Operate,
        "update servers",
    ),
    (
        "DELETE",
        "/server/destroy/{uid}",
        Class::Operate,
        "destroy servers",
    ),
    (
        "DELETE",
        "/server/eradicate/{uid}",
        Class::Admin,
        "eradicate servers",
    ),
    ("PUT", "/server/kill/{uid}", Class::Operate, "kill servers"),
    (
        "PUT",
        "/server/options/{uid}",
        Class::Operate,
        "set server options",
    ),
    (
        "PUT",
        "/server/limits/{uid}",
        Class::Operate,
        "set server limits",
    ),
    (
        "POST",
        "/server/command/{uid}",
        Class::Operate,
        "send commands",
    ),
    ("GET", "/server/console/{uid}", Class::Read, "read consoles"),
    ("GET", "/ws/console/{uid}", Class::Operate, "use consoles"),
    ("GET", "/events", Class::Read, "read events"),
    ("GET", "/schedules", Class::Read, "list schedules"),
    (
        "GET",
        "/server/schedules/{uid}",
        Class::Read,
        "list schedules",
    ),
    (
        "POST",
        "/server/schedules/{uid}",
        Class::Operate,
        "add schedules",
    ),
    (
        "DELETE",
        "/server/schedules/{uid}/{id}",
        Class::Operate,
        "remove schedules",
    ),
    ("GET", "/keys", Class::Admin, "list keys"),
    ("POST", "/keys", Class::Admin, "create keys"),
    ("DELETE", "/key/{name}", Class::Admin, "revoke keys"),
    ("GET", "/audit", Class::Admin, "read the audit log"),
    ("GET", "/metrics", Class::Read, "read metrics"),
    ("GET", "/hooks", Class::Admin, "list hooks"),
    ("POST", "/hooks", Class::Admin, "add hooks"),
    ("GET", "/hook/{id}", Class::Admin, "read hooks"),
    ("DELETE", "/hook/{id}", Class::Admin, "remove hooks"),
    ("POST", "/hook/{id}/test", Class::Admin, "test hooks"),
    (
        "POST",
        "/server/backup/{uid}",
        Class::Operate,
        "back up servers",
    ),
    ("GET", "/server/backups/{uid}", Class::Read, "list backups"),
    (
        "GET",
        "/server/backup/{uid}/{id}",
        Class::Operate,
        "download backups",
    ),
    (
        "DELETE",
        "/server/backup/{uid}/{id}",
        Class::Operate,
        "delete backups",
    ),
    (
        "POST",
        "/server/restore/{uid}/{id}",
        Class::Operate,
        "restore backups",
    ),
    (
        "PUT",
        "/server/backup-policy/{uid}",
        Class::Operate,
        "set backup policies",
    ),
    // No key: the handler checks the link's signature and expiry.
    (
        "GET",
        "/link/save/{uid}/{file}",
        Class::Signed,
        "use signed links",
    ),
    (
        "*",
        "/server/{action}/{uid}",
        Class::Read,
        "call unsupported actions",
    ),
];

/// The class of a route (its template relative to the base path) and what a refusal names.
pub fn classify(method: &Method, template: &str) -> Option<(Class, &'static str)> {
    // axum answers HEAD with the GET handler.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTE_CLASSES
        .iter()
        .find(|(m, t, _, _)| *t == template && (*m == "*" || *m == method))
        .map(|(_, _, c, w)| (*c, *w))
}

/// The whole application: health check, both base paths behind the key, JSON fallbacks,
/// a timeout, CORS, and request tracing (one log line per request, see [`trace`]).
pub fn router(state: AppState) -> Router {
    let protected = api_routes()
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let mut app = Router::new().route("/health", get(system::health));
    for base in BASES {
        app = app
            .route(&format!("{base}/health"), get(system::health))
            .route(&format!("{base}/openapi.json"), get(openapi::serve))
            .nest(base, protected.clone());
    }
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            HeaderName::from_static(auth::HEADER),
            axum::http::header::CONTENT_TYPE,
            axum::http::header::AUTHORIZATION,
            axum::http::header::ACCEPT,
        ]);
    // The trace layer is the outermost, so timed-out requests and CORS preflights are logged
    // too. `Router::layer` wraps each route, so the matched route is known to it.
    app.fallback(not_found)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(state, metrics::track))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(cors)
        .layer(trace::layer())
}

/// What the `--metrics-listen` address serves: `GET /metrics`, without the key.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .route("/hooks", get(hooks::list).post(hooks::create))
        .route("/hook/{id}", get(hooks::get).delete(hooks::remove))
        .route("/hook/{id}/test", post(hooks::test))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "There is no route {} {}.",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(OriginalUri(uri): OriginalUri, method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "The method {method} is not allowed for {}.",
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    //! The whole router, called in-process with `oneshot`, on a service whose Docker engine
    //! does not exist: only routes that need no engine are asked for an answer.

    use axum::body::Body as HttpBody;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::config::{ServeArgs, Settings};

    const KEY: &str = "test-key";

    fn app(dir: &std::path::Path) -> Router {
        let settings = Settings::resolve(&ServeArgs {
            data_dir: Some(dir.join("data")),
            plans_dir: Some(dir.join("plans")),
            api_key: Some(KEY.into()),
            docker_host: Some(format!("unix://{}", dir.join("no-docker.sock").display())),
            timezone: Some("UTC".into()),
            ..Default::default()
        })
        .unwrap();
        let service = crate::daemon::build_service(settings).unwrap();
        router(AppState { service })
    }

    async fn call(
        app: &Router,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_with(app, KEY, method, path, body).await
    }

    #[tokio::test]
    async fn schedule_and_plan_routes_answer_through_the_service_facades() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());

        let (s, v) = call(&app, "GET", "/schedules", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({"time_zone": "UTC", "schedules": []}));

        for (method, path, body) in [
            ("GET", "/server/schedules/demo.nope", None),
            (
                "POST",
                "/server/schedules/demo.nope",
                Some(json!({"action": "jump"})),
            ),
            ("DELETE", "/server/schedules/demo.nope/s1", None),
        ] {
            let (s, v) = call(&app, method, path, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {v}");
            assert_eq!(
                v,
                json!({"status": "error", "info": "There is no server [demo.nope].", "err_code": "srv.notfound"})
            );
        }

        let (s, v) = call(&app, "DELETE", "/server/schedules/BAD!/s1", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["err_code"], "req.invalid", "{v}");

        let (s, v) = call(&app, "GET", "/plans", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["game_uid"], "demo", "{v}");
        assert_eq!(v[0]["in_registry"], true, "{v}");

        let (s, v) = call(&app, "GET", "/plan/demo", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["description"].is_string(), "{v}");
        let (s, v) = call(&app, "GET", "/plan/demo?full=true", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["game_uid"], "demo", "{v}");
        let (s, v) = call(&app, "GET", "/plan/nope", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(v["err_code"], "plan.notfound", "{v}");
    }

    /// The routes of `api_routes()`, read from its source: each `.route("path", ...)` and the
    /// method routers (`get(`, `put(`, `post(`, `delete(`, `any(`) of its arguments.
    fn routed() -> Vec<(String, String)> {
        let src = include_str!("mod.rs");
        let start = src.find("fn api_routes()").unwrap();
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").unwrap()];
        let mut out = Vec::new();
        for chunk in body.split(".route(").skip(1) {
            let path = chunk.split('"').nth(1).unwrap().to_owned();
            for m in ["get", "put", "post", "delete", "any"] {
                let pat = format!("{m}(");
                for (i, _) in chunk.match_indices(&pat) {
                    let before = chunk[..i].chars().last().unwrap_or(' ');
                    if !(before.is_alphanumeric() || before == '_') {
                        let method = if m == "any" {
                            "*".into()
                        } else {
                            m.to_uppercase()
                        };
                        out.push((method, path.clone()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_classified_once_and_the_table_has_no_stale_rows() {
        let routes = routed();
        assert!(routes.len() > 30, "{routes:?}");
        for (m, p) in &routes {
            let n = ROUTE_CLASSES
                .iter()
                .filter(|(rm, rp, _, _)| rm == m && rp == p)
                .count();
            assert_eq!(n, 1, "{m} {p} is classified {n} times in ROUTE_CLASSES");
        }
        for (m, p, _, _) in ROUTE_CLASSES {
            assert!(
                routes.iter().any(|(rm, rp)| rm == m && rp == p),
                "ROUTE_CLASSES has {m} {p}, which api_routes() does not route"
            );
        }
        assert_eq!(routes.len(), ROUTE_CLASSES.len());
        let head = classify(&Method::HEAD, "/servers");
        assert_eq!(head.map(|c| c.0), Some(Class::Read));
        assert_eq!(
            classify(&Method::PATCH, "/server/{action}/{uid}").map(|c| c.0),
            Some(Class::Read)
        );
    }

    async fn call_with(
        app: &Router,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(auth::HEADER, key)
            .body(body.map_or_else(HttpBody::empty, |b| HttpBody::from(b.to_string())))
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn roles_and_scopes_are_checked_before_the_handler() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let (s, v) = call(
            &app,
            "POST",
            "/keys",
            Some(json!({"name": "ci", "role": "viewer", "scope": {"games": ["demo"]}})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let viewer = v["secret"].as_str().unwrap().to_owned();
        let (s, v) = call(
            &app,
            "POST",
            "/keys",
            Some(json!({"name": "ops", "role": "operator"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let operator = v["secret"].as_str().unwrap().to_owned();

        let (s, v) = call_with(&app, &viewer, "PUT", "/server/start/demo.a", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(
            v,
            json!({"status": "error", "info": "the key [ci] (viewer) may not start servers", "err_code": "auth.forbidden"})
        );
        let (s, v) = call_with(&app, &viewer, "GET", "/server/schedules/other.a", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(v["info"], "the key [ci] is not allowed on server [other.a]");
        let (s, _) = call_with(&app, &viewer, "GET", "/server/schedules/demo.a", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "in scope: the handler answers");
        let (s, _) = call_with(&app, &viewer, "GET", "/keys", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = call_with(
            &app,
            &viewer,
            "POST",
            "/server/create",
            Some(json!({"game_uid": "other", "servername": "x"})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

        let (s, v) = call_with(&app, &operator, "PUT", "/plans", None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(v["info"], "the key [ops] (operator) may not update plans");
        let (s, _) = call_with(
            &app,
            &operator,
            "DELETE",
            "/server/schedules/demo.a/s1",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "allowed: the handler answers");
        let (s, _) = call_with(&app, "wrong", "GET", "/servers", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        let (s, v) = call(&app, "GET", "/keys", None).await;
        assert_eq!(s, StatusCode::OK);
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["admin", "ci", "ops"]);
        assert!(!v.to_string().contains(&viewer), "{v}");
        let (s, _) = call(&app, "DELETE", "/key/ci", None).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call_with(&app, &viewer, "GET", "/servers", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, v) = call(&app, "DELETE", "/key/admin", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }

    /// Every mutating route of the table (not a GET, or an operate-class GET) writes one audit
    /// entry, here refused for a viewer key (what the handler would do changes nothing in the
    /// auditing, which wraps it), plus one admin request that reaches its handler.
    #[tokio::test]
    async fn every_mutating_route_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(&ServeArgs {
            data_dir: Some(dir.path().join("data")),
            plans_dir: Some(dir.path().join("plans")),
            api_key: Some(KEY.into()),
            docker_host: Some(format!(
                "unix://{}",
                dir.path().join("no-docker.sock").display()
            )),
            ..Default::default()
        })
        .unwrap();
        let service = crate::daemon::build_service(settings).unwrap();
        let app = router(AppState {
            service: service.clone(),
        });
        let (s, v) = call(
            &app,
            "POST",
            "/keys",
            Some(json!({"name": "ro", "role": "viewer"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let viewer = v["secret"].as_str().unwrap().to_owned();
        let mut want = Vec::new();
        for (m, t, class, _) in ROUTE_CLASSES {
            if *m == "GET" && *class != Class::Operate {
                continue;
            }
            let method = if *m == "*" { "POST" } else { m };
            let path = t
                .replace("{uid}", "demo.audit")
                .replace("{id}", "x")
                .replace("{name}", "nobody")
                .replace("{game}", "demo")
                .replace("{action}", "frob");
            let (s, _) = call_with(&app, &viewer, method, &path, None).await;
            assert_ne!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
            want.push((method.to_owned(), format!("/api/v1{t}")));
        }
        let (s, _) = call(&app, "DELETE", "/key/nobody", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        want.push(("DELETE".into(), "/api/v1/key/{name}".into()));
        assert!(want.len() > 20, "{want:?}");
        let q = crate::access::AuditQuery {
            limit: 1000,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let got = loop {
            // The key creation above is audited too.
            let got = service.access().audit.query(&q).unwrap();
            if got.len() > want.len() || std::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut seen: Vec<(String, String)> = got
            .iter()
            .rev()
            .skip(1)
            .map(|e| (e.method.clone(), e.route.clone()))
            .collect();
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn job_routes_answer_from_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let (s, v) = call(&app, "GET", "/jobs", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!([]));
        let (s, v) = call(
            &app,
            "GET",
            "/jobs?uid=demo.a&state=failed&kind=start&limit=5",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for bad in ["state=sleeping", "kind=jump", "limit=-1"] {
            let (s, v) = call(&app, "GET", &format!("/jobs?{bad}"), None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
            assert_eq!(v["err_code"], "req.invalid", "{v}");
        }
        let (s, v) = call(&app, "GET", "/job/nope", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            v,
            json!({"status": "error", "info": "There is no job [nope].", "err_code": "job.notfound"})
        );
        // An unknown server is answered at once, also without waiting.
        let (s, v) = call(&app, "PUT", "/server/start/demo.nope?wait=false", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    }

    #[tokio::test]
    async fn system_routes_report_an_unreachable_engine() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());

        let (s, v) = call(&app, "GET", "/health", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["docker"], false);

        let (s, v) = call(&app, "GET", "/orchestrator", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["servers"], 0);
        assert_eq!(v["engine"]["reachable"], false, "{v}");
        assert!(v["engine"]["error"].is_string(), "{v}");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["version", "instance", "servers", "engine"]);
    }
}
