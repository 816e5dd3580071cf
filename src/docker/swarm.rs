//! Swarm calls (cluster mode): nodes, services and tasks on a Swarm manager's engine, behind
//! the [`Swarm`] half of the runtime seam. bollard's types stop here.

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, GenericResources, Node, NodeSpecAvailabilityEnum, Service, Task,
};
use bollard::query_parameters::{ListServicesOptions, UpdateNodeOptions};
use serde::Serialize;

use super::Engine;
use crate::runtime::cluster::{
    GAMESLOT, NodeChange, NodeInfo, Reservation, ServiceInfo, Swarm, TaskInfo,
};
use crate::runtime::{Result, RtFuture, RuntimeError};

/// A bollard enum's wire name (`ready`, `drain`, `running`...).
pub(super) fn wire_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The count of discrete generic resource `kind` in `g`.
pub(super) fn generic(g: Option<&GenericResources>, kind: &str) -> i64 {
    g.into_iter()
        .flatten()
        .filter_map(|r| r.discrete_resource_spec.as_ref())
        .filter(|d| d.kind.as_deref() == Some(kind))
        .filter_map(|d| d.value)
        .sum()
}

fn node_info(n: Node) -> NodeInfo {
    let spec = n.spec.unwrap_or_default();
    let desc = n.description.unwrap_or_default();
    let res = desc.resources.unwrap_or_default();
    let status = n.status.unwrap_or_default();
    NodeInfo {
        id: n.id.unwrap_or_default(),
        hostname: desc.hostname.unwrap_or_default(),
        address: status.addr.unwrap_or_default(),
        role: spec.role.as_ref().map(wire_name).unwrap_or_default(),
        state: status.state.as_ref().map(wire_name).unwrap_or_default(),
        availability: spec
            .availability
            .as_ref()
            .map(wire_name)
            .unwrap_or_default(),
        labels: spec.labels.unwrap_or_default(),
        nano_cpus: res.nano_cpus.unwrap_or(0),
        memory_bytes: res.memory_bytes.unwrap_or(0),
        gameslots: generic(res.generic_resources.as_ref(), GAMESLOT),
        engine_version: desc
            .engine
            .and_then(|e| e.engine_version)
            .unwrap_or_default(),
    }
}

fn host_ports(ports: Option<&Vec<EndpointPortConfig>>) -> Vec<(u16, String)> {
    ports
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.published_port?).ok()?;
            let proto = p.protocol.as_ref().map(wire_name).unwrap_or_default();
            Some((
                port,
                if proto.is_empty() {
                    "tcp".into()
                } else {
                    proto
                },
            ))
        })
        .collect()
}

/// The node id of a `node.id==<id>` constraint.
pub(super) fn pinned_node(constraints: Option<&Vec<String>>) -> Option<String> {
    constraints.into_iter().flatten().find_map(|c| {
        let (k, v) = c.split_once("==")?;
        (k.trim() == "node.id").then(|| v.trim().to_owned())
    })
}

pub(super) fn service_info(s: Service) -> ServiceInfo {
    let spec = s.spec.unwrap_or_default();
    let task = spec.task_template.unwrap_or_default();
    let reservations = task
        .resources
        .and_then(|r| r.reservations)
        .unwrap_or_default();
    let replicas = spec
        .mode
        .and_then(|m| m.replicated)
        .and_then(|r| r.replicas)
        .unwrap_or(0)
        .max(0) as u64;
    ServiceInfo {
        id: s.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        labels: spec.labels.unwrap_or_default(),
        replicas,
        pinned_to: pinned_node(task.placement.and_then(|p| p.constraints).as_ref()),
        reservation: Reservation {
            nano_cpus: reservations.nano_cpus.unwrap_or(0),
            memory_bytes: reservations.memory_bytes.unwrap_or(0),
            gameslots: generic(reservations.generic_resources.as_ref(), GAMESLOT),
        },
        ports: host_ports(spec.endpoint_spec.and_then(|e| e.ports).as_ref()),
    }
}

pub(super) fn task_info(t: Task) -> TaskInfo {
    let status = t.status.unwrap_or_default();
    let cs = status.container_status.unwrap_or_default();
    let message = match (status.err, status.message) {
        (Some(e), _) if !e.is_empty() => e,
        (_, Some(m)) => m,
        _ => String::new(),
    };
    TaskInfo {
        id: t.id.unwrap_or_default(),
        service_id: t.service_id.unwrap_or_default(),
        node_id: t.node_id.unwrap_or_default(),
        state: status.state.as_ref().map(wire_name).unwrap_or_default(),
        desired_state: t.desired_state.as_ref().map(wire_name).unwrap_or_default(),
        exit_code: cs.exit_code,
        message,
        container_id: cs.container_id.filter(|c| !c.is_empty()),
        created: t.created_at.map(|t| t.to_string()).unwrap_or_default(),
        timestamp: status.timestamp.map(|t| t.to_string()).unwrap_or_default(),
        ports: host_ports(status.port_status.and_then(|p| p.ports).as_ref()),
    }
}

