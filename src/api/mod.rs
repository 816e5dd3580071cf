//! The HTTP API. The same routes are served under `/api/1.0` (peon's base path) and `/api/v1`
//! (what existing PEON clients call). Read [`router`] to find where a request goes.

mod auth;
mod body;
pub mod dto;
pub mod error;
mod extract;
mod jobs;
mod live;
mod maintenance;
pub mod openapi;
mod plans;
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

use crate::service::ServerService;
use error::ApiError;

pub use body::{Body, Loose};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ServerService>,
    pub api_key: Arc<str>,
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
        .route("/server/{action}/{uid}", any(servers::unsupported))
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
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(cors)
        .layer(trace::layer())
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
        router(AppState {
            service,
            api_key: Arc::from(KEY),
        })
    }

    async fn call(
        app: &Router,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(auth::HEADER, KEY)
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
