//! [`AgentDelegate`]: the cluster runtime's per-node delegate ([`NodeDelegate`]) made of the
//! manager's [`Agents`]: a node id resolves to its address (from the manager's nodes, kept in a
//! cache) and the address to the agent client there. The cache is filled by [`refresh`]
//! (AgentDelegate::refresh): at start, every few seconds by [`AgentDelegate::spawn_refresher`],
//! and at once when a node id is not in it (the call that missed answers "not connected"; the
//! next one finds the node).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::client::{AgentClient, Agents};
use crate::runtime::NodeContainers;
use crate::runtime::cluster::{NodeDelegate, Swarm};

/// Node id -> its agent, through the manager's node list.
pub struct AgentDelegate {
    agents: Agents,
    swarm: Arc<dyn Swarm>,
    addrs: RwLock<HashMap<String, String>>,
    refreshing: std::sync::atomic::AtomicBool,
}

impl AgentDelegate {
    pub fn new(agents: Agents, swarm: Arc<dyn Swarm>) -> Arc<AgentDelegate> {
        Arc::new(AgentDelegate {
            agents,
            swarm,
            addrs: RwLock::default(),
            refreshing: false.into(),
        })
    }

    /// Reads the manager's nodes into the cache (id -> address).
    pub async fn refresh(&self) -> Result<(), crate::runtime::RuntimeError> {
        let nodes = self.swarm.nodes().await?;
        let map: HashMap<String, String> = nodes
            .into_iter()
            .filter(|n| !n.address.is_empty())
            .map(|n| (n.id, n.address))
            .collect();
        *self.addrs.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    /// The address of a node, from the cache.
    pub fn address_of(&self, node_id: &str) -> Option<String> {
        self.addrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node_id)
            .cloned()
    }

    /// The agent of a node, resolving its address from the manager when it is not cached.
    pub async fn agent(&self, node_id: &str) -> Result<Arc<AgentClient>, String> {
        if self.address_of(node_id).is_none() {
            self.refresh().await.map_err(|e| e.to_string())?;
        }
        let addr = self
            .address_of(node_id)
            .ok_or_else(|| format!("no node {node_id} in the swarm"))?;
        self.agents.for_address(&addr).map_err(|e| e.to_string())
    }

    /// Refreshes the cache every `every` until the returned task is aborted.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.refresh().await {
                    tracing::debug!("the node list for the agents was not read: {e}");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// A refresh in the background (one at a time), after a miss.
    fn refresh_soon(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            let _ = me.refresh().await;
            me.refreshing.store(false, Ordering::Release);
        });
    }
}

/// The delegate handed to the cluster runtime (it needs `Arc<Self>` to refresh on a miss).
pub struct Delegate(pub Arc<AgentDelegate>);

impl NodeDelegate for Delegate {
    fn for_node(&self, node_id: &str) -> Option<Arc<dyn NodeContainers>> {
        match self.0.address_of(node_id) {
            Some(addr) => match self.0.agents.for_address(&addr) {
                Ok(c) => Some(c as Arc<dyn NodeContainers>),
                Err(e) => {
                    tracing::warn!(node = node_id, "no agent client for the node: {e}");
                    None
                }
            },
            None => {
                self.0.refresh_soon();
                None
            }
        }
    }
}
