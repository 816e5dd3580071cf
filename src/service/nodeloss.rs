//! Cluster mode: node loss seen within seconds. A watcher reads the manager's nodes every
//! [`NODE_POLL`] and probes each node's address ([`Swarm::probe`]): a node is down when its
//! manager says it is not `ready`, or when it failed [`PROBE_FAILS`] probes in a row (a dead
//! engine refuses at once, while Swarm marks the node down only after its heartbeat timeout,
//! 13-15 s here). It is up again when the manager says `ready` and it answers a probe.
//!
//! A server whose node is down shows `server_state` `unreachable`; its servers get the live
//! events `node_down` / `node_up`; actions on it are queued (`pending.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ServerService;
use crate::live::events::EventKind;
use crate::names::Uid;
use crate::runtime::cluster::Swarm;

/// How often the watcher reads the nodes and probes them.
pub const NODE_POLL: Duration = Duration::from_secs(1);
/// Failed probes in a row that make a node down.
pub const PROBE_FAILS: u32 = 2;

/// What the watcher knows of the nodes.
#[derive(Default)]
pub(super) struct NodeHealth {
    nodes: Mutex<HashMap<String, Seen>>,
    /// Bumped when a node goes down or comes back, and after the first round (the pending
    /// queues wait on it).
    changed: tokio::sync::watch::Sender<u64>,
    /// True once the watcher judged every node once (before, nothing is known to be up).
    judged: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Seen {
    fails: u32,
    /// Since when it is down.
    down: Option<Instant>,
}

/// A node's change, as the watcher saw it.
enum Change {
    Down,
    Up(Duration),
}

impl NodeHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one observation of a node; returns its change, if any.
    fn observe(&self, id: &str, swarm_ready: bool, answered: bool) -> Option<Change> {
        let mut nodes = self.lock();
        let first = !nodes.contains_key(id);
        let seen = nodes.entry(id.to_owned()).or_default();
        seen.fails = if answered { 0 } else { seen.fails + 1 };
        // A node seen for the first time (a daemon start) is judged on one probe.
        let down = !swarm_ready || seen.fails >= PROBE_FAILS || (first && !answered);
        let up = swarm_ready && answered;
        match seen.down {
            None if down => {
                seen.down = Some(Instant::now());
                Some(Change::Down)
            }
            Some(since) if up => {
                seen.down = None;
                Some(Change::Up(since.elapsed()))
            }
            _ => None,
        }
    }

    pub(super) fn is_down(&self, node: &str) -> bool {
        self.lock().get(node).is_some_and(|s| s.down.is_some())
    }

    /// How long `node` has been down, when it is.
    pub(super) fn down_for(&self, node: &str) -> Option<Duration> {
        self.lock()
            .get(node)
            .and_then(|s| s.down)
            .map(|t| t.elapsed())
    }

    /// Wakes whoever waits on a change (a server moved off a down node).
    pub(super) fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn is_judged(&self) -> bool {
        self.judged.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl ServerService {
    /// True when `uid` is placed on a node that is down (cluster mode).
    pub fn is_unreachable(&self, uid: &Uid) -> bool {
        self.cluster.get().is_some()
            && self
                .store
                .get(uid)
                .and_then(|r| r.state.node.as_ref().map(|n| n.id.clone()))
                .is_some_and(|n| self.node_health.is_down(&n))
    }

    /// Waits until `uid`'s node was judged and is not down.
    pub(super) async fn wait_reachable(&self, uid: &Uid) {
        let mut rx = self.node_health.subscribe();
        while (self.cluster.get().is_some() && !self.node_health.is_judged())
            || self.is_unreachable(uid)
        {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Watches the nodes for as long as the daemon runs (cluster mode only).
    pub async fn watch_nodes(self: Arc<Self>) {
        let Some(swarm) = self.cluster.get().cloned() else {
            return;
        };
        let me = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(NODE_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(svc) = me.upgrade() else { return };
            svc.watch_once(swarm.as_ref()).await;
        }
    }

    async fn watch_once(&self, swarm: &dyn Swarm) {
        let nodes = match swarm.nodes().await {
            Ok(n) => n,
            // The manager does not answer: nothing can be judged this round.
            Err(e) => {
                tracing::debug!("node watch: the manager did not list its nodes: {e}");
                return;
            }
        };
        let probes =
            futures_util::future::join_all(nodes.iter().map(|n| swarm.probe(&n.address))).await;
        let mut any = false;
        for (n, answered) in nodes.iter().zip(probes) {
            let answered = answered.unwrap_or(false);
            let Some(change) = self
                .node_health
                .observe(&n.id, n.state == "ready", answered)
            else {
                continue;
            };
            any = true;
            let kind = match change {
                Change::Down => {
                    tracing::warn!(node = %n.id, hostname = %n.hostname, swarm_state = %n.state, answered, "node unreachable");
                    EventKind::NodeDown {
                        node: n.id.clone(),
                        hostname: n.hostname.clone(),
                    }
                }
                Change::Up(d) => {
                    tracing::info!(node = %n.id, hostname = %n.hostname, down_s = d.as_secs_f64(), "node back");
                    EventKind::NodeUp {
                        node: n.id.clone(),
                        hostname: n.hostname.clone(),
                        down_s: (d.as_secs_f64() * 10.0).round() / 10.0,
                    }
                }
            };
            for rec in self.store.list() {
                if rec.state.node.as_ref().is_some_and(|p| p.id == n.id) {
                    self.handle_of(&rec.uid).publish(kind.clone());
                }
            }
        }
        let first = !self
            .node_health
            .judged
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if any || first {
            self.node_health.bump();
        }
        self.failover_due();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_down_after_two_failed_probes_or_when_swarm_says_so() {
        let h = NodeHealth::default();
        assert!(matches!(
            h.observe("first", true, false),
            Some(Change::Down)
        ));
        assert!(h.observe("n", true, true).is_none());
        assert!(
            h.observe("n", true, false).is_none(),
            "one miss is not enough"
        );
        assert!(matches!(h.observe("n", true, false), Some(Change::Down)));
        assert!(h.is_down("n"));
        // Answers again but Swarm still says down: not up yet.
        assert!(h.observe("n", false, true).is_none());
        assert!(matches!(h.observe("n", true, true), Some(Change::Up(_))));
        assert!(!h.is_down("n"));
        assert!(matches!(h.observe("m", false, true), Some(Change::Down)));
    }
}
