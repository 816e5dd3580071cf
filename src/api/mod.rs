//! The HTTP API. The same routes are served under `/api/1.0` (peon's base path) and `/api/v1`
//! (what existing PEON clients call). Read [`router`] to find where a request goes.

mod auth;
mod body;
pub mod dto;
pub mod error;
mod extract;
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
