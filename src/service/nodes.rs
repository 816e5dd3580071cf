//! Cluster mode: the nodes of the swarm (`GET /nodes`, `PUT /node/<id>`), with what peon's
//! servers reserve and use on each. Everything is read from the manager (nodes, peon's
//! services, tasks) at each call: the swarm is the source of truth for placement.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::placement::{self, Placer};
use super::{Result, ServerService, ServiceError};
use crate::access::Principal;
use crate::runtime::cluster::{NodeChange, NodeInfo, ServiceInfo, Swarm, TaskInfo};
use crate::runtime::labels;

/// What peon's servers reserve on a node.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct NodeReserved {
    /// Game slots held by peon's servers pinned to the node (running or not: a stopped
    /// server's world lives there and it needs its slot back to start).
    pub gameslots: i64,
    pub memory_bytes: i64,
    /// CPU cores reserved.
    pub cpus: f64,
}

/// A node of the cluster (`GET /nodes`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    /// Where players reach the games on this node (host-mode ports).
    pub address: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    /// `active`, `pause` (no new tasks) or `drain` (tasks moved off; peon never places there).
    pub availability: String,
    pub labels: HashMap<String, String>,
    /// CPU capacity in cores.
    pub cpus: f64,
    pub memory_bytes: i64,
    /// Game slots the node offers (`node-generic-resources: gameslot=N`).
    pub gameslots: i64,
    pub reserved: NodeReserved,
    /// `gameslots - reserved.gameslots` (never below 0).
    pub free_gameslots: i64,
    /// Host ports taken on the node (by peon's servers pinned there, or any running task), as
    /// `port/proto`; every other port is free.
    pub ports_in_use: Vec<String>,
    /// The uids of peon's servers pinned to the node.
    pub servers: Vec<String>,
}

/// A change asked for by `PUT /node/<id>`.
#[derive(Debug, Clone, Default)]
pub struct NodeUpdate {
    pub availability: Option<String>,
    /// Labels to set (a `None` value removes the label); others are kept.
    pub labels: BTreeMap<String, Option<String>>,
}

const NANO: f64 = 1_000_000_000.0;

/// Builds the node views from what the manager says.
pub(super) fn views(
    nodes: Vec<NodeInfo>,
    services: &[ServiceInfo],
    tasks: &[TaskInfo],
) -> Vec<NodeView> {
    let mut out: Vec<NodeView> = nodes
        .into_iter()
        .map(|n| {
            let mine: Vec<&ServiceInfo> = services
                .iter()
                .filter(|s| s.pinned_to.as_deref() == Some(n.id.as_str()))
                .collect();
            let reserved = NodeReserved {
                gameslots: mine.iter().map(|s| s.reservation.gameslots).sum(),
                memory_bytes: mine.iter().map(|s| s.reservation.memory_bytes).sum(),
                cpus: mine.iter().map(|s| s.reservation.nano_cpus).sum::<i64>() as f64 / NANO,
            };
            let mut ports: BTreeSet<(u16, String)> =
                mine.iter().flat_map(|s| s.ports.iter().cloned()).collect();
            ports.extend(
                tasks
                    .iter()
                    .filter(|t| t.node_id == n.id && t.is_live())
                    .flat_map(|t| t.ports.iter().cloned()),
            );
            let mut servers: Vec<String> = mine
                .iter()
                .filter_map(|s| s.label(labels::UID).map(str::to_owned))
                .collect();
            servers.sort();
            NodeView {
                free_gameslots: (n.gameslots - reserved.gameslots).max(0),
                id: n.id,
                hostname: n.hostname,
                address: n.address,
                role: n.role,
                state: n.state,
                availability: n.availability,
                labels: n.labels,
                cpus: n.nano_cpus as f64 / NANO,
                memory_bytes: n.memory_bytes,
                gameslots: n.gameslots,
                reserved,
                ports_in_use: ports.into_iter().map(|(p, t)| format!("{p}/{t}")).collect(),
                servers,
            }
        })
        .collect();
    out.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    out
}

/// What the key `who` sees of `nodes`: the nodes it may place on (public ones, and the ones
/// private to its name or its scope; every node for an admin key), each listing only the
/// servers in its scope. Capacity, reservations and ports stay the node's whole: they are
/// what placement goes by.
pub fn visible_to(nodes: Vec<NodeView>, who: &Principal) -> Vec<NodeView> {
    let placer = Placer::of(who);
    nodes
        .into_iter()
        .filter(|n| placer.may_use(n))
        .map(|mut n| {
            n.servers.retain(|u| who.sees_uid(u));
            n
        })
        .collect()
}

