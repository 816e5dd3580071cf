//! The key check of every API route. The offered `X-Api-Key` is hashed and looked up among the
//! named keys and the configured admin key (constant-time compare of the hash); it is never
//! logged. Then:
//!
//! - a wrong or missing key counts against the client's address (see
//!   [`crate::access::lockout`]): slowed 401s, then 429 while the address is locked; a locked
//!   address is refused even with a correct key until the lock ends;
//! - the route's class (the table [`super::ROUTE_CLASSES`]) must be allowed by the key's role,
//!   and a `{uid}` parameter must be in the key's scope, else 403 `auth.forbidden`;
//! - the key's [`Caller`] goes into the request's extensions (lists filter by it; creates with
//!   the game in the body check it);
//! - every mutating request (not a GET, or an operate-class GET such as `save`) is audited
//!   once its response is known, refusals included, with the id of the job it started (the
//!   first job recorded while it ran, see [`crate::jobs::noting_job`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, OriginalUri, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::access::{AccessError, AuditEntry, Class, Failure, Principal};

pub const HEADER: &str = "x-api-key";

tokio::task_local! {
    /// The name of the key of the request being served (who asks, in job records).
    pub static REQUESTER: String;
}

/// The name of the key of the request being served; `api` outside a request.
pub fn requester() -> String {
    REQUESTER
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "api".to_owned())
}

/// The holder of the key a request carries.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl Caller {
    /// Refuses a server or game outside the key's scope (`target`: a uid or a game).
    pub fn require(&self, target: &str) -> Result<(), ApiError> {
        if self.0.sees_target(target) {
            Ok(())
        } else {
            Err(self.0.not_on(target).into())
        }
    }

    /// Whether the key reaches the server `uid` (for filtering lists).
    pub fn sees(&self, uid: &str) -> bool {
        self.0.sees_uid(uid)
    }
}

/// The template of a matched route without its base path.
pub(super) fn relative(route: &str) -> &str {
    super::BASES
        .iter()
        .find_map(|b| route.strip_prefix(b))
        .unwrap_or(route)
}

pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let access = state.service.access().clone();
    let ip: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(left) = ip.and_then(|ip| access.lockout.locked(ip, now)) {
        return ApiError::from(AccessError::Locked(left.as_secs().max(1))).into_response();
    }
    // A public-by-signature route: no key; its handler checks the signature.
    if let Some(route) = req.extensions().get::<MatchedPath>()
        && super::classify(req.method(), relative(route.as_str()))
            .is_some_and(|(c, _)| c == Class::Signed)
    {
        return next.run(req).await;
    }
    let offered = req
        .headers()
        .get(HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let Some(principal) = access.keys.lookup(offered) else {
        tracing::warn!(path = %req.uri().path(), "rejected a request with a missing or wrong API key");
        if let Some(ip) = ip {
            match access.lockout.fail(ip, now) {
                Failure::Delay(d) => {
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                }
                Failure::Locked(left) => {
                    return ApiError::from(AccessError::Locked(left.as_secs().max(1)))
                        .into_response();
                }
            }
        }
        return ApiError::Unauthorized.into_response();
    };
    if let Some(ip) = ip {
        access.lockout.success(ip);
    }
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    // Inside the nested router the URI lacks the base path; the template has it.
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |o| o.0.path().to_owned());
    let uid = super::trace::uid_param(&route, &path).map(str::to_owned);
    let classified = super::classify(&method, relative(&route));
    let verdict = match classified {
        Some((class, what)) => principal.check(class, what, uid.as_deref()).map(|()| class),
        // A method the route does not serve: the 405 the router would answer (the unit test
        // of `ROUTE_CLASSES` keeps every served method in the table).
        None if super::ROUTE_CLASSES
            .iter()
            .any(|(_, t, _, _)| *t == relative(&route)) =>
        {
            return ApiError::MethodNotAllowed(format!(
                "The method {method} is not allowed for {path}."
            ))
            .into_response();
        }
        None => Err(AccessError::Forbidden(format!(
            "the route {method} {route} is not classified; refused"
        ))),
    };
    let (res, job_id) = match verdict {
        Ok(_) => {
            req.extensions_mut().insert(Caller(principal.clone()));
            // Jobs started by this request name the key that asked; the first one is audited.
            let run = REQUESTER.scope(principal.name.clone(), next.run(req));
            crate::service::noting_job(run).await
        }
        Err(e) => (ApiError::from(e).into_response(), None),
    };
    let mutating = method != Method::GET || classified.is_some_and(|(c, _)| c == Class::Operate);
    if mutating {
        access.audit.record(AuditEntry {
            time: chrono::Utc::now(),
            key: principal.name.clone(),
            addr: ip.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            method: method.to_string(),
            route,
            uid,
            status: res.status().as_u16(),
            job_id,
        });
    }
    res
}
