//! Cross-cutting API behaviour: authentication, JSON errors, CORS, both base paths, input checks.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::Daemon;

#[tokio::test]
async fn key_is_required_and_errors_are_json() {
    let d = Daemon::start().await;
    let url = format!("{}/servers", d.base);
    let r = d.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["info"], "Not authorized");

    let r = d
        .http
        .get(&url)
        .header("X-Api-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Health needs no key.
    let r = d
        .http
        .get(format!("{}/health", d.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["docker"], true);

    let (s, v) = d.get("/no/such/route").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["status"], "error", "{v}");

    let (s, v) = d.post("/server/start/a.b", json!({})).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["status"], "error", "{v}");

    let (s, v) = d.put("/server/frobnicate/a.b", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["info"].as_str().unwrap().contains("Unsupported action"),
        "{v}"
    );
}

#[tokio::test]
async fn both_base_paths_serve_the_api() {
    let d = Daemon::start().await;
    for base in ["/api/1.0", "/api/v1"] {
        let r = d
            .http
            .get(format!("{}{base}/orchestrator", d.root))
            .header("X-Api-Key", &d.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}");
        let v: Value = r.json().await.unwrap();
        assert!(v["version"].is_string(), "{v}");
        assert_eq!(v["engine"]["reachable"], true, "{v}");
    }
}

#[tokio::test]
async fn cors_preflight_allows_the_key_header() {
    let d = Daemon::start().await;
    let r = d
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/servers", d.base))
        .header("Origin", "http://webui.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-api-key")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let allowed = r
        .headers()
        .get("access-control-allow-headers")
        .map(|h| h.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(allowed.contains("x-api-key"), "{allowed}");
}

#[tokio::test]
async fn malformed_bodies_and_identifiers_are_400s_that_touch_nothing() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    // Not JSON, and JSON that is not an object.
    let r = d
        .http
        .put(format!("{}/server/create/{game}.a", d.base))
        .header("X-Api-Key", &d.key)
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, _) = d
        .put(&format!("/server/create/{game}.a"), json!([1, 2]))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    for bad in [
        "..",
        "a..b",
        "Game.x",
        &format!("{game}.a.b"),
        &format!("{game}.A"),
        "%2e%2e.x",
        "a%2fb.c",
    ] {
        for (m, path) in [
            (reqwest::Method::PUT, format!("/server/start/{bad}")),
            (reqwest::Method::GET, format!("/server/get/{bad}")),
            (reqwest::Method::DELETE, format!("/server/destroy/{bad}")),
        ] {
            let (s, v) = d.call(m, &path, Some(json!({"eradicate": true}))).await;
            assert!(
                s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
                "{path}: {s} {v}"
            );
            assert_eq!(v["status"], "error", "{path}: {v}");
        }
    }
    // A bare game uid on a destructive route is refused.
    let (s, v) = d
        .delete(
            &format!("/server/eradicate/{game}"),
            json!({"eradicate": true}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(d.plans_dir().join(&game).join("plan.json").exists());
    assert!(!d.data.join("servers").join(&game).exists());
}
