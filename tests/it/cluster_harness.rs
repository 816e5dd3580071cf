//! The cluster tests' swarm: [`peon::bench::swarm`] (3 node engines in network namespaces on
//! a private /24, a swarm among them, the stand-in game image loaded into each, gameslot
//! resources, everything torn down on drop), with the test game image and, when a test fails,
//! the node engines' logs.

#![allow(dead_code)]

use std::ops::Deref;

use bollard::Docker;
use peon::bench::swarm::{self, Cluster, Node};

use crate::support::{self, GAME_IMAGE};

/// A test cluster; dropping it removes everything it made.
pub struct TestCluster(Cluster);

impl Deref for TestCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.log_tails(30));
        }
    }
}

impl TestCluster {
    /// A client on the manager's engine.
    pub fn docker(&self) -> Docker {
        self.0.docker().expect("client on the manager")
    }

    pub fn node_by_id(&self, id: &str) -> &Node {
        self.0
            .node_by_id(id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }
}

/// Starts a cluster with one node per entry of `gameslots` (the first is the manager), or says
/// why it cannot and returns `None` (the test then skips).
pub async fn start(gameslots: &[u32]) -> Option<TestCluster> {
    if let Some(why) = swarm::unavailable() {
        eprintln!("SKIPPED: this machine cannot run a test swarm: {why}");
        return None;
    }
    support::ensure_image().await;
    match swarm::start(gameslots, support::DOCKER, GAME_IMAGE).await {
        Ok(c) => Some(TestCluster(c)),
        Err(e) => panic!("the test swarm did not start: {e}"),
    }
}

/// Labels `peon-test=<id>` so a test's services can be told apart.
pub fn test_labels(id: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("peon-test".to_owned(), id.to_owned())])
}
