//! Host port checks: which host ports are taken, by whom, and which plan port group is free.

use std::collections::HashMap;

use super::{Result, ServerService, ServiceError};
use crate::model::plan::{PortSpec, Protocol};
use crate::names::Uid;
use crate::runtime::{ContainerInfo, labels};

/// Host ports in use and who holds them.
#[derive(Debug, Default)]
pub(super) struct TakenPorts {
    holders: HashMap<(u16, Protocol), String>,
}

impl TakenPorts {
    fn add(&mut self, port: u16, proto: Protocol, holder: String) {
        self.holders.entry((port, proto)).or_insert(holder);
    }

    /// The first clash of `group` with the taken ports: (`port/proto`, holder).
    pub(super) fn clash(&self, group: &[PortSpec]) -> Option<(String, String)> {
        group.iter().find_map(|p| {
            p.protocols.iter().find_map(|pr| {
                self.holders
                    .get(&(p.port, *pr))
                    .map(|h| (format!("{}/{}", p.port, pr.as_str()), h.clone()))
            })
        })
    }
}

/// The name a holder is shown by: a peon server's uid, otherwise the container name.
fn holder_name(c: &ContainerInfo) -> String {
    c.label(labels::UID)
        .map(str::to_owned)
        .unwrap_or_else(|| c.name.clone())
}

fn proto_of(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

impl ServerService {
    /// Host ports published by running containers on the whole engine, except `skip`'s own.
    /// In cluster mode only the containers on `skip`'s node count.
    pub(super) async fn running_ports(&self, skip: Option<&Uid>) -> Result<TakenPorts> {
        let own = skip.map(Uid::container_name);
        let node = skip
            .and_then(|u| self.store.get(u))
            .and_then(|r| r.state.node.clone());
        let mut taken = TakenPorts::default();
        for c in self.runtime.list_running().await? {
            if own.as_deref() == Some(c.name.as_str()) {
                continue;
            }
            if let Some(n) = &node
                && c.label(crate::runtime::labels::NODE) != Some(n.id.as_str())
            {
                continue;
            }
            for p in &c.ports {
                if let Some(proto) = proto_of(&p.protocol) {
                    taken.add(p.host_port, proto, holder_name(&c));
                }
            }
        }
        Ok(taken)
    }

    /// Adds the ports configured for the other servers of this daemon (running or not).
    pub(super) fn add_configured_ports(&self, taken: &mut TakenPorts, skip: &Uid) {
        for r in self.store.list() {
            if &r.uid == skip {
                continue;
            }
            if let Some(g) = r.plan.port_groups.first() {
                for p in g {
                    for pr in &p.protocols {
                        taken.add(p.port, *pr, r.uid.to_string());
                    }
                }
            }
        }
    }

    /// Picks the port group of a new server: the first group free of both running containers
    /// and other servers' configured ports; else the first group free of running containers
    /// (sharing ports with a stopped server); else a conflict naming the holder.
    pub(super) async fn choose_port_group(
        &self,
        uid: &Uid,
        groups: &[Vec<PortSpec>],
    ) -> Result<usize> {
        if groups.len() <= 1 {
            return Ok(0);
        }
        let running = self.running_ports(Some(uid)).await?;
        let mut all = TakenPorts {
            holders: running.holders.clone(),
        };
        self.add_configured_ports(&mut all, uid);
        if let Some(i) = groups.iter().position(|g| all.clash(g).is_none()) {
            return Ok(i);
        }
        if let Some(i) = groups.iter().position(|g| running.clash(g).is_none()) {
            return Ok(i);
        }
        Err(ports_in_use(uid, running.clash(&groups[0])))
    }

    /// Fails with `srv.portsused` when a running container holds a port `uid` needs.
    pub(super) async fn check_ports_free(&self, uid: &Uid, group: &[PortSpec]) -> Result<()> {
        let running = self.running_ports(Some(uid)).await?;
        match running.clash(group) {
            None => Ok(()),
            c => Err(ports_in_use(uid, c)),
        }
    }
}

fn ports_in_use(uid: &Uid, clash: Option<(String, String)>) -> ServiceError {
    let (port, holder) = clash.unwrap_or_else(|| ("?".into(), "another container".into()));
    ServiceError::PortsInUse(format!(
        "Server [{holder}] is using one or more of the ports required by [{uid}] (port {port})."
    ))
}
