//! Cluster mode: where a new server goes. A node qualifies when it is ready and active, has a
//! free game slot, and one of the plan's port groups is free on it; among those the least
//! loaded (the smallest share of its game slots reserved) is chosen. A `node` given at create
//! must qualify itself. When none does, the conflict names why for each node. Once placed, a
//! server is pinned to its node (`node.id==<id>`): its world lives there.
//!
//! Private nodes: a node labelled `peon.private=<key name>` takes the servers of that key only
//! (and of the configured admin key); every other node is public.

use super::nodes::NodeView;
use super::{Result, ServerService, ServiceError};
use crate::model::plan::PortSpec;
use crate::names::Uid;
use crate::store::NodePin;

/// The node label that makes a node private to one API key (its value: the key's name).
pub const PRIVATE_LABEL: &str = "peon.private";
/// The configured key (admin, every server) may place on every node.
const ADMIN_KEY: &str = "admin";

/// Whether the key `placer` may place servers on `n`.
fn may_use(n: &NodeView, placer: Option<&str>) -> bool {
    match (n.labels.get(PRIVATE_LABEL), placer) {
        (None, _) => true,
        (Some(_), None) | (Some(_), Some(ADMIN_KEY)) => true,
        (Some(owner), Some(key)) => owner == key,
    }
}

/// Why a node cannot take a server, or `None` when it can (with the first free port group).
fn refusal(
    n: &NodeView,
    groups: &[Vec<PortSpec>],
    placer: Option<&str>,
) -> std::result::Result<usize, String> {
    if !may_use(n, placer) {
        return Err("private to another key".into());
    }
    if n.state != "ready" {
        return Err(format!("node is {}", n.state));
    }
    if n.availability != "active" {
        return Err(format!("node availability is {}", n.availability));
    }
    if n.gameslots == 0 {
        return Err("node offers no game slots (node-generic-resources gameslot=N)".into());
    }
    if n.free_gameslots < 1 {
        return Err(format!(
            "no free game slot ({} of {} reserved)",
            n.reserved.gameslots, n.gameslots
        ));
    }
    let clash = |g: &Vec<PortSpec>| {
        g.iter().find_map(|p| {
            p.protocols.iter().find_map(|pr| {
                let key = format!("{}/{}", p.port, pr.as_str());
                n.ports_in_use.contains(&key).then_some(key)
            })
        })
    };
    if groups.is_empty() {
        return Ok(0);
    }
    match groups.iter().position(|g| clash(g).is_none()) {
        Some(i) => Ok(i),
        None => Err(format!(
            "port {} in use",
            clash(&groups[0]).unwrap_or_default()
        )),
    }
}

/// Chooses a node (and the port group free there) among `nodes`.
pub(super) fn choose(
    nodes: &[NodeView],
    groups: &[Vec<PortSpec>],
    wanted: Option<&str>,
    placer: Option<&str>,
) -> std::result::Result<(NodeView, usize), Vec<(String, String)>> {
    let candidates: Vec<&NodeView> = match wanted {
        Some(w) => {
            let found: Vec<&NodeView> = nodes
                .iter()
                .filter(|n| n.id == w || n.hostname == w)
                .collect();
            if found.is_empty() {
                return Err(vec![(w.to_owned(), "no such node".into())]);
            }
            found
        }
        None => nodes.iter().collect(),
    };
    let mut fits: Vec<(&NodeView, usize)> = Vec::new();
    let mut reasons = Vec::new();
    for n in candidates {
        match refusal(n, groups, placer) {
            Ok(g) => fits.push((n, g)),
            Err(why) => reasons.push((n.hostname.clone(), why)),
        }
    }
    // Least loaded first: the smallest share of slots reserved, then the fewest servers.
    fits.sort_by(|(a, _), (b, _)| {
        let share = |n: &NodeView| n.reserved.gameslots as f64 / n.gameslots.max(1) as f64;
        share(a)
            .total_cmp(&share(b))
            .then(a.servers.len().cmp(&b.servers.len()))
            .then(a.hostname.cmp(&b.hostname))
    });
    match fits.first() {
        Some((n, g)) => Ok(((*n).clone(), *g)),
        None => Err(reasons),
    }
}

impl ServerService {
    /// Places a new server: its node and port group, or a conflict naming why each node
    /// cannot take it.
    pub(super) async fn place(
        &self,
        uid: &Uid,
        groups: &[Vec<PortSpec>],
        wanted: Option<&str>,
        placer: Option<&str>,
    ) -> Result<(NodePin, usize)> {
        self.place_among(uid, groups, wanted, placer, &|_| false)
            .await
    }

