//! Cluster mode (issue 12) on a real 3-node swarm started by the test (`cluster_harness`).
//! Skipped with a message where the machine cannot run one.

use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use tokio::io::AsyncReadExt;

use crate::cluster_harness;
use crate::support::{self, GAME_IMAGE};

/// What a TCP listener at `addr:port` says, if it answers.
async fn greeting(addr: &str, port: u16) -> Option<String> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((addr, port)),
    )
    .await
    .ok()?
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf).trim().to_owned()).filter(|s| !s.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_of_three_runs_a_host_mode_service_reachable_at_its_node() {
    let Some(cluster) = cluster_harness::start(&[2, 2, 2]).await else {
        return;
    };
    eprintln!("cluster up in {:?}", cluster.start_time);
    let d = cluster.docker();
    let nodes = d.list_nodes(None).await.expect("nodes");
    assert_eq!(nodes.len(), 3, "three nodes in the swarm");
    for n in &nodes {
        let slots = n
            .description
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.generic_resources.as_ref())
            .map(|g| format!("{g:?}"))
            .unwrap_or_default();
        assert!(slots.contains("gameslot"), "node {n:?} has gameslots");
    }

    // A service pinned to node 2 with a host-mode port answers at node 2's address.
    let target = &cluster.nodes[1];
    let port = support::free_port();
    let name = support::unique("svc");
    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(cluster_harness::test_labels(&name)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(GAME_IMAGE.into()),
                command: Some(vec!["/bin/sh".into(), "-c".into()]),
                args: Some(vec![
                    "echo hello-from-node > /tmp/m; exec nc -ll -p 7777 -e cat /tmp/m".into(),
                ]),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={}", target.id)]),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(7777),
                published_port: Some(i64::from(port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    d.create_service(spec, None).await.expect("create service");
    let addr = target.addr.clone();
    let said = support::wait_for(
        Duration::from_secs(60),
        "the service to answer at its node's address",
        || {
            let addr = addr.clone();
            async move { greeting(&addr, port).await }
        },
    )
    .await;
    assert_eq!(said, "hello-from-node");
    // Not on the other nodes.
    assert!(greeting(&cluster.nodes[2].addr, port).await.is_none());
    d.delete_service(&name).await.expect("remove service");
}

/// A peon daemon in cluster mode on the cluster's manager, with a `peon agent` on every node
/// (each with a data dir of its own: the server directories live there).
pub(crate) async fn daemon_on(cluster: &cluster_harness::TestCluster) -> support::Daemon {
    daemon_on_with(cluster, support::Opts::default()).await
}

/// [`daemon_on`] with more options.
pub(crate) async fn daemon_on_with(
    cluster: &cluster_harness::TestCluster,
    opts: support::Opts,
) -> support::Daemon {
    let d = support::Daemon::start_with(support::Opts {
        docker_host: Some(cluster.manager().socket.clone()),
        cluster: true,
        ..opts
    })
    .await;
    // The daemon makes the secret as it starts (in its own task).
    let secret = d.data.join("cluster.secret");
    support::wait_for(Duration::from_secs(30), "the cluster secret", || {
        let ok = secret.is_file() && std::fs::metadata(&secret).is_ok_and(|m| m.len() > 0);
        async move { ok.then_some(()) }
    })
    .await;
    cluster.start_agents(&secret, &d.instance).await;
    d
}

/// Runs the `peon` CLI against `d`.
async fn cli(d: &support::Daemon, args: &[&str]) -> (i32, String) {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_peon"))
        .args(args)
        .env("PEON_URL", &d.root)
        .env("PEON_API_KEY", &d.key)
        .env_remove("PEON_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run peon");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_listed_with_capacity_and_can_be_drained_and_labelled() {
    let Some(cluster) = cluster_harness::start(&[2, 3, 1]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let (s, v) = d.get("/nodes").await;
    assert_eq!(s, 200, "{v}");
    assert!(
        d.data.join("cluster.secret").is_file(),
        "cluster secret made"
    );
    let nodes = v.as_array().expect("array");
    assert_eq!(nodes.len(), 3, "{v}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        let n = nodes
            .iter()
            .find(|n| n["id"] == node.id.as_str())
            .unwrap_or_else(|| panic!("node {i} listed: {v}"));
        assert_eq!(n["hostname"], node.name.as_str());
        assert_eq!(n["address"], node.addr.as_str());
        assert_eq!(n["state"], "ready");
        assert_eq!(n["availability"], "active");
        assert_eq!(n["gameslots"], node.gameslots);
        assert_eq!(n["free_gameslots"], node.gameslots);
        assert!(n["cpus"].as_f64().unwrap_or(0.0) > 0.0, "{n}");
        assert!(n["memory_bytes"].as_i64().unwrap_or(0) > 0, "{n}");
        assert_eq!(n["servers"], serde_json::json!([]));
    }
    assert_eq!(nodes.iter().filter(|n| n["role"] == "manager").count(), 1);

    // Drain and label a worker, by hostname; the answer is the node as it is now.
    let w = &cluster.nodes[2];
    let (s, v) = d
        .put(
            &format!("/node/{}", w.name),
            serde_json::json!({"availability": "drain", "labels": {"zone": "b"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["availability"], "drain");
    assert_eq!(v["labels"]["zone"], "b");
    // Labels are merged; null removes one.
    let (s, v) = d
        .put(
            &format!("/node/{}", w.id),
            serde_json::json!({"availability": "active", "labels": {"zone": null, "rack": "3"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["availability"], "active");
    assert_eq!(v["labels"], serde_json::json!({"rack": "3"}));

    // Bad input and unknown nodes.
    let (s, v) = d
        .put(
            &format!("/node/{}", w.id),
            serde_json::json!({"availability": "asleep"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = d
        .put(
            "/node/nosuchnode",
            serde_json::json!({"availability": "drain"}),
        )
        .await;
    assert_eq!(s, 404);

    // The CLI: a table, --json, and `nodes set`.
    let (code, out) = cli(&d, &["nodes"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("HOSTNAME") && out.contains(&w.name), "{out}");
    let (code, out) = cli(&d, &["nodes", "set", &w.name, "-a", "pause", "-l", "x=y"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("pause") && out.contains("x=y"), "{out}");
    let (code, out) = cli(&d, &["nodes", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let n = v
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == w.id.as_str()).cloned())
        .expect("node in --json");
    assert_eq!(n["availability"], "pause");
    assert_eq!(n["labels"]["x"], "y");
}

#[tokio::test]
async fn nodes_answer_409_outside_cluster_mode() {
    let d = support::Daemon::start().await;
    let (s, v) = d.get("/nodes").await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["info"].as_str().unwrap_or("").contains("cluster mode"),
        "{v}"
    );
    // A move is a request that makes no sense on one host: 400.
    let (game, _) = d.new_game(1);
    let (s, v) = d
        .post(
            &format!("/server/move/{game}.one"),
            serde_json::json!({"node": "elsewhere"}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["info"].as_str().unwrap_or("").contains("cluster mode"),
        "{v}"
    );
}

/// The node id a server's service is pinned to, read from the manager.
async fn pinned(cluster: &cluster_harness::TestCluster, uid: &str) -> Option<String> {
    let filters =
        std::collections::HashMap::from([("label".to_owned(), vec![format!("peon.uid={uid}")])]);
    let list = cluster
        .docker()
        .list_services(Some(bollard::query_parameters::ListServicesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .ok()?;
    let s = list.into_iter().next()?;
    s.spec?
        .task_template?
        .placement?
        .constraints?
        .iter()
        .find_map(|c| c.strip_prefix("node.id==").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_placed_by_slots_and_ports_pinned_refused_with_reasons_and_drained() {
    let Some(cluster) = cluster_harness::start(&[1, 2, 0]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let (game, ports) = d.new_game(1);
    let port = ports[0];
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);

    // The first server goes to a node with a free slot; it answers at that node's address.
    let a = format!("{game}.a");
    let v = d.create_running(&a).await;
    let node_a = v["node"]["id"]
        .as_str()
        .expect("node in the object")
        .to_owned();
    assert!(node_a == n1.id || node_a == n2.id, "{v}");
    let addr_a = v["node"]["address"].as_str().expect("address").to_owned();
    assert_eq!(addr_a, cluster.node_by_id(&node_a).addr);
    assert_eq!(pinned(&cluster, &a).await.as_deref(), Some(node_a.as_str()));
    let said = support::wait_for(Duration::from_secs(30), "game A answers", || {
        let addr = addr_a.clone();
        async move { greeting(&addr, port).await }
    })
    .await;
    assert!(!said.is_empty());

    // The second (same port) goes to the other slotted node: the port is taken on the first.
    let b = format!("{game}.b");
    let v = d.create_running(&b).await;
    let node_b = v["node"]["id"].as_str().expect("node").to_owned();
    assert_ne!(node_b, node_a, "same port, other node: {v}");
    assert!(node_b == n1.id || node_b == n2.id, "{v}");

    // A third with the same port fits nowhere: 409 naming each node's reason.
    let (s, v) = d
        .put(
            &format!("/server/create/{game}.c"),
            serde_json::json!({"SERVER_NAME": "C"}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let info = v["info"].as_str().unwrap_or_default().to_owned();
    assert!(
        info.contains(&n3.name) && info.contains("no game slots"),
        "{info}"
    );
    assert!(
        info.contains("in use") || info.contains("no free game slot"),
        "{info}"
    );

    // GET /nodes counts the reservations and servers.
    let (_, nodes) = d.get("/nodes").await;
    let reserved: i64 = nodes
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["reserved"]["gameslots"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(reserved, 2, "{nodes}");

    // An explicit node: another game on node 2 (it has 2 slots).
    let (game2, _) = d.new_game(1);
    let e = format!("{game2}.e");
    let (s, v) = d
        .put(
            &format!("/server/create/{e}"),
            serde_json::json!({"SERVER_NAME": "E", "node": n2.name}),
        )
        .await;
    if node_a == n2.id || node_b == n2.id {
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["node"]["id"], n2.id.as_str(), "{v}");
        assert_eq!(pinned(&cluster, &e).await.as_deref(), Some(n2.id.as_str()));
    }

    // Drain node 2: peon never places there; its pinned servers are not moved by Swarm.
    let (s, v) = d
        .put(
            &format!("/node/{}", n2.id),
            serde_json::json!({"availability": "drain"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (game3, _) = d.new_game(1);
    let (s, v) = d
        .put(
            &format!("/server/create/{game3}.f"),
            serde_json::json!({"SERVER_NAME": "F", "node": n2.name}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["info"]
            .as_str()
            .unwrap_or_default()
            .contains("availability is drain"),
        "{v}"
    );
    let on_n2 = if node_a == n2.id { &a } else { &b };
    assert_eq!(
        pinned(&cluster, on_n2).await.as_deref(),
        Some(n2.id.as_str())
    );
    d.wait_server(on_n2, Duration::from_secs(60), |v| {
        v["container_state"] != "running"
    })
    .await;
    // A start while the node is drained is refused with Swarm's reason (the pin keeps the
    // task pending): the server is not moved behind the host's back.
    let (s, v) = d
        .put(&format!("/server/start/{on_n2}"), serde_json::json!({}))
        .await;
    assert_ne!(s, 200, "{v}");
    // Back to active: the server starts again on its node, with its world.
    let (s, _) = d
        .put(
            &format!("/node/{}", n2.id),
            serde_json::json!({"availability": "active"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = d
        .put(&format!("/server/start/{on_n2}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], n2.id.as_str(), "{v}");
    let addr2 = n2.addr.clone();
    support::wait_for(
        Duration::from_secs(60),
        "the pinned server back on its node",
        || {
            let addr = addr2.clone();
            async move { greeting(&addr, port).await }
        },
    )
    .await;

    // Destroy removes the service.
    let (s, v) = d
        .delete(&format!("/server/destroy/{a}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(pinned(&cluster, &a).await.is_none(), "service removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_on_the_node_reaches_the_live_model_with_its_code_and_stop_start_work() {
    let Some(cluster) = cluster_harness::start(&[1, 1]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.x");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            serde_json::json!({"SERVER_NAME": "X", "restart_policy": "never"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let node = cluster.node_by_id(v["node"]["id"].as_str().expect("node"));

    // Stop and start through the API: the service scales to 0 and back on its node.
    let (s, v) = d
        .put(&format!("/server/stop/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_ne!(v["container_state"], "running", "{v}");
    let (s, v) = d
        .put(&format!("/server/start/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["container_state"], "running", "{v}");

    // The game dies on its node (SIGKILL through that node's own engine): the task fails,
    // and peon's live model records the exit with the task's exit code.
    let nd = node.docker().expect("client on the node");
    let containers = nd
        .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        .await
        .expect("containers on the node");
    let id = containers
        .iter()
        .find(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("peon.uid"))
                .is_some_and(|u| u == &uid)
        })
        .and_then(|c| c.id.clone())
        .expect("the game's container on its node");
    nd.kill_container(
        &id,
        Some(bollard::query_parameters::KillContainerOptions {
            signal: "SIGKILL".into(),
        }),
    )
    .await
    .expect("kill");
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["container_state"] == "exited" && v["last_exit"]["exit_code"] == 137
        })
        .await;
    assert_eq!(v["node"]["id"], node.id.as_str(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_node_takes_its_own_keys_servers_only() {
    let Some(cluster) = cluster_harness::start(&[1, 2]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut secrets = Vec::new();
    for name in ["team-a", "team-b"] {
        let (s, v) = d
            .post(
                "/keys",
                serde_json::json!({"name": name, "role": "operator"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        secrets.push(v["secret"].as_str().expect("secret").to_owned());
    }
    let (s, v) = d
        .put(
            &format!("/node/{}", n2.id),
            serde_json::json!({"labels": {"peon.private": "team-a"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let create = |key: String, uid: String, node: Option<String>| {
        let d = &d;
        async move {
            let mut body = serde_json::json!({"SERVER_NAME": "P", "start_later": true});
            if let Some(n) = node {
                body["node"] = serde_json::json!(n);
            }
            d.call_as(
                &key,
                reqwest::Method::PUT,
                &format!("/server/create/{uid}"),
                Some(body),
            )
            .await
        }
    };
    // Another key: refused on the private node, even by name.
    let (game, _) = d.new_game(1);
    let (s, v) = create(
        secrets[1].clone(),
        format!("{game}.b"),
        Some(n2.name.clone()),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["info"]
            .as_str()
            .unwrap_or_default()
            .contains("private to another key"),
        "{v}"
    );
    // Without a node it goes to the public one.
    let (s, v) = create(secrets[1].clone(), format!("{game}.b"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], n1.id.as_str(), "{v}");
    // The owner places on its private node.
    let (game2, _) = d.new_game(1);
    let (s, v) = create(
        secrets[0].clone(),
        format!("{game2}.a"),
        Some(n2.name.clone()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], n2.id.as_str(), "{v}");
    // The server remembers the key that placed it (a failover places it by that key's rule).
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.server_dir(&format!("{game2}.a")).join(".peon.json")).expect(".peon.json"),
    )
    .expect("json");
    assert_eq!(state["placer"], "team-a", "{state}");

    // What a key sees of the nodes: the public ones and its own, each with its servers only.
    let seen = |key: String| {
        let d = &d;
        async move {
            let (s, v) = d.call_as(&key, reqwest::Method::GET, "/nodes", None).await;
            assert_eq!(s, 200, "{v}");
            v.as_array()
                .expect("nodes")
                .iter()
                .map(|n| {
                    let servers: Vec<String> = n["servers"]
                        .as_array()
                        .expect("servers")
                        .iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect();
                    (n["id"].as_str().unwrap_or_default().to_owned(), servers)
                })
                .collect::<std::collections::BTreeMap<String, Vec<String>>>()
        }
    };
    let b = seen(secrets[1].clone()).await;
    assert_eq!(b.keys().collect::<Vec<_>>(), [&n1.id], "{b:?}");
    let (s, v) = d
        .call_as(
            &secrets[1],
            reqwest::Method::GET,
            &format!("/node/{}", n2.id),
            None,
        )
        .await;
    assert_eq!(s, 404, "another key's private node is not told: {v}");
    assert_eq!(seen(secrets[0].clone()).await.len(), 2);

    // A node private to a scope: every key whose scope lists the game may use it.
    let (s, v) = d
        .put(
            &format!("/node/{}", n2.id),
            serde_json::json!({"labels": {"peon.private": "role:operator"}}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (game3, _) = d.new_game(1);
    let (s, v) = d
        .put(
            &format!("/node/{}", n2.id),
            serde_json::json!({"labels": {"peon.private": format!("scope:{game3}")}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for (name, role) in [("team-c", "operator"), ("team-d", "viewer")] {
        let (s, v) = d
            .post(
                "/keys",
                serde_json::json!({"name": name, "role": role, "scope": {"games": [game3]}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        secrets.push(v["secret"].as_str().expect("secret").to_owned());
    }
    // Its former owner, without that scope, is refused there now.
    let (s, v) = create(
        secrets[0].clone(),
        format!("{game3}.x"),
        Some(n2.name.clone()),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["info"]
            .as_str()
            .unwrap_or_default()
            .contains("private to another key"),
        "{v}"
    );
    let (s, v) = create(
        secrets[2].clone(),
        format!("{game3}.c"),
        Some(n2.name.clone()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], n2.id.as_str(), "{v}");
    // A viewer of the scope sees both nodes, and only the scope's servers on them.
    let dv = seen(secrets[3].clone()).await;
    assert_eq!(dv.get(&n1.id), Some(&vec![]), "{dv:?}");
    assert_eq!(dv.get(&n2.id), Some(&vec![format!("{game3}.c")]), "{dv:?}");
}

/// Sends a console command through the API once the console is attached (through the node's
/// agent, after the task runs): until then the API answers that it is not attached.
async fn command_when_attached(d: &support::Daemon, uid: &str, text: &str) {
    support::wait_for(Duration::from_secs(30), "the console attached", || async {
        let (s, _) = d
            .post(
                &format!("/server/command/{uid}"),
                serde_json::json!({ "command": text }),
            )
            .await;
        (s == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_logs_and_stats_of_a_game_on_a_worker_go_through_its_agent() {
    let Some(cluster) = cluster_harness::start(&[1, 1]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let worker = &cluster.nodes[1];
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.w");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            serde_json::json!({"SERVER_NAME": "W", "node": worker.id}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], worker.id.as_str(), "{v}");
    let (s, v) = d
        .put(&format!("/server/start/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["container_state"], "running", "{v}");

    // The console: attached on the worker through its agent; a line sent to the game's stdin
    // through the API's console comes back.
    // (It attaches once the task runs, so the game's first lines may precede it.)
    let mut c = support::Console::connect(&d, &uid).await;
    command_when_attached(&d, &uid, "through-the-agent").await;
    c.wait_line("console: through-the-agent").await;
    c.send("typed-in-the-console").await;
    c.wait_line("console: typed-in-the-console").await;

    // Logs and stats come from the worker's engine through the agent.
    let (s, v) = d.get(&format!("/server/logs/{uid}?lines=50")).await;
    assert_eq!(s, 200, "{v}");
    let logs = v["logs"].as_array().expect("logs").clone();
    assert!(
        logs.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("listening"))),
        "{v}"
    );
    let v = support::wait_for(Duration::from_secs(30), "stats of the game", || async {
        let (s, v) = d.get(&format!("/server/stats/{uid}")).await;
        (s == 200 && v["memory_bytes"].as_u64().is_some_and(|m| m > 0)).then_some(v)
    })
    .await;
    assert!(v["cpu_percent"].is_number(), "{v}");

    let (s, v) = d
        .delete(&format!("/server/destroy/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
}

/// The node whose engine runs a container of `uid` (its task), if any.
async fn running_on(cluster: &cluster_harness::TestCluster, uid: &str) -> Vec<String> {
    let mut on = Vec::new();
    for n in &cluster.nodes {
        let list = n
            .docker()
            .expect("client on a node's engine")
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .unwrap_or_default();
        if list.iter().any(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("peon.uid"))
                .is_some_and(|u| u == uid)
        }) {
            on.push(n.id.clone());
        }
    }
    on
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_takes_the_world_to_another_node_and_a_refused_one_changes_nothing() {
    let Some(cluster) = cluster_harness::start(&[1, 1, 1]).await else {
        return;
    };
    let d = daemon_on(&cluster).await;
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.mv");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            serde_json::json!({"SERVER_NAME": "M", "node": n1.id}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d
        .put(&format!("/server/start/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    // A world file in the folder the game mounts: on n1's own disk (the manager's copy is
    // not what the game uses).
    let world_on = |i: usize| cluster.node_server_dir(i, &uid).join("data/world.dat");
    let world = world_on(0);
    assert!(
        world.parent().is_some_and(|p| p.is_dir()),
        "n1 holds the server's directory"
    );
    assert!(!cluster.node_server_dir(1, &uid).exists());
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&world, &content).expect("world file");
    let before = peon::backup::archive::hex(&<sha2::Sha256 as sha2::Digest>::digest(&content));
    let still_on_n1 = |v: &serde_json::Value| {
        v["node"]["id"] == n1.id.as_str() && v["container_state"] == "running"
    };

    // Refused at once: no node given, no such node.
    let (s, v) = d
        .post(&format!("/server/move/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = d
        .post(
            &format!("/server/move/{uid}"),
            serde_json::json!({"node": "nowhere"}),
        )
        .await;
    assert_eq!(s, 404, "{v}");

    // A drained node cannot take it: 409 with the reason; nothing changed.
    let (s, v) = d
        .put(
            &format!("/node/{}", n3.id),
            serde_json::json!({"availability": "drain"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d
        .post(
            &format!("/server/move/{uid}"),
            serde_json::json!({"node": n3.name}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["info"]
            .as_str()
            .unwrap_or("")
            .contains("availability is drain"),
        "{v}"
    );
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert!(still_on_n1(&v), "{v}");

    // The target's agent is dead: refused before anything is touched.
    cluster.kill_agent(1);
    let (s, v) = d
        .post(
            &format!("/server/move/{uid}"),
            serde_json::json!({"node": n2.id}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert!(still_on_n1(&v), "{v}");
    assert_eq!(
        pinned(&cluster, &uid).await.as_deref(),
        Some(n1.id.as_str())
    );
    assert_eq!(running_on(&cluster, &uid).await, vec![n1.id.clone()]);

    // With its agent back, the move runs: the game runs on n2 with its world, n1 has no copy
    // of it running, the service is pinned to n2.
    let secret = d.data.join("cluster.secret");
    cluster.start_agent(1, &secret, &d.instance).await;
    let (s, v) = d
        .post(
            &format!("/server/move/{uid}"),
            serde_json::json!({"node": n2.id}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node"]["id"], n2.id.as_str(), "{v}");
    assert_eq!(v["node"]["address"], n2.addr.as_str(), "{v}");
    assert_eq!(v["container_state"], "running", "{v}");
    assert_eq!(
        pinned(&cluster, &uid).await.as_deref(),
        Some(n2.id.as_str())
    );
    assert_eq!(running_on(&cluster, &uid).await, vec![n2.id.clone()]);
    // The world was copied to n2's disk and n1's copy removed.
    let after = std::fs::read(world_on(1)).expect("world after the move");
    assert_eq!(
        peon::backup::archive::hex(&<sha2::Sha256 as sha2::Digest>::digest(&after)),
        before
    );
    assert!(
        !cluster.node_server_dir(0, &uid).exists(),
        "n1's copy is removed"
    );
    // The move is a job with its steps.
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=move")).await;
    let jobs = jobs.as_array().expect("jobs").clone();
    assert!(jobs.iter().any(|j| j["state"] == "succeeded"), "{jobs:?}");
    // The console works on the new node, through its agent.
    let mut c = support::Console::connect(&d, &uid).await;
    command_when_attached(&d, &uid, "after-the-move").await;
    c.wait_line("console: after-the-move").await;

    // The CLI: refused to the drained node (an error, nothing changed), then back to n1 (a
    // table with its node).
    let (code, _) = cli(&d, &["server", "move", &uid, &n3.name, "--json"]).await;
    assert_ne!(code, 0);
    assert_eq!(running_on(&cluster, &uid).await, vec![n2.id.clone()]);
    let (code, out) = cli(&d, &["server", "move", &uid, &n1.name]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NODE") && out.contains(&n1.name), "{out}");
    assert_eq!(running_on(&cluster, &uid).await, vec![n1.id.clone()]);
    assert_eq!(std::fs::read(&world).expect("world"), content);
    assert!(!cluster.node_server_dir(1, &uid).exists());

    let (s, v) = d
        .delete(&format!("/server/destroy/{uid}"), serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
}
