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

#[tokio::test]
async fn get_stats_logs_describe_skip_restart() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.info");
    d.create_running(&uid).await;

    for action in ["get", "info"] {
        let (s, v) = d.get(&format!("/server/{action}/{uid}")).await;
        assert_eq!(s, StatusCode::OK, "{action}");
        assert_eq!(v["uid"], uid.as_str());
        // PEON field types.
        for k in [
            "game_uid",
            "servername",
            "container_type",
            "build_version",
            "container_state",
            "server_state",
            "description",
        ] {
            assert!(v[k].is_string(), "{k}: {v}");
        }
        assert!(v["server_config"].is_object());
    }
    let v = d
        .wait_server(&uid, Duration::from_secs(10), |v| {
            v["server_config"]["state"] == "STARTED"
        })
        .await;
    assert_eq!(v["server_config"]["server_name"], "Test");

    let (s, v) = d.get(&format!("/server/stats/{uid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["cpu_percent"].is_number(), "{v}");
    assert!(v["memory_percent"].is_number(), "{v}");
    assert!(v["memory_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["uptime_s"].as_i64().unwrap() >= 0, "{v}");
    assert!(v["stats"].is_object(), "raw engine stats: {v}");

    let (s, v) = d.get(&format!("/server/logs/{uid}?lines=1")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let logs = v["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{v}");
    assert!(logs[0].as_str().unwrap().contains("listening"), "{v}");

    let (s, v) = d
        .put(
            &format!("/server/description/{uid}"),
            json!({"description": "new words"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["description"], "new words");
    let (s, _) = d
        .put(&format!("/server/description/{uid}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = d.put(&format!("/server/skip/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["container_state"], "running");

    let before = std::fs::read_to_string(d.server_dir(&uid).join("user/boots")).unwrap();
    let (s, v) = d.put(&format!("/server/restart/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running");
    let after = wait_for(Duration::from_secs(10), "second boot", || async {
        let b = std::fs::read_to_string(d.server_dir(&uid).join("user/boots")).ok()?;
        (b != before).then_some(b)
    })
    .await;
    assert_eq!(after.trim(), "2");

    for missing in ["get", "stats", "logs"] {
        let (s, v) = d.get(&format!("/server/{missing}/{game}.nobody")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{missing}: {v}");
    }
}

#[tokio::test]
async fn secrets_in_config_are_masked() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.secret");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "S", "PASSWORD": "hunter2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = d
        .wait_server(&uid, Duration::from_secs(10), |v| {
            v["server_config"]["password"].is_string()
        })
        .await;
    assert_eq!(v["server_config"]["password"], "********");
    assert!(!v.to_string().contains("hunter2"));
    let (_, list) = d.get("/servers").await;
    assert!(!list.to_string().contains("hunter2"));
}

#[tokio::test]
async fn save_streams_a_zip_without_the_game_install() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.saved");
    d.create_running(&uid).await;
    std::fs::write(d.server_dir(&uid).join("data/huge.pak"), "game install").unwrap();
    let res = d
        .http
        .get(format!("{}/server/save/{uid}", d.base))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let disp = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disp.contains(&format!("{uid}-")) && disp.ends_with(".zip\""),
        "{disp}"
    );
    let bytes = res.bytes().await.unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let names: Vec<String> = z.file_names().map(|n| n.unwrap().into_owned()).collect();
    assert!(names.contains(&"config.json".to_owned()), "{names:?}");
    assert!(names.contains(&"user/boots".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("data/")), "{names:?}");
    let mut cfg = String::new();
    std::io::Read::read_to_string(&mut z.by_name("config.json").unwrap(), &mut cfg).unwrap();
    assert!(cfg.contains(&uid.replace('.', "")) || cfg.contains(&format!("peon.warcamp.{uid}")));
    // The backup is also kept on disk.
    assert_eq!(
        std::fs::read_dir(d.data.join("backups")).unwrap().count(),
        1
    );
}

#[tokio::test]
async fn update_modes() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.upd");
    d.create_running(&uid).await;
    let dir = d.server_dir(&uid);

    let (s, v) = d
        .put(&format!("/server/update/{uid}"), json!({"mode": "quick"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": null, "watch": 0}),
        )
        .await;
    assert!(s.is_success(), "null mode means the default (full)");

    // server/game: the .update flag goes, data stays, the server runs again.
    std::fs::write(dir.join("actions/.update"), "").unwrap();
    std::fs::write(dir.join("data/installed.bin"), "x").unwrap();
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "server", "watch": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running");
    assert!(!dir.join("actions/.update").exists());
    assert!(dir.join("data/installed.bin").exists());

    // image: the pull fails here (no registry) but the local image is kept and used.
    std::fs::write(dir.join("actions/.update"), "").unwrap();
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "image", "watch": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(dir.join("actions/.update").exists());

    // reinit: data/ is wiped (dotfiles too), user/ is kept.
    std::fs::write(dir.join("data/.hidden"), "x").unwrap();
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "REINIT", "watch": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!dir.join("data/installed.bin").exists());
    assert!(!dir.join("data/.hidden").exists());
    assert!(dir.join("user/boots").exists());
    assert!(!dir.join("actions/.update").exists());
}

#[tokio::test]
async fn destroy_and_eradicate() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(3);
    for n in ["a", "b", "c"] {
        d.create_running(&format!("{game}.{n}")).await;
    }
    // eradicate needs JSON true or "True"; "False" (truthy in PEON) deletes nothing.
    for body in [
        json!({}),
        json!({"eradicate": "False"}),
        json!({"eradicate": "true"}),
        json!({"eradicate": 1}),
    ] {
        let (s, v) = d
            .delete(&format!("/server/eradicate/{game}.a"), body.clone())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(
            d.server_dir(&format!("{game}.a"))
                .join("config.json")
                .exists()
        );
    }
    let (s, v) = d
        .delete(
            &format!("/server/eradicate/{game}.a"),
            json!({"eradicate": "True"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!d.server_dir(&format!("{game}.a")).exists());
    assert!(
        d.engine
            .inspect(&format!("peon.warcamp.{game}.a"))
            .await
            .unwrap()
            .is_none()
    );

    let (s, _) = d
        .delete(
            &format!("/server/destroy/{game}.b"),
            json!({"eradicate": "False"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        d.server_dir(&format!("{game}.b"))
            .join("config.json")
            .exists()
    );
    let (_, v) = d.get(&format!("/server/get/{game}.b")).await;
    assert_eq!(v["container_state"], "missing", "{v}");

    let (s, _) = d
        .delete(
            &format!("/server/destroy/{game}.c"),
            json!({"eradicate": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!d.server_dir(&format!("{game}.c")).exists());
    // Only b is left, and the other games' folders are untouched.
    let (_, list) = d.get("/servers").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(d.plans_dir().join(&game).exists());

    let (s, _) = d
        .delete(&format!("/server/destroy/{game}.zzz"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn import_adopts_server_folders_without_containers() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.orig");
    let (s, _) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "o", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // A host copies a server folder in by hand (e.g. restored from a backup).
    let copy = d.server_dir(&format!("{game}.copy"));
    crate::support::copy_dir(&d.server_dir(&uid), &copy);
    let (s, _) = d.delete(&format!("/server/destroy/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = d.put("/servers", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    for srv in list {
        assert_eq!(srv["container_state"], "created", "{srv}");
    }
}
