//! The server lifecycle against the real engine: create, start, stop, restart, destroy.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Daemon, game_greeting, wait_for};

#[tokio::test]
async fn create_start_stop_destroy() {
    let d = Daemon::start().await;
    let (game, ports) = d.new_game(1);
    let uid = format!("{game}.alpha");
    let v = d.create_running(&uid).await;
    assert_eq!(v["game_uid"], game.as_str());
    assert_eq!(v["servername"], "alpha");
    assert_eq!(v["server_state"], "running");
    assert_eq!(v["container_type"], "peon-busybox");

    let greeting = wait_for(Duration::from_secs(10), "the game to answer", || {
        game_greeting(ports[0])
    })
    .await;
    assert_eq!(greeting, "hello");

    let (s, v) = d.get("/servers").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");

    let (s, v) = d.put(&format!("/server/stop/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "exited");
    // The game saved its world on SIGTERM.
    assert!(d.server_dir(&uid).join("user/last_save").is_file());

    let (s, v) = d.delete(&format!("/server/destroy/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "success");
    assert!(
        d.server_dir(&uid).join("config.json").is_file(),
        "destroy keeps files"
    );
    assert!(
        d.engine
            .inspect(&format!("peon.warcamp.{uid}"))
            .await
            .unwrap()
            .is_none()
    );
}
