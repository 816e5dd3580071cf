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
