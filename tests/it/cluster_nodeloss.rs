//! Cluster mode, node loss (issue 12): a worker's engine SIGKILLed, its server shown
//! `unreachable` within seconds, actions queued as pending changes (kept over a daemon
//! restart with their options) and applied when the engine is back; failover to another node
//! by the private-node rule of the server's key. On a real swarm (`cluster_harness`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster_harness;
use crate::support::{self, Events};

use crate::cluster::daemon_on;

/// Whether the game's container runs on `node`'s own engine.
async fn runs_on(node: &peon::bench::swarm::Node, uid: &str) -> bool {
    let Ok(d) = node.docker() else {
        return false;
    };
    let Ok(cs) = d
        .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        .await
    else {
        return false;
    };
    cs.iter().any(|c| {
        c.labels
            .as_ref()
            .and_then(|l| l.get("peon.uid"))
            .is_some_and(|u| u == uid)
    })
}

async fn job(d: &support::Daemon, id: &str) -> Value {
    let (s, v) = d.get(&format!("/job/{id}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_unreachable_within_seconds_and_a_stop_waits_for_its_return() {
    let Some(mut cluster) = cluster_harness::start(&[1, 2]).await else {
        return;
    };
    let mut d = daemon_on(&cluster).await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.w");
    let worker = cluster.nodes[1].name.clone();
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            serde_json::json!({"SERVER_NAME": "W", "restart_policy": "never", "node": worker}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], cluster.nodes[1].id.as_str(), "{v}");
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["container_state"] == "running"
        })
        .await;
    assert_ne!(v["server_state"], "unreachable", "{v}");
    // A second server on the worker, stopped: a start with a stop timer will wait for it.
    let (game_t, _) = d.new_game(1);
    let timed = format!("{game_t}.t");
    let (s, v) = d
        .put(
            &format!("/server/create/{timed}"),
            serde_json::json!({"SERVER_NAME": "T", "restart_policy": "never", "node": worker, "start_later": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], cluster.nodes[1].id.as_str(), "{v}");
    let mut events = Events::open(&d, Some(&uid)).await;

    // The worker's engine dies.
    let killed = Instant::now();
    cluster.kill_engine(1);
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["server_state"] == "unreachable"
        })
        .await;
    let seen = killed.elapsed();
    eprintln!(
        "MEASURED: node unreachable {:.1} s after its engine was SIGKILLed",
        seen.as_secs_f64()
    );
    assert_eq!(v["node"]["id"], cluster.nodes[1].id.as_str(), "{v}");
    let (s, one) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(s, 200);
    assert_eq!(one["server_state"], "unreachable", "{one}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut down = None;
    while Instant::now() < deadline {
        match events.next(Duration::from_secs(1)).await {
            Some(e) if e["type"] == "node_down" => {
                down = Some(e);
                break;
            }
            _ => {}
        }
    }
    let down = down.expect("a node_down event");
    assert_eq!(down["node"], cluster.nodes[1].id.as_str(), "{down}");
    // (An open event stream would hold the daemon's graceful shutdown below.)
    drop(events);

    // A console command cannot wait: 409.
    let (s, v) = d
        .post(
            &format!("/server/command/{uid}"),
            serde_json::json!({"command": "hello"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["err_code"], "srv.unreachable", "{v}");

    // A stop waits: 202 with a queued job, shown on the server as pending.
    let (s, v) = d
        .put(&format!("/server/stop/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 202, "{v}");
    let job_id = v["job_id"].as_str().expect("job id").to_owned();
    assert_eq!(job(&d, &job_id).await["state"], "queued");
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["pending"][0]["job_id"], job_id.as_str(), "{v}");
    assert_eq!(v["pending"][0]["action"], "stop", "{v}");
    // A start with a stop timer waits too, its timer kept with it.
    let due = chrono::Utc::now().timestamp() + 3600;
    let (s, v) = d
        .put(
            &format!("/server/start/{timed}"),
            serde_json::json!({"epoch_time": due.to_string()}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let start_id = v["job_id"].as_str().expect("job id").to_owned();
    let (_, v) = d.get(&format!("/server/get/{timed}")).await;
    assert_eq!(v["pending"][0]["action"], "start", "{v}");
    assert_eq!(v["pending"][0]["options"]["timer_due"], due, "{v}");

    // The queue survives a daemon restart (the job stays queued, not interrupted).
    d.restart().await;
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["server_state"] == "unreachable"
        })
        .await;
    assert_eq!(v["pending"][0]["job_id"], job_id.as_str(), "{v}");
    assert_eq!(job(&d, &job_id).await["state"], "queued");
    assert_eq!(job(&d, &start_id).await["state"], "queued");

    // The engine comes back: the node returns, the stop is applied.
    let back = Instant::now();
    cluster.restart_engine(1).await;
    let j = support::wait_for(Duration::from_secs(120), "the queued stop to end", || {
        let (d, id) = (&d, job_id.clone());
        async move {
            let j = job(d, &id).await;
            (j["state"] == "succeeded" || j["state"] == "failed").then_some(j)
        }
    })
    .await;
    eprintln!(
        "MEASURED: queued stop applied {:.1} s after the engine was started again",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(j["state"], "succeeded", "{j}");
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["container_state"] != "running" && v["server_state"] != "unreachable"
        })
        .await;
    assert!(v.get("pending").is_none(), "{v}");
    let node = &cluster.nodes[1];
    support::wait_for(
        Duration::from_secs(30),
        "the game gone from its node",
        || {
            let uid = uid.clone();
            async move { (!runs_on(node, &uid).await).then_some(()) }
        },
    )
    .await;
    // The start waited over the daemon restart and kept its stop timer.
    let j = support::wait_for(Duration::from_secs(60), "the queued start to end", || {
        let (d, id) = (&d, start_id.clone());
        async move {
            let j = job(d, &id).await;
            (j["state"] == "succeeded" || j["state"] == "failed").then_some(j)
        }
    })
    .await;
    assert_eq!(j["state"], "succeeded", "{j}");
    let v = d
        .wait_server(&timed, Duration::from_secs(30), |v| {
            v["container_state"] == "running"
        })
        .await;
    assert_eq!(v["time"], due.to_string(), "the start's stop timer: {v}");
    assert!(v.get("pending").is_none(), "{v}");
}

fn sha(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("read the world");
    format!("{:x}", Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_fails_over_from_its_backup_and_the_old_copy_never_returns() {
    let Some(mut cluster) = cluster_harness::start(&[1, 1, 1]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.f");
    let old = cluster.nodes[1].id.clone();
    // The server is placed by the key team-f; the manager is private to another key and the
    // third node to team-f: a failover goes by team-f's rule, so to the third node.
    let (s, v) = d
        .post(
            "/keys",
            serde_json::json!({"name": "team-f", "role": "operator"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let team_f = v["secret"].as_str().expect("secret").to_owned();
    for (node, owner) in [(0, "team-z"), (2, "team-f")] {
        let (s, v) = d
            .put(
                &format!("/node/{}", cluster.nodes[node].id),
                serde_json::json!({"labels": {"peon.private": owner}}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = d
        .call_as(
            &team_f,
            reqwest::Method::PUT,
            &format!("/server/create/{uid}"),
            Some(serde_json::json!({"SERVER_NAME": "F", "restart_policy": "never", "node": cluster.nodes[1].name})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], old.as_str(), "{v}");

    // The world at backup time (taken stopped), then a newer one written on the node.
    let (s, v) = d
        .put(&format!("/server/stop/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    // On the node's own disk: the game's directory lives there.
    let dirs: Vec<_> = (0..3).map(|i| cluster.node_server_dir(i, &uid)).collect();
    let world_on = |i: usize| dirs[i].join("user/world.dat");
    let world = world_on(1);
    std::fs::create_dir_all(world.parent().expect("parent")).expect("mkdir");
    std::fs::write(&world, b"the world as backed up").expect("write");
    let backed_up = sha(&world);
    let (s, info) = d
        .post(&format!("/server/backup/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{info}");
    let backup_id = info["id"].as_str().expect("backup id").to_owned();
    let (s, v) = d
        .put(&format!("/server/start/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    std::fs::write(&world, b"newer, only on the lost node").expect("write");
    let (s, v) = d
        .put(
            &format!("/server/options/{uid}"),
            serde_json::json!({"failover": {"after": "3s"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The node dies: after the grace, a failover job rebuilds it elsewhere from the backup.
    let killed = Instant::now();
    cluster.kill_engine(1);
    cluster.kill_agent(1);
    let j = support::wait_for(Duration::from_secs(120), "a failover job to end", || {
        let (d, uid) = (&d, uid.clone());
        async move {
            let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=failover")).await;
            let j = jobs.as_array()?.first()?.clone();
            (j["state"] == "succeeded" || j["state"] == "failed").then_some(j)
        }
    })
    .await;
    eprintln!(
        "MEASURED: failed over {:.1} s after the engine was SIGKILLed (grace 3 s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(j["state"], "succeeded", "{j}");
    let steps: Vec<&str> = j["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let named = steps
        .iter()
        .find(|s| s.starts_with(&format!("world from backup {backup_id} (")))
        .unwrap_or_else(|| panic!("a step naming the backup and its age: {steps:?}"));
    assert!(named.contains(" old, taken "), "{named}");
    let v = d
        .wait_server(&uid, Duration::from_secs(60), |v| {
            v["container_state"] == "running"
        })
        .await;
    let spare = v["node"]["id"].as_str().expect("node").to_owned();
    assert_eq!(
        spare, cluster.nodes[2].id,
        "on the node private to its key, not on another key's: {v}"
    );
    assert_ne!(v["server_state"], "unreachable", "{v}");
    // The backup's world was sent to the new node's disk; the lost node's newer copy is
    // stale, never copied from.
    let world = world_on(cluster.index_of(&spare));
    assert_ne!(world, world_on(1));
    assert_eq!(sha(&world), backed_up, "the world of the backup");
    let state: Value = serde_json::from_slice(
        &std::fs::read(d.server_dir(&uid).join(".peon.json")).expect(".peon.json"),
    )
    .expect("json");
    assert_eq!(state["stale_on"][0], old.as_str(), "{state}");

    // The lost node returns: its old copy is stopped there, the world stays the backup's.
    cluster.restart_engine(1).await;
    cluster.wait_ready().await.expect("every node ready again");
    let node = &cluster.nodes[1];
    support::wait_for(
        Duration::from_secs(60),
        "the old copy gone from the node that came back",
        || {
            let uid = uid.clone();
            async move { (!runs_on(node, &uid).await).then_some(()) }
        },
    )
    .await;
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["container_state"] == "running"
        })
        .await;
    assert_eq!(v["node"]["id"], spare.as_str(), "{v}");
    assert_eq!(
        sha(&world),
        backed_up,
        "the old copy never overwrote the world"
    );
    assert_eq!(
        std::fs::read(world_on(1)).expect("the stale copy"),
        b"newer, only on the lost node"
    );
}
