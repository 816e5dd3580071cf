//! Cluster mode, node loss (issue 12): a worker's engine SIGKILLed, its server shown
//! `unreachable` within seconds, actions queued as pending changes (kept over a daemon
//! restart) and applied when the engine is back. On a real swarm (`cluster_harness`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster_harness;
use crate::support::{self, Events};

/// A peon daemon in cluster mode on the cluster's manager.
async fn daemon_on(cluster: &cluster_harness::Cluster) -> support::Daemon {
    support::Daemon::start_with(support::Opts {
        docker_host: Some(cluster.manager().socket.clone()),
        cluster: true,
        ..Default::default()
    })
    .await
}

/// Whether the game's container runs on `node`'s own engine.
async fn runs_on(node: &cluster_harness::Node, uid: &str) -> bool {
    let Ok(cs) = node
        .docker()
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
    let Some(mut cluster) = cluster_harness::start(&[1, 1]).await else {
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

    // The queue survives a daemon restart (the job stays queued, not interrupted).
    d.restart().await;
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["server_state"] == "unreachable"
        })
        .await;
    assert_eq!(v["pending"][0]["job_id"], job_id.as_str(), "{v}");
    assert_eq!(job(&d, &job_id).await["state"], "queued");

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
}
