//! The cluster tests' swarm: [`peon::bench::swarm`] (3 node engines in network namespaces on
//! a private /24, a swarm among them, the stand-in game image loaded into each, gameslot
//! resources, everything torn down on drop), with the test game image and, when a test fails,
//! the node engines' logs.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ops::Deref;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::Docker;
use peon::bench::swarm::{self, Cluster, Node};

use crate::support::{self, GAME_IMAGE};

/// A test cluster; dropping it removes everything it made (its agents first).
pub struct TestCluster(Cluster, std::sync::Mutex<HashMap<usize, Child>>);

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
        for (i, mut c) in std::mem::take(&mut *self.agents()) {
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.0.nodes[i].dir.join("agent.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("--- {} agent.log (last lines) ---", self.0.nodes[i].name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
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

    /// Starts a `peon agent` in every node's namespace, listening on the node's address at
    /// [`peon::agent::DEFAULT_PORT`], talking to the node's engine, with `data_dir` as its data
    /// dir and the manager's secret file. All nodes share this machine's filesystem, so
    /// `data_dir` is the manager daemon's data dir: the path its services bind-mount on every
    /// node (in production each node has its own disk at that same path). Returns once every
    /// agent answers a signed ping.
    pub async fn start_agents(&self, data_dir: &Path, secret_file: &Path, instance: &str) {
        for i in 0..self.nodes.len() {
            self.start_agent(i, data_dir, secret_file, instance).await;
        }
    }

    /// Starts (or starts again) the agent of node `i`.
    pub async fn start_agent(&self, i: usize, data_dir: &Path, secret_file: &Path, instance: &str) {
        let node = &self.nodes[i];
        let listen = format!("{}:{}", node.addr, peon::agent::DEFAULT_PORT);
        let log = std::fs::File::create(node.dir.join("agent.log")).expect("agent log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.name,
                env!("CARGO_BIN_EXE_peon"),
                "agent",
            ])
            .args(["--listen", &listen, "--docker-host", &node.socket])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--instance", instance])
            .env("PEON_CLUSTER_SECRET_FILE", secret_file)
            .env_remove("PEON_CLUSTER_SECRET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("agent log"))
            .stderr(log)
            .spawn()
            .expect("start a node's agent");
        if let Some(mut old) = self.agents().insert(i, child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let secret = peon::agent::auth::Secret::from_file(secret_file).expect("cluster secret");
        let client = peon::agent::client::AgentClient::new(&listen, secret).expect("agent client");
        support::wait_for(Duration::from_secs(30), "a node's agent answers", || {
            let c = client.clone();
            async move { c.ping().await.ok() }
        })
        .await;
    }

    /// Kills the agent of node `i` (SIGKILL) and waits for it to be gone.
    pub fn kill_agent(&self, i: usize) {
        if let Some(mut c) = self.agents().remove(&i) {
            let _ = c.kill();
            let _ = c.wait();
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

    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Child>> {
        self.1.lock().unwrap_or_else(|p| p.into_inner())
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
        Ok(c) => Some(TestCluster(c, Default::default())),
        Err(e) => panic!("the test swarm did not start: {e}"),
    }
}

/// Labels `peon-test=<id>` so a test's services can be told apart.
pub fn test_labels(id: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("peon-test".to_owned(), id.to_owned())])
}
