//! Cluster mode: where a new server goes. A node qualifies when it is ready and active, has a
//! free game slot, and one of the plan's port groups is free on it; among those the least
//! loaded (the smallest share of its game slots reserved) is chosen. A `node` given at create
//! must qualify itself. When none does, the conflict names why for each node. Once placed, a
//! server is pinned to its node (`node.id==<id>`): its world lives there.
//!
//! Private nodes: the label `peon.private` makes a node private. Its value is either a key's
//! name (`peon.private=team-a`: that key only) or `scope:<game>` (`peon.private=scope:valheim`:
//! every key whose scope lists the game `valheim`). Admin keys may use every node; every node
//! without the label is public. A server remembers the key that placed it (`placer` in its
//! `.peon.json`), and a failover places it by that key's rule.

use super::nodes::NodeView;
use super::{Result, ServerService, ServiceError};
use crate::access::{Principal, Role};
use crate::model::plan::PortSpec;
use crate::names::Uid;
use crate::store::NodePin;

/// The node label that makes a node private (its value: a key's name, or `scope:<game>`).
pub const PRIVATE_LABEL: &str = "peon.private";
/// The prefix of a `peon.private` value that names a scope's game instead of a key.
pub const SCOPE_PREFIX: &str = "scope:";

/// Who places a server, as private nodes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placer {
    /// Every node: the daemon itself, or an admin key.
    Anyone,
    /// A key: public nodes, the nodes private to its name, and the nodes private to a game
    /// its scope lists (a key without a scope lists no game: it reaches every server, but
    /// belongs to no scope).
    Key { name: String, games: Vec<String> },
    /// Public nodes only (a server whose placing key is not known).
    Public,
}

impl Placer {
    /// The rule of a key as the key store has it: admin keys may use every node.
    pub fn of(p: &Principal) -> Placer {
        if p.role == Role::Admin {
            return Placer::Anyone;
        }
        Placer::Key {
            name: p.name.clone(),
            games: p
                .scope
                .as_ref()
                .map(|s| s.games.clone())
                .unwrap_or_default(),
        }
    }

    /// Whether this placer may use (and see) the node `n`.
    pub fn may_use(&self, n: &NodeView) -> bool {
        let Some(owner) = n.labels.get(PRIVATE_LABEL) else {
            return true;
        };
        match self {
            Placer::Anyone => true,
            Placer::Public => false,
            Placer::Key { name, games } => match owner.strip_prefix(SCOPE_PREFIX) {
                Some(game) => games.iter().any(|g| g == game),
                None => owner == name,
            },
        }
    }
}

/// Checks a `peon.private` value: a key name, or `scope:<game>`.
pub fn check_private_label(value: &str) -> std::result::Result<(), String> {
    let ok = match value.strip_prefix(SCOPE_PREFIX) {
        Some(game) => crate::names::game_id(game).is_ok(),
        None => crate::access::keys::check_name(value).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{PRIVATE_LABEL} {value:?}: give a key's name (team-a) or scope:<game> (scope:valheim)."
        ))
    }
}

/// The placement rule of the key named `key`, as `lookup` (the key store) knows it: `None` is
/// the daemon itself (every node); a key the store no longer has (revoked) keeps the rule of
/// its name alone.
pub(super) fn placer_named(
    key: Option<&str>,
    lookup: impl FnOnce(&str) -> Option<Principal>,
) -> Placer {
    let Some(name) = key else {
        return Placer::Anyone;
    };
    match lookup(name) {
        Some(p) => Placer::of(&p),
        None => Placer::Key {
            name: name.to_owned(),
            games: Vec::new(),
        },
    }
}

/// The rule a server is placed again by (a failover), from the `placer` its `.peon.json`
/// recorded: that key's rule, or public nodes only when none was recorded (a server created
/// before peon recorded it).
pub(super) fn placer_recorded(
    recorded: Option<&str>,
    lookup: impl FnOnce(&str) -> Option<Principal>,
) -> Placer {
    match recorded {
        Some(key) => placer_named(Some(key), lookup),
        None => Placer::Public,
    }
}