impl Engine {
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>> {
        let c = self.client().await?;
        match c.list_nodes(None).await {
            Ok(nodes) => Ok(nodes.into_iter().map(node_info).collect()),
            Err(e) => Err(self.fail("list nodes", e).await),
        }
    }

    pub async fn update_node(&self, id: &str, change: &NodeChange) -> Result<()> {
        let c = self.client().await?;
        let node = match c.inspect_node(id).await {
            Ok(n) => n,
            Err(e) => return Err(self.fail(&format!("node {id}"), e).await),
        };
        let version = node.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = node.spec.unwrap_or_default();
        if let Some(a) = &change.availability {
            spec.availability = Some(match a.as_str() {
                "active" => NodeSpecAvailabilityEnum::ACTIVE,
                "pause" => NodeSpecAvailabilityEnum::PAUSE,
                "drain" => NodeSpecAvailabilityEnum::DRAIN,
                other => {
                    return Err(RuntimeError::Engine(format!(
                        "unknown node availability {other:?}"
                    )));
                }
            });
        }
        if let Some(l) = &change.labels {
            spec.labels = Some(l.clone());
        }
        let opts = UpdateNodeOptions {
            version: i64::try_from(version).unwrap_or(i64::MAX),
        };
        tracing::info!(node = %id, availability = ?change.availability, "updating a swarm node");
        match c.update_node(id, spec, opts).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(&format!("update node {id}"), e).await),
        }
    }

    pub async fn services_labelled(&self, label: &str, value: &str) -> Result<Vec<ServiceInfo>> {
        let c = self.client().await?;
        let filters = HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
        let opts = ListServicesOptions {
            filters: Some(filters),
            ..Default::default()
        };
        match c.list_services(Some(opts)).await {
            Ok(s) => Ok(s.into_iter().map(service_info).collect()),
            Err(e) => Err(self.fail("list services", e).await),
        }
    }

    /// Every service of the swarm.
    pub async fn services_labelled_any(&self) -> Result<Vec<ServiceInfo>> {
        let c = self.client().await?;
        match c.list_services(None::<ListServicesOptions>).await {
            Ok(s) => Ok(s.into_iter().map(service_info).collect()),
            Err(e) => Err(self.fail("list services", e).await),
        }
    }

    pub async fn list_tasks(&self) -> Result<Vec<TaskInfo>> {
        let c = self.client().await?;
        match c.list_tasks(None).await {
            Ok(t) => Ok(t.into_iter().map(task_info).collect()),
            Err(e) => Err(self.fail("list tasks", e).await),
        }
    }
}

impl Swarm for Engine {
    fn nodes(&self) -> RtFuture<'_, Vec<NodeInfo>> {
        Box::pin(self.list_nodes())
    }
    fn update_node<'a>(&'a self, id: &'a str, change: &'a NodeChange) -> RtFuture<'a, ()> {
        Box::pin(Engine::update_node(self, id, change))
    }
    fn services_labelled<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, Vec<ServiceInfo>> {
        Box::pin(Engine::services_labelled(self, label, value))
    }
    fn tasks(&self) -> RtFuture<'_, Vec<TaskInfo>> {
        Box::pin(self.list_tasks())
    }
    fn probe<'a>(&'a self, address: &'a str) -> RtFuture<'a, bool> {
        Box::pin(probe_node(address))
    }
}

/// Connects to a node's Swarm gossip port with a short timeout (see [`Swarm::probe`]).
async fn probe_node(address: &str) -> Result<bool> {
    use crate::runtime::cluster::{GOSSIP_PORT, PROBE_TIMEOUT};
    // An address the manager does not know (a manager may report 0.0.0.0) cannot be probed:
    // the manager's own view of the node decides alone.
    let Ok(ip) = address.parse::<std::net::IpAddr>() else {
        return Ok(true);
    };
    if ip.is_unspecified() {
        return Ok(true);
    }
    let connect = tokio::net::TcpStream::connect((ip, GOSSIP_PORT));
    Ok(matches!(
        tokio::time::timeout(PROBE_TIMEOUT, connect).await,
        Ok(Ok(_))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_read_from_the_node_id_constraint() {
        let c = vec!["node.role==worker".to_owned(), "node.id == abc".to_owned()];
        assert_eq!(pinned_node(Some(&c)).as_deref(), Some("abc"));
        assert_eq!(pinned_node(None), None);
    }
}