    /// The same, never on a node `skip` names (a failover avoids the lost node and every
    /// node that is down).
    pub(super) async fn place_among(
        &self,
        uid: &Uid,
        groups: &[Vec<PortSpec>],
        wanted: Option<&str>,
        placer: Option<&str>,
        skip: &(dyn Fn(&NodeView) -> bool + Sync),
    ) -> Result<(NodePin, usize)> {
        let began = std::time::Instant::now();
        let mut nodes = self.nodes().await?;
        nodes.retain(|n| !skip(n));
        // Servers placed a moment ago may have no service yet (a create in progress): their
        // node, slot and ports come from the store.
        for rec in self.store.list() {
            let Some(pin) = &rec.state.node else { continue };
            let Some(n) = nodes.iter_mut().find(|n| n.id == pin.id) else {
                continue;
            };
            let uid = rec.uid.to_string();
            if !n.servers.contains(&uid) {
                n.servers.push(uid);
                n.reserved.gameslots += 1;
                n.free_gameslots = (n.gameslots - n.reserved.gameslots).max(0);
            }
            for p in rec.plan.port_groups.first().into_iter().flatten() {
                for pr in &p.protocols {
                    let key = format!("{}/{}", p.port, pr.as_str());
                    if !n.ports_in_use.contains(&key) {
                        n.ports_in_use.push(key);
                    }
                }
            }
        }
        match choose(&nodes, groups, wanted, placer) {
            Ok((n, g)) => {
                tracing::info!(uid = %uid, node = %n.hostname, group = g, ms = began.elapsed().as_millis() as u64, "placed");
                Ok((
                    NodePin {
                        id: n.id,
                        hostname: n.hostname,
                        address: n.address,
                        data_dir: None,
                    },
                    g,
                ))
            }
            Err(reasons) => {
                let why: Vec<String> = reasons.iter().map(|(n, r)| format!("{n}: {r}")).collect();
                Err(ServiceError::Conflict(format!(
                    "No node can take [{uid}]: {}.",
                    why.join("; ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::plan::Protocol;
    use crate::service::NodeReserved;

    fn node(name: &str, slots: i64, reserved: i64) -> NodeView {
        NodeView {
            id: format!("id-{name}"),
            hostname: name.into(),
            address: "10.0.0.1".into(),
            role: "worker".into(),
            state: "ready".into(),
            availability: "active".into(),
            labels: HashMap::new(),
            cpus: 2.0,
            memory_bytes: 1,
            gameslots: slots,
            reserved: NodeReserved {
                gameslots: reserved,
                ..Default::default()
            },
            free_gameslots: (slots - reserved).max(0),
            ports_in_use: vec![],
            servers: vec![],
        }
    }

    fn group(port: u16) -> Vec<PortSpec> {
        vec![PortSpec {
            name: "PORT".into(),
            port,
            protocols: vec![Protocol::Udp],
            raw_protocol: "udp".into(),
        }]
    }

    #[test]
    fn the_least_loaded_node_with_room_and_free_ports_is_chosen() {
        let mut a = node("a", 4, 1);
        let b = node("b", 2, 1);
        let c = node("c", 2, 0);
        a.ports_in_use = vec!["1000/udp".into()];
        let (n, g) = choose(
            &[a.clone(), b.clone(), c.clone()],
            &[group(1000)],
            None,
            None,
        )
        .unwrap();
        assert_eq!((n.hostname.as_str(), g), ("c", 0));
        // c full: a has a free second group, b is half full.
        let c = node("c", 2, 2);
        let (n, g) = choose(&[a, b, c], &[group(1000), group(2000)], None, None).unwrap();
        assert_eq!((n.hostname.as_str(), g), ("a", 1));
    }

    #[test]
    fn nothing_fits_names_why_for_each_node() {
        let mut drained = node("d", 2, 0);
        drained.availability = "drain".into();
        let mut down = node("x", 2, 0);
        down.state = "down".into();
        let full = node("f", 1, 1);
        let mut ports = node("p", 2, 0);
        ports.ports_in_use = vec!["1000/udp".into()];
        let none = node("z", 0, 0);
        let reasons = choose(
            &[drained, down, full, ports, none],
            &[group(1000)],
            None,
            None,
        )
        .unwrap_err();
        let text = format!("{reasons:?}");
        for want in [
            "availability is drain",
            "node is down",
            "no free game slot (1 of 1 reserved)",
            "port 1000/udp in use",
            "no game slots",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }

    #[test]
    fn an_explicit_node_must_fit_itself() {
        let a = node("a", 2, 0);
        let b = node("b", 2, 1);
        let (n, _) = choose(&[a.clone(), b.clone()], &[group(1)], Some("b"), None).unwrap();
        assert_eq!(n.hostname, "b");
        let (n, _) = choose(&[a.clone(), b.clone()], &[group(1)], Some("id-a"), None).unwrap();
        assert_eq!(n.hostname, "a");
        assert!(choose(&[a, b], &[group(1)], Some("nope"), None).is_err());
    }

    #[test]
    fn a_private_node_takes_its_own_key_and_the_admin_only() {
        let mut p = node("p", 2, 0);
        p.labels.insert(PRIVATE_LABEL.into(), "team-a".into());
        let (n, _) = choose(&[p.clone()], &[group(1)], None, Some("team-a")).unwrap();
        assert_eq!(n.hostname, "p");
        assert!(choose(&[p.clone()], &[group(1)], None, Some(ADMIN_KEY)).is_ok());
        let why = choose(&[p.clone()], &[group(1)], None, Some("team-b")).unwrap_err();
        assert_eq!(why[0].1, "private to another key");
        // Public nodes stay open to everyone; a private one is preferred by nobody else.
        let public = node("q", 2, 1);
        let (n, _) = choose(&[p, public], &[group(1)], None, Some("team-b")).unwrap();
        assert_eq!(n.hostname, "q");
    }
}
