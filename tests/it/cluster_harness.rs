//! The cluster tests' swarm: [`peon::bench::swarm`] (3 node engines in network namespaces on
//! a private /24, a swarm among them, the stand-in game image loaded into each, gameslot
//! resources, everything torn down on drop), with the test game image and, when a test fails,
//! the node engines' logs.

#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};

use bollard::Docker;
use peon::bench::swarm::{self, Cluster, Node};

use crate::support::{self, GAME_IMAGE};

/// At most this many test swarms run at once (each is 2-3 engines, their agents and games):
/// the other tests go on beside them, and a 2-core machine is not swamped.
static SWARMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A test cluster; dropping it removes everything it made (its agents first), then lets the
/// next test swarm start.
pub struct TestCluster(Cluster, tokio::sync::SemaphorePermit<'static>);

impl Deref for TestCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl std::ops::DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.0
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.0.nodes {
                let log = std::fs::read_to_string(n.dir.join("agent.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("--- {} agent.log (last lines) ---", n.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
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

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> usize {
        self.0
            .nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// Where node `i`'s agent keeps the directory of `uid` (`game.name`): each node has a data
    /// dir of its own ([`Cluster::node_data`]), as each machine has its own disk.
    pub fn node_server_dir(&self, i: usize, uid: &str) -> PathBuf {
        let (game, name) = uid.split_once('.').expect("a uid");
        self.0.node_data(i).join("servers").join(game).join(name)
    }

    /// Starts a `peon agent` in every node's namespace, listening on the node's address at
    /// [`peon::agent::DEFAULT_PORT`], talking to the node's engine, with a data dir of its own
    /// and the manager's secret file. Returns once every agent answers a signed ping.
    pub async fn start_agents(&self, secret_file: &Path, instance: &str) {
        for i in 0..self.nodes.len() {
            self.start_agent(i, secret_file, instance).await;
        }
    }

    /// Starts (or starts again) the agent of node `i`.
    pub async fn start_agent(&self, i: usize, secret_file: &Path, instance: &str) {
        let exe = Path::new(env!("CARGO_BIN_EXE_peon"));
        if let Err(e) = self.0.start_agent(i, exe, secret_file, instance).await {
            panic!("node {i}'s agent did not start: {e}");
        }
    }

    /// SIGKILLs node `i`'s engine, as a node that dies would.
    pub fn kill_engine(&mut self, i: usize) {
        self.0.kill_engine(i);
    }

    /// Starts node `i`'s engine again (same config, data and swarm state) and waits for it.
    pub async fn restart_engine(&mut self, i: usize) {
        if let Err(e) = self.0.restart_engine(i).await {
            panic!("node {i}'s engine did not come back: {e}");
        }
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
    let permit = SWARMS
        .acquire()
        .await
        .expect("the swarm semaphore is never closed");
    match swarm::start(gameslots, support::DOCKER, GAME_IMAGE).await {
        Ok(c) => Some(TestCluster(c, permit)),
        Err(e) => panic!("the test swarm did not start: {e}"),
    }
}

/// Labels `peon-test=<id>` so a test's services can be told apart.
pub fn test_labels(id: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("peon-test".to_owned(), id.to_owned())])
}
