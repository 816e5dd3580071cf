//! The cluster half of the runtime seam (cluster mode, issue 12): what peon needs of a Swarm
//! manager's engine, over peon's own types. The Docker module implements [`Swarm`] with
//! bollard's swarm, node, service and task calls.
//!
//! Node-local work (console attach, stats, logs, kill, files) cannot go through the manager
//! (attach and exec work only on the engine that runs the task): the cluster runtime asks a
//! per-node [`NodeDelegate`] for it (peon's agent on that node, wired by the daemon).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{NodeContainers, RtFuture};

/// The generic resource a node offers per game it can hold (`gameslot=N` in the node's daemon
/// config, `node-generic-resources`); each of peon's services reserves one.
pub const GAMESLOT: &str = "gameslot";

/// A node of the swarm as its manager reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// The address the node joined with (players reach host-mode ports there).
    pub address: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub labels: HashMap<String, String>,
    /// CPU capacity in billionths of a core.
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// The node's `gameslot` generic resources (0 when it offers none).
    pub gameslots: i64,
    pub engine_version: String,
}

/// A change of a node: each part given replaces what the node has.
#[derive(Debug, Clone, Default)]
pub struct NodeChange {
    /// `active`, `pause` or `drain`.
    pub availability: Option<String>,
    /// The node's labels, whole.
    pub labels: Option<HashMap<String, String>>,
}

/// What a service reserves on its node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    pub gameslots: i64,
}

/// A Swarm service as peon sees it.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// Replicas wanted (peon's services have 0 or 1).
    pub replicas: u64,
    /// The node id of its `node.id==<id>` placement constraint.
    pub pinned_to: Option<String>,
    pub reservation: Reservation,
    /// Host-mode ports published: `(port, "tcp"|"udp")`.
    pub ports: Vec<(u16, String)>,
}

impl ServiceInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A task (one run of a service's container on a node).
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub service_id: String,
    pub node_id: String,
    /// Swarm's task state: new, allocated, pending, assigned, accepted, preparing, ready, starting,
    /// running, complete, shutdown, failed, rejected, remove, orphaned.
    pub state: String,
    pub desired_state: String,
    pub exit_code: Option<i64>,
    /// The engine's message or error (why a task is pending, rejected or failed).
    pub message: String,
    pub container_id: Option<String>,
    /// When the task was made (RFC 3339): one task is one run.
    pub created: String,
    /// When the task's state last changed (RFC 3339).
    pub timestamp: String,
    /// Host ports it publishes while running.
    pub ports: Vec<(u16, String)>,
}

impl TaskInfo {
    /// The order of a service's tasks, oldest first: by when each was made (one task is one
    /// run), then by its last state change. The state change alone is not an order of runs:
    /// an old task's late change (its shutdown reported, its removal) would make it "newest"
    /// again.
    pub fn run_order(&self) -> (i64, i64) {
        let nanos = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(0)
        };
        (nanos(&self.created), nanos(&self.timestamp))
    }

    /// Whether the task still holds (or may soon hold) its node's resources.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state.as_str(),
            "new"
                | "allocated"
                | "pending"
                | "assigned"
                | "accepted"
                | "preparing"
                | "ready"
                | "starting"
                | "running"
        )
    }
}

/// What peon needs of a Swarm manager.
pub trait Swarm: Send + Sync + 'static {
    /// Every node of the swarm.
    fn nodes(&self) -> RtFuture<'_, Vec<NodeInfo>>;
    /// Changes a node's availability and/or labels.
    fn update_node<'a>(&'a self, id: &'a str, change: &'a NodeChange) -> RtFuture<'a, ()>;
    /// The services labelled `label=value`.
    fn services_labelled<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, Vec<ServiceInfo>>;
    /// Every task of the swarm (all services, any state the manager still keeps).
    fn tasks(&self) -> RtFuture<'_, Vec<TaskInfo>>;
    /// Whether the node at `address` answers now: its engine's Swarm gossip port
    /// ([`GOSSIP_PORT`], TCP, open between the nodes of every swarm) accepts a connection within
    /// [`PROBE_TIMEOUT`]. A node whose engine died refuses at once, long before its manager
    /// marks it down (its heartbeat timeout, 13-15 s here).
    fn probe<'a>(&'a self, address: &'a str) -> RtFuture<'a, bool>;
}

/// The TCP port of a Swarm node's gossip (memberlist), open on every node of a swarm.
pub const GOSSIP_PORT: u16 = 7946;
/// How long a node probe waits for a connection.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// Container-level work on the node that runs a server's task (peon's agent there): the
/// cluster runtime asks it for the engine of a node. `None` when the node has no agent wired.
pub trait NodeDelegate: Send + Sync + 'static {
    fn for_node(&self, node_id: &str) -> Option<Arc<dyn NodeContainers>>;
}
