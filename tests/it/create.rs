//! Creating servers: the three request forms, names, required and unknown settings, duplicate
//! and failed creates, port groups.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Daemon, GAME_IMAGE, free_port, game_plan};

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["uid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn peon_1_0_post_servers_with_typed_settings() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let (s, v) = d
        .post(
            "/servers",
            json!({
                "game_uid": game, "servername": "old", "description": "from a 1.0 client",
                "settings": [
                    {"type": "env", "name": "SERVER_NAME", "content": "Old School"},
                    {"type": "env", "name": "vars", "content": {"MOTD": "howdy"}},
                    {"type": "json", "name": "settings.json", "content": {"difficulty": "hard"}},
                    {"type": "txt", "name": "motd.txt", "content": "line one"}
                ]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running");
    assert_eq!(v["description"], "from a 1.0 client");
    let dir = d.server_dir(&format!("{game}.old"));
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["environment"]["SERVER_NAME"], "Old School");
    assert_eq!(cfg["environment"]["MOTD"], "howdy");
    let js: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config/settings.json")).unwrap()).unwrap();
    assert_eq!(js["difficulty"], "hard");
    assert_eq!(
        std::fs::read_to_string(dir.join("config/motd.txt")).unwrap(),
        "line one"
    );

    // A config file name that would escape config/ is refused before anything is made.
    let (s, v) = d
        .post(
            "/servers",
            json!({"game_uid": game, "servername": "evil", "description": "",
                   "settings": [{"type": "txt", "name": "../../x", "content": "x"}, {"type":"env","name":"SERVER_NAME","content":"e"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(!d.server_dir(&format!("{game}.evil")).exists());
}

#[tokio::test]
async fn webui_post_create_and_random_names() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(3);
    let (s, v) = d
        .post(
            "/server/create",
            json!({"game_uid": game, "servername": "webui", "SERVER_NAME": "W", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["uid"], format!("{game}.webui"));

    // PUT create with a bare game uid gets a PEON-style random name, distinct each time.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (s, v) = d
            .put(
                &format!("/server/create/{game}"),
                json!({"SERVER_NAME": "R", "start_later": "True"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let name = v["servername"].as_str().unwrap().to_owned();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{name}"
        );
        assert!(!seen.contains(&name));
        seen.push(name);
    }
    // start_later servers are listed at once, with a container that is created but not running.
    let (_, list) = d.get("/servers").await;
    assert_eq!(names(&list).len(), 3, "{list}");
    for s in list.as_array().unwrap() {
        assert_eq!(s["container_state"], "created", "{s}");
    }
    // Three servers of one game got the three port groups, one each.
    let mut ports: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ports"][0].as_str().unwrap().to_owned())
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{list}");
}

#[tokio::test]
async fn settings_are_checked_before_anything_is_made() {
    let d = Daemon::start().await;
    let mut plan = game_plan("x", &[&[free_port()]]);
    plan["environment"]["WORLD"] = Value::Null;
    let game = crate::support::unique("g");
    plan["metadata"]["game_uid"] = json!(game);
    d.add_plan(&game, &plan);

    let (s, v) = d.put(&format!("/server/create/{game}.a"), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let info = v["info"].as_str().unwrap();
    assert!(
        info.contains("SERVER_NAME") && info.contains("WORLD"),
        "every missing one is named: {info}"
    );

    let (s, v) = d
        .put(
            &format!("/server/create/{game}.a"),
            json!({"SERVER_NAME": "a", "WORLD": "w", "TYPO": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["info"].as_str().unwrap().contains("TYPO"), "{v}");

    let (s, v) = d.put("/server/create/nosuchgame.a", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(!d.data.join("servers").join(&game).exists());

    // STEAM_ID may be overridden; values are stored as given.
    let (s, v) = d
        .put(
            &format!("/server/create/{game}.b"),
            json!({"SERVER_NAME": "a $HOME b", "WORLD": 7, "STEAM_ID": "123", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(d.server_dir(&format!("{game}.b")).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["environment"]["STEAM_ID"], "123");
    assert_eq!(cfg["environment"]["WORLD"], "7");
    assert_eq!(cfg["environment"]["SERVER_NAME"], "a $HOME b");
    assert_eq!(
        cfg["metadata"]["container_name"],
        format!("peon.warcamp.{game}.b")
    );
    assert!(
        cfg["ports"][0].is_object(),
        "ports flattened to the chosen group: {cfg}"
    );
}

#[tokio::test]
async fn duplicate_create_is_409_and_keeps_the_first() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.dup");
    let (s, _) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "one", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "two"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let cfg = std::fs::read_to_string(d.server_dir(&uid).join("config.json")).unwrap();
    assert!(cfg.contains("\"one\""));
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() {
    let d = Daemon::start().await;
    let game = crate::support::unique("g");
    let mut plan = game_plan(&game, &[&[free_port()]]);
    // No registry is reachable: the image can be neither found nor pulled.
    plan["metadata"]["image"] = json!(format!("peon-test/missing-{game}:latest"));
    d.add_plan(&game, &plan);
    let uid = format!("{game}.broken");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "b"}),
        )
        .await;
    assert!(
        s.is_server_error() && s != StatusCode::INTERNAL_SERVER_ERROR,
        "{s} {v}"
    );
    assert_eq!(v["status"], "error");
    assert!(!d.server_dir(&uid).exists(), "no directory");
    assert!(
        d.engine
            .inspect(&format!("peon.warcamp.{uid}"))
            .await
            .unwrap()
            .is_none(),
        "no container"
    );
    let nets = d.engine.networks_labelled("peon.uid", &uid).await.unwrap();
    assert!(nets.is_empty(), "no network: {nets:?}");
    let (_, list) = d.get("/servers").await;
    assert!(names(&list).is_empty(), "{list}");

    // A game that exits at once also fails the create, and rolls it back.
    let game2 = crate::support::unique("g");
    let plan2 = game_plan(&game2, &[&[free_port()]]);
    d.add_plan(&game2, &plan2);
    std::fs::write(
        d.plans_dir().join(&game2).join("actions/server_start"),
        "echo boom; exit 3\n",
    )
    .unwrap();
    let uid2 = format!("{game2}.crash");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid2}"),
            json!({"SERVER_NAME": "c"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(v["info"].as_str().unwrap().contains("exit code 3"), "{v}");
    assert!(!d.server_dir(&uid2).exists());
    assert!(
        d.engine
            .inspect(&format!("peon.warcamp.{uid2}"))
            .await
            .unwrap()
            .is_none()
    );

    // With noclean the files stay for inspection.
    let uid3 = format!("{game2}.kept");
    let (s, _) = d
        .put(
            &format!("/server/create/{uid3}"),
            json!({"SERVER_NAME": "c", "noclean": true}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert!(d.server_dir(&uid3).join("config.json").exists());
}

#[tokio::test]
async fn port_clashes_are_409_naming_the_holder_and_free_groups_are_used() {
    let d = Daemon::start().await;
    let shared = free_port();
    let spare = free_port();
    let g1 = crate::support::unique("g");
    d.add_plan(&g1, &game_plan(&g1, &[&[shared]]));
    let g2 = crate::support::unique("g");
    d.add_plan(&g2, &game_plan(&g2, &[&[shared]]));
    let g3 = crate::support::unique("g");
    d.add_plan(&g3, &game_plan(&g3, &[&[shared], &[spare]]));

    let holder = format!("{g1}.holder");
    d.create_running(&holder).await;

    let (s, v) = d
        .put(
            &format!("/server/create/{g2}.second"),
            json!({"SERVER_NAME": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["err_code"], "srv.portsused");
    assert!(v["info"].as_str().unwrap().contains(&holder), "{v}");
    assert!(!d.server_dir(&format!("{g2}.second")).exists());

    // Created but not started, then started while the holder runs: 409 as well.
    let (s, _) = d
        .put(
            &format!("/server/create/{g2}.later"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = d.put(&format!("/server/start/{g2}.later"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["err_code"], "srv.portsused");

    // A plan with a second port group uses it.
    let v = d.create_running(&format!("{g3}.alt")).await;
    assert_eq!(v["ports"][0], format!("{spare}/tcp"), "{v}");
    let _ = GAME_IMAGE;
}