/// A node label key peon accepts: 1 to 128 of `a-z A-Z 0-9 . _ -`, starting with a letter or
/// digit.
fn valid_label_key(k: &str) -> bool {
    (1..=128).contains(&k.len())
        && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl ServerService {
    /// Turns cluster mode on: node operations go to this swarm manager.
    pub fn set_cluster(&self, swarm: Arc<dyn Swarm>) {
        let _ = self.cluster.set(swarm);
    }

    /// Cluster mode: the agents of the nodes (node-local work, moves).
    pub fn set_agents(&self, agents: Arc<crate::agent::delegate::AgentDelegate>) {
        let _ = self.agents.set(agents);
    }

    /// The agents of the nodes; `None` in single-host mode.
    pub fn agents(&self) -> Option<&Arc<crate::agent::delegate::AgentDelegate>> {
        self.agents.get()
    }

    /// The swarm, or a conflict saying peon is not in cluster mode.
    pub(super) fn swarm(&self) -> Result<&Arc<dyn Swarm>> {
        self.cluster.get().ok_or_else(|| {
            ServiceError::Conflict(
                "peon is not in cluster mode (start it with --cluster against a Swarm manager)."
                    .into(),
            )
        })
    }

    /// Every node with its capacity, what peon's servers reserve there and its servers.
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        let swarm = self.swarm()?;
        let (nodes, services, tasks) = tokio::try_join!(
            swarm.nodes(),
            swarm.services_labelled(labels::INSTANCE, &self.settings.instance),
            swarm.tasks(),
        )?;
        Ok(views(nodes, &services, &tasks))
    }

    /// One node; `NotFound` when the swarm has none with this id (or hostname).
    pub async fn node(&self, id: &str) -> Result<NodeView> {
        self.nodes()
            .await?
            .into_iter()
            .find(|n| n.id == id || n.hostname == id)
            .ok_or_else(|| ServiceError::NotFound(format!("There is no node [{id}].")))
    }

    /// The nodes the key `who` sees (see [`visible_to`]).
    pub async fn nodes_for(&self, who: &Principal) -> Result<Vec<NodeView>> {
        Ok(visible_to(self.nodes().await?, who))
    }

    /// One node as the key `who` sees it; `NotFound` as well for a node private to another
    /// key or scope (its existence is not told).
    pub async fn node_for(&self, id: &str, who: &Principal) -> Result<NodeView> {
        self.nodes_for(who)
            .await?
            .into_iter()
            .find(|n| n.id == id || n.hostname == id)
            .ok_or_else(|| ServiceError::NotFound(format!("There is no node [{id}].")))
    }

    /// Changes a node's availability and labels (others kept; a `None` value removes one).
    pub async fn update_node(&self, id: &str, update: NodeUpdate) -> Result<NodeView> {
        if let Some(a) = &update.availability
            && !matches!(a.as_str(), "active" | "pause" | "drain")
        {
            return Err(ServiceError::BadRequest(format!(
                "availability {a:?}: use active, pause or drain."
            )));
        }
        if let Some(bad) = update.labels.keys().find(|k| !valid_label_key(k)) {
            return Err(ServiceError::BadRequest(format!(
                "label key {bad:?}: use 1 to 128 letters, digits, '.', '_' or '-'."
            )));
        }
        if let Some(Some(owner)) = update.labels.get(placement::PRIVATE_LABEL) {
            placement::check_private_label(owner).map_err(ServiceError::BadRequest)?;
        }
        let swarm = self.swarm()?;
        let node = self.node(id).await?;
        let labels = (!update.labels.is_empty()).then(|| {
            let mut l = node.labels.clone();
            for (k, v) in &update.labels {
                match v {
                    Some(v) => l.insert(k.clone(), v.clone()),
                    None => l.remove(k),
                };
            }
            l
        });
        let change = NodeChange {
            availability: update.availability,
            labels,
        };
        swarm.update_node(&node.id, &change).await?;
        self.node(&node.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cluster::Reservation;

    fn node(id: &str, slots: i64) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: format!("h-{id}"),
            address: format!("10.0.0.{}", slots),
            role: "worker".into(),
            state: "ready".into(),
            availability: "active".into(),
            labels: HashMap::new(),
            nano_cpus: 2_000_000_000,
            memory_bytes: 1 << 30,
            gameslots: slots,
            engine_version: "20.10".into(),
        }
    }

    #[test]
    fn reservations_ports_and_servers_are_counted_per_node() {
        let svc = |uid: &str, node: &str, port: u16| ServiceInfo {
            id: format!("s-{uid}"),
            name: uid.into(),
            labels: HashMap::from([(labels::UID.to_owned(), uid.to_owned())]),
            replicas: 1,
            pinned_to: Some(node.into()),
            reservation: Reservation {
                nano_cpus: 500_000_000,
                memory_bytes: 100,
                gameslots: 1,
            },
            ports: vec![(port, "udp".into())],
        };
        let services = vec![svc("g.a", "n1", 1000), svc("g.b", "n1", 1001)];
        let other = TaskInfo {
            id: "t".into(),
            service_id: "x".into(),
            node_id: "n2".into(),
            state: "running".into(),
            desired_state: "running".into(),
            exit_code: None,
            message: String::new(),
            container_id: None,
            created: String::new(),
            timestamp: String::new(),
            ports: vec![(80, "tcp".into())],
        };
        let v = views(vec![node("n1", 3), node("n2", 1)], &services, &[other]);
        assert_eq!(v[0].id, "n1");
        assert_eq!(v[0].reserved.gameslots, 2);
        assert_eq!(v[0].free_gameslots, 1);
        assert_eq!(v[0].reserved.cpus, 1.0);
        assert_eq!(v[0].servers, vec!["g.a", "g.b"]);
        assert_eq!(v[0].ports_in_use, vec!["1000/udp", "1001/udp"]);
        assert_eq!(v[1].ports_in_use, vec!["80/tcp"]);
        assert_eq!(v[1].free_gameslots, 1);
    }

    #[test]
    fn a_key_sees_public_nodes_its_own_private_ones_and_its_servers_only() {
        use crate::access::{Role, Scope};
        let services = vec![
            ServiceInfo {
                id: "s1".into(),
                name: "v.a".into(),
                labels: HashMap::from([(labels::UID.to_owned(), "valheim.a".to_owned())]),
                replicas: 0,
                pinned_to: Some("n1".into()),
                reservation: Reservation::default(),
                ports: vec![],
            },
            ServiceInfo {
                id: "s2".into(),
                name: "a.b".into(),
                labels: HashMap::from([(labels::UID.to_owned(), "ark.b".to_owned())]),
                replicas: 0,
                pinned_to: Some("n1".into()),
                reservation: Reservation::default(),
                ports: vec![],
            },
        ];
        let mut nodes = vec![node("n1", 2), node("n2", 2), node("n3", 2), node("n4", 2)];
        nodes[1]
            .labels
            .insert(placement::PRIVATE_LABEL.into(), "team-a".into());
        nodes[2]
            .labels
            .insert(placement::PRIVATE_LABEL.into(), "scope:valheim".into());
        nodes[3]
            .labels
            .insert(placement::PRIVATE_LABEL.into(), "team-b".into());
        let all = views(nodes, &services, &[]);
        let key = |name: &str, role, games: &[&str]| Principal {
            name: name.into(),
            role,
            scope: (!games.is_empty()).then(|| Scope {
                games: games.iter().map(|g| (*g).to_owned()).collect(),
                uids: vec![],
            }),
            configured: false,
        };
        let seen = |who: &Principal| -> Vec<(String, Vec<String>)> {
            visible_to(all.clone(), who)
                .into_iter()
                .map(|n| (n.id, n.servers))
                .collect()
        };
        let both = vec!["ark.b".to_owned(), "valheim.a".to_owned()];
        // Admin: everything.
        assert_eq!(seen(&Principal::configured_admin()).len(), 4);
        assert_eq!(seen(&key("boss", Role::Admin, &[]))[0].1, both);
        // team-a, no scope: the public node with every server, and its own.
        assert_eq!(
            seen(&key("team-a", Role::Operator, &[])),
            vec![("n1".into(), both.clone()), ("n2".into(), vec![])]
        );
        // A key scoped to valheim: the public node with its server only, and the scope's node.
        assert_eq!(
            seen(&key("v", Role::Viewer, &["valheim"])),
            vec![
                ("n1".into(), vec!["valheim.a".to_owned()]),
                ("n3".into(), vec![])
            ]
        );
    }

    #[test]
    fn label_keys_are_checked() {
        assert!(valid_label_key("peon.private"));
        assert!(!valid_label_key(""));
        assert!(!valid_label_key(".x"));
        assert!(!valid_label_key("a b"));
    }
}
