//! Extractors of the API's path parameters. [`ServerUid`] reads the `{uid}` parameter of a
//! route and parses it, so a handler receives a valid [`Uid`] or the client gets the common
//! 400 `req.invalid` JSON error.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::names::Uid;

/// The name of the path parameter [`ServerUid`] reads.
pub const UID_PARAM: &str = "uid";

/// The server uid of a route with a `{uid}` parameter (other parameters, such as a schedule's
/// `{id}`, may come beside it). Only parsed: whether the server exists is the service's call.
#[derive(Debug, Clone)]
pub struct ServerUid(pub Uid);

impl<S: Send + Sync> FromRequestParts<S> for ServerUid {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                if e.status().is_server_error() {
                    ApiError::Internal(e.body_text())
                } else {
                    ApiError::BadRequest(e.body_text())
                }
            })?;
        let raw = params
            .iter()
            .find_map(|(k, v)| (k == UID_PARAM).then_some(v))
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "the route {} has no {{{UID_PARAM}}} parameter",
                    parts.uri.path()
                ))
            })?;
        Ok(ServerUid(Uid::parse(raw)?))
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn call(app: Router, path: &str) -> (StatusCode, Value) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/server/get/{uid}",
                get(|ServerUid(u): ServerUid| async move { u.to_string() }),
            )
            .route(
                "/server/schedules/{uid}/{id}",
                get(|ServerUid(u): ServerUid| async move { u.to_string() }),
            )
            .route(
                "/noparam",
                get(|ServerUid(u): ServerUid| async move { u.to_string() }),
            )
    }

    async fn text(path: &str) -> String {
        let res = app()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn reads_the_uid_parameter_also_beside_another() {
        assert_eq!(text("/server/get/demo.alpha").await, "demo.alpha");
        assert_eq!(text("/server/schedules/demo.alpha/s1").await, "demo.alpha");
    }

    #[tokio::test]
    async fn an_invalid_uid_is_the_common_400() {
        for path in [
            "/server/get/BAD!uid",
            "/server/get/nodot",
            "/server/schedules/Bad.x/s1",
            "/server/get/%FF.x",
        ] {
            let (status, body) = call(app(), path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(body["status"], "error", "{path}");
            assert_eq!(body["err_code"], "req.invalid", "{path}");
            assert!(body["info"].is_string(), "{path}");
        }
    }

    #[tokio::test]
    async fn a_route_without_the_parameter_is_an_internal_error() {
        let (status, body) = call(app(), "/noparam").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["status"], "error");
    }
}
