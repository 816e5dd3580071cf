//! Request tracing with `tower_http`'s [`TraceLayer`]: every request runs in an INFO span
//! `request{method, path, route, uid}` and ends with exactly one log line carrying its status
//! and latency in milliseconds, e.g.
//! `INFO request{method=GET path=/api/v1/server/get/demo.a route="/api/v1/server/get/{uid}" uid="demo.a"}: response status=200 ms=3`. `route` is the matched route template (`-` when no route
//! matched); `uid` is the route's `{uid}` parameter (`-` when it has none). Headers are never
//! recorded (the API key travels in one), nor the query string.
//!
//! Whatever the handlers and the service log while serving a request carries the span's
//! fields, so a Docker action can be traced back to its request.

use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use super::extract::UID_PARAM;

/// The request tracing layer of [`super::router`].
pub type RequestTrace =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), LogLine, (), (), ()>;

/// The layer: a [`RequestSpan`], one [`LogLine`] per response, nothing else (no line when the
/// request starts, per body chunk, at the end of a stream, or a second one for a 5xx).
pub fn layer() -> RequestTrace {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(LogLine)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Makes the span of a request from its method, path, matched route and `{uid}` parameter.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let path = req.uri().path();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let uid = route.and_then(|r| uid_param(r, path));
        tracing::info_span!(
            "request",
            method = %req.method(),
            path = %path,
            route = route.unwrap_or("-"),
            uid = uid.unwrap_or("-"),
        )
    }
}

/// The request's one log line: status and latency, in the request's span.
#[derive(Debug, Clone, Copy)]
pub struct LogLine;

impl<B> OnResponse<B> for LogLine {
    fn on_response(self, res: &Response<B>, latency: Duration, _span: &Span) {
        tracing::info!(
            status = res.status().as_u16(),
            ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            "response"
        );
    }
}

/// The path segment in the place of the route template's `{uid}`, as sent (not decoded).
/// Routes match whole segments, so the template and the path have the same segments.
pub(super) fn uid_param<'p>(template: &str, path: &'p str) -> Option<&'p str> {
    let wanted = format!("{{{UID_PARAM}}}");
    let at = template.split('/').position(|seg| seg == wanted)?;
    path.split('/').nth(at).filter(|seg| !seg.is_empty())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn the_uid_is_the_segment_of_the_uid_parameter() {
        let t = "/api/v1/server/schedules/{uid}/{id}";
        assert_eq!(
            uid_param(t, "/api/v1/server/schedules/demo.a/s1"),
            Some("demo.a")
        );
        assert_eq!(
            uid_param("/api/v1/server/get/{uid}", "/api/v1/server/get/demo.a"),
            Some("demo.a")
        );
        assert_eq!(
            uid_param("/api/v1/server/{action}/{uid}", "/api/v1/server/x/BAD!"),
            Some("BAD!")
        );
        assert_eq!(uid_param("/api/v1/servers", "/api/v1/servers"), None);
        assert_eq!(uid_param("/api/v1/plan/{game}", "/api/v1/plan/demo"), None);
    }

    /// Collects what the fmt subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn logged(app: Router, req: Request<Body>) -> (StatusCode, String) {
        // Other tests of this binary run in parallel without a subscriber; a global one that
        // is interested in everything keeps the callsites' cached interest from saying "never"
        // while this test's scoped subscriber is set.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_target(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _g = tracing::subscriber::set_default(sub);
        let status = app.oneshot(req).await.unwrap().status();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (status, out)
    }

    fn app() -> Router {
        let api = Router::new()
            .route("/server/get/{uid}", get(|| async { "ok" }))
            .route(
                "/server/schedules/{uid}/{id}",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/servers", get(|| async { "[]" }));
        Router::new().nest("/api/v1", api).layer(layer())
    }

    #[tokio::test]
    async fn one_line_per_request_with_route_uid_status_and_no_headers() {
        let req = Request::get("/api/v1/server/get/demo.alpha?secret=q")
            .header("x-api-key", "hunter2")
            .body(Body::empty())
            .unwrap();
        let (status, out) = logged(app(), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(out.lines().count(), 1, "{out}");
        let want = r#"INFO request{method=GET path=/api/v1/server/get/demo.alpha route="/api/v1/server/get/{uid}" uid="demo.alpha"}: response status=200 ms="#;
        assert!(out.contains(want), "{out}");
        assert!(!out.contains("hunter2") && !out.contains("secret"), "{out}");
    }

    #[tokio::test]
    async fn a_second_parameter_a_5xx_and_an_unknown_route_are_one_line_each() {
        let req = Request::get("/api/v1/server/schedules/demo.alpha/s1")
            .body(Body::empty())
            .unwrap();
        let (status, out) = logged(app(), req).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains(r#"uid="demo.alpha"}"#) && out.contains("status=500"),
            "{out}"
        );

        let req = Request::get("/api/v1/servers").body(Body::empty()).unwrap();
        let (_, out) = logged(app(), req).await;
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(r#"route="/api/v1/servers" uid="-"}"#), "{out}");

        let req = Request::get("/nowhere").body(Body::empty()).unwrap();
        let (status, out) = logged(app(), req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains(r#"route="-" uid="-"}"#) && out.contains("status=404"),
            "{out}"
        );
    }
}