/// Why a node cannot take a server, or `None` when it can (with the first free port group).
fn refusal(
    n: &NodeView,
    groups: &[Vec<PortSpec>],
    placer: &Placer,
) -> std::result::Result<usize, String> {
    if !placer.may_use(n) {
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
    placer: &Placer,
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
    /// The placement rule of the key named `key` (see [`placer_named`]).
    pub(super) fn placer(&self, key: Option<&str>) -> Placer {
        placer_named(key, |n| self.access.keys.by_name(n))
    }

    /// The rule a server is placed again by on a failover (see [`placer_recorded`]).
    pub(super) fn placer_of(&self, rec: &crate::store::ServerRecord) -> Placer {
        placer_recorded(rec.state.placer.as_deref(), |n| self.access.keys.by_name(n))
    }

    /// Places a new server: its node and port group, or a conflict naming why each node
    /// cannot take it.
    pub(super) async fn place(
        &self,
        uid: &Uid,
        groups: &[Vec<PortSpec>],
        wanted: Option<&str>,
        placer: &Placer,
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
        placer: &Placer,
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
            &Placer::Anyone,
        )
        .unwrap();
        assert_eq!((n.hostname.as_str(), g), ("c", 0));
        // c full: a has a free second group, b is half full.
        let c = node("c", 2, 2);
        let (n, g) = choose(
            &[a, b, c],
            &[group(1000), group(2000)],
            None,
            &Placer::Anyone,
        )
        .unwrap();
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
            &Placer::Anyone,
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
        let (n, _) = choose(
            &[a.clone(), b.clone()],
            &[group(1)],
            Some("b"),
            &Placer::Anyone,
        )
        .unwrap();
        assert_eq!(n.hostname, "b");
        let (n, _) = choose(
            &[a.clone(), b.clone()],
            &[group(1)],
            Some("id-a"),
            &Placer::Anyone,
        )
        .unwrap();
        assert_eq!(n.hostname, "a");
        assert!(choose(&[a, b], &[group(1)], Some("nope"), &Placer::Anyone).is_err());
    }

    fn key(name: &str, games: &[&str]) -> Placer {
        Placer::Key {
            name: name.into(),
            games: games.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn private(name: &str, owner: &str) -> NodeView {
        let mut n = node(name, 2, 0);
        n.labels.insert(PRIVATE_LABEL.into(), owner.into());
        n
    }

    #[test]
    fn a_private_node_takes_its_own_key_and_the_admin_only() {
        let p = private("p", "team-a");
        let (n, _) = choose(
            std::slice::from_ref(&p),
            &[group(1)],
            None,
            &key("team-a", &[]),
        )
        .unwrap();
        assert_eq!(n.hostname, "p");
        assert!(choose(std::slice::from_ref(&p), &[group(1)], None, &Placer::Anyone).is_ok());
        let why = choose(
            std::slice::from_ref(&p),
            &[group(1)],
            None,
            &key("team-b", &[]),
        )
        .unwrap_err();
        assert_eq!(why[0].1, "private to another key");
        // Public nodes stay open to everyone; a private one is preferred by nobody else.
        let public = node("q", 2, 1);
        let (n, _) = choose(&[p, public], &[group(1)], None, &key("team-b", &[])).unwrap();
        assert_eq!(n.hostname, "q");
    }

    #[test]
    fn a_node_private_to_a_scope_takes_every_key_whose_scope_lists_the_game() {
        let p = private("p", "scope:valheim");
        for k in [key("a", &["valheim"]), key("b", &["ark", "valheim"])] {
            assert!(
                choose(std::slice::from_ref(&p), &[group(1)], None, &k).is_ok(),
                "{k:?}"
            );
        }
        // Another scope, no scope at all (every server, but of no scope), a key named like
        // the game: refused.
        for k in [key("c", &["ark"]), key("d", &[]), key("valheim", &[])] {
            let why = choose(std::slice::from_ref(&p), &[group(1)], None, &k).unwrap_err();
            assert_eq!(why[0].1, "private to another key", "{k:?}");
        }
        assert!(choose(&[p], &[group(1)], None, &Placer::Anyone).is_ok());
    }

    #[test]
    fn an_unknown_placer_gets_public_nodes_only() {
        let p = private("p", "team-a");
        let q = node("q", 2, 1);
        let why = choose(std::slice::from_ref(&p), &[group(1)], None, &Placer::Public).unwrap_err();
        assert_eq!(why[0].1, "private to another key");
        let (n, _) = choose(&[p, q], &[group(1)], None, &Placer::Public).unwrap();
        assert_eq!(n.hostname, "q");
    }

    #[test]
    fn placers_come_from_keys_and_label_values_are_checked() {
        use crate::access::Scope;
        let k = |role, scope| Principal {
            name: "k".into(),
            role,
            scope,
            configured: false,
        };
        assert_eq!(Placer::of(&Principal::configured_admin()), Placer::Anyone);
        assert_eq!(Placer::of(&k(Role::Admin, None)), Placer::Anyone);
        assert_eq!(Placer::of(&k(Role::Operator, None)), key("k", &[]));
        let scope = Scope {
            games: vec!["valheim".into()],
            uids: vec!["ark.island".into()],
        };
        assert_eq!(
            Placer::of(&k(Role::Viewer, Some(scope))),
            key("k", &["valheim"])
        );
        let store = |name: &str| (name == "k").then(|| k(Role::Operator, None));
        assert_eq!(placer_named(None, store), Placer::Anyone);
        assert_eq!(placer_named(Some("k"), store), key("k", &[]));
        assert_eq!(placer_named(Some("revoked"), store), key("revoked", &[]));
        // A failover: the recorded key's rule, or public nodes only.
        assert_eq!(placer_recorded(Some("k"), store), key("k", &[]));
        assert_eq!(placer_recorded(None, store), Placer::Public);
        assert_eq!(
            placer_recorded(Some("admin"), |_| Some(Principal::configured_admin())),
            Placer::Anyone
        );
        assert!(check_private_label("team-a").is_ok());
        assert!(check_private_label("scope:valheim").is_ok());
        for bad in ["", "Team A", "scope:", "scope:Bad!", "role:operator"] {
            assert!(check_private_label(bad).is_err(), "{bad}");
        }
    }
}
