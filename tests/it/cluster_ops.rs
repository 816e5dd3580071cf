//! Cluster mode, day-to-day work across nodes on each node's own files: a rollout to a new plan
//! version over servers on different nodes (the new plan files reach every node, the worlds
//! stay there), a scheduled backup of a server on a worker (its world fetched from that node
//! through its agent), and an eradicate that removes the node's copy.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::cluster::daemon_on_with;
use crate::cluster_harness;
use crate::planver::Source;
use crate::support::{GAME_SCRIPT, Opts, free_port, game_plan, unique, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_and_a_schedule_work_on_each_nodes_own_files() {
    let Some(cluster) = cluster_harness::start(&[1, 1]).await else {
        return;
    };
    let src = Source::start().await;
    let d = daemon_on_with(
        &cluster,
        Opts {
            plans_url: Some(src.url()),
            ..Default::default()
        },
    )
    .await;
    let game = unique("cg");
    let plan = game_plan(&game, &[&[free_port()]]);
    src.serve_plan(&game, &plan, GAME_SCRIPT);
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // One server on each node, each with a treasure in its world on that node's disk.
    let uids = [format!("{game}.a"), format!("{game}.b")];
    for (i, uid) in uids.iter().enumerate() {
        let (s, v) = d
            .put(
                &format!("/server/create/{uid}"),
                json!({"SERVER_NAME": format!("host-{i}"), "node": cluster.nodes[i].id}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["node"]["id"], cluster.nodes[i].id.as_str(), "{v}");
        assert_eq!(v["container_state"], "running", "{v}");
        let dir = cluster.node_server_dir(i, uid);
        assert!(
            dir.join("config.json").is_file(),
            "the node holds the server's files"
        );
        std::fs::write(dir.join("user/treasure"), format!("gold of {uid}")).expect("treasure");
        // The manager's copy is not what the game uses.
        assert!(!d.server_dir(uid).join("user/treasure").exists());
        // What the game wrote in its config/ on the node is read there by the agent.
        d.wait_server(uid, Duration::from_secs(30), |v| {
            v["server_config"]["state"] == "STARTED"
        })
        .await;
        assert!(!d.server_dir(uid).join("config/state").exists());
    }

    // Plan 2.0.0: a new setting and a new start script, rolled out one server at a time.
    let mut v2 = plan.clone();
    v2["metadata"]["version"] = json!("2.0.0");
    v2["environment"]["NEW_SETTING"] = json!("fresh");
    let script2 = format!("{GAME_SCRIPT}\n# plan 2.0.0\n");
    src.serve_plan(&game, &v2, &script2);
    let (s, r) = d
        .post(
            "/rollouts",
            json!({"game": game, "target": {"plan_version": "2.0.0"}, "batch_percent": 50,
                "success_timeout": 60, "watch": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().expect("rollout id").to_owned();
    let r = wait_for(Duration::from_secs(240), "the rollout to end", || async {
        let (_, r) = d.get(&format!("/rollout/{id}")).await;
        (r["state"] != "running").then_some(r)
    })
    .await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["batches"], 2, "{r}");
    for (i, uid) in uids.iter().enumerate() {
        let dir = cluster.node_server_dir(i, uid);
        let script = std::fs::read_to_string(dir.join("actions/server_start")).expect("script");
        assert!(
            script.contains("# plan 2.0.0"),
            "node {i} has the new plan's files"
        );
        let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
        assert!(config.contains("NEW_SETTING"), "{config}");
        assert_eq!(
            std::fs::read_to_string(dir.join("user/treasure")).expect("treasure"),
            format!("gold of {uid}"),
            "the world stayed on its node"
        );
        let (_, v) = d.get(&format!("/server/get/{uid}")).await;
        assert_eq!(v["node"]["id"], cluster.nodes[i].id.as_str(), "{v}");
        assert_eq!(v["container_state"], "running", "{v}");
    }

    // A scheduled backup of the server on the worker: its world comes from that node.
    let worker = &uids[1];
    let (s, v) = d
        .post(
            &format!("/server/schedules/{worker}"),
            json!({"action": "backup", "cron": "*/2 * * * * *"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let sched = v["id"].as_str().expect("schedule id").to_owned();
    wait_for(Duration::from_secs(60), "a scheduled backup", || async {
        let (_, b) = d.get(&format!("/server/backups/{worker}")).await;
        b.as_array().is_some_and(|a| !a.is_empty()).then_some(())
    })
    .await;
    let (s, v) = d
        .delete(&format!("/server/schedules/{worker}/{sched}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        std::fs::read_to_string(d.server_dir(worker).join("user/treasure"))
            .expect("the manager's copy, fetched for the backup"),
        format!("gold of {worker}")
    );

    // `save` (PEON's zip of the user files) takes what is on the node now.
    let late = cluster
        .node_server_dir(1, worker)
        .join("user/written-after-the-backup");
    std::fs::write(&late, "late").expect("late file");
    let r = d
        .http
        .get(format!("{}/server/save/{worker}", d.base))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .expect("save");
    assert_eq!(r.status(), StatusCode::OK);
    let zip = r.bytes().await.expect("zip");
    let name = b"written-after-the-backup";
    assert!(
        zip.windows(name.len()).any(|w| w == name.as_slice()),
        "the zip has the file written on the node"
    );

    // Disk use is measured on the node (`GET /capacity` measures now): a file written there
    // after the last fetch counts.
    let big = cluster.node_server_dir(1, worker).join("user/big");
    std::fs::write(&big, vec![7u8; 3 << 20]).expect("big file");
    let (s, c) = d.get("/capacity").await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (_, v) = d.get(&format!("/server/get/{worker}")).await;
    let used = v["disk_bytes"].as_u64().expect("disk_bytes");
    assert!(used >= 3 << 20, "{used} bytes measured on the node: {v}");

    // Wake on connect would hold the ports on the manager's host, not on the game's node.
    let (s, v) = d
        .put(
            &format!("/server/options/{worker}"),
            json!({"wake_on_connect": true}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["info"].as_str().unwrap_or("").contains("cluster mode"),
        "{v}"
    );

    // Eradicate removes the node's copy too.
    for (i, uid) in uids.iter().enumerate() {
        let (s, v) = d
            .delete(
                &format!("/server/eradicate/{uid}"),
                json!({"eradicate": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(!cluster.node_server_dir(i, uid).exists(), "node {i}'s copy");
    }
}
