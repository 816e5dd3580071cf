//! The registry of server handles, by uid, and the bus on which every handle publishes its
//! events.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use super::console::ConsoleConfig;
use super::events::Event;
use super::handle::ServerHandle;
use crate::model::exit::ExitRecord;
use crate::names::Uid;

/// How many events a slow reader of the bus may fall behind before it is told it lagged.
const BUS: usize = 4096;

/// Every server's handle.
pub struct Registry {
    handles: RwLock<BTreeMap<Uid, Arc<ServerHandle>>>,
    bus: broadcast::Sender<Arc<Event>>,
    console: ConsoleConfig,
}

impl Registry {
    pub fn new(console: ConsoleConfig) -> Registry {
        Registry {
            handles: RwLock::new(BTreeMap::new()),
            bus: broadcast::channel(BUS).0,
            console,
        }
    }

    pub fn get(&self, uid: &Uid) -> Option<Arc<ServerHandle>> {
        self.read().get(uid).cloned()
    }

    /// The handle of `uid`, made with `exits` as its history when it is new.
    pub fn ensure(&self, uid: &Uid, exits: impl FnOnce() -> Vec<ExitRecord>) -> Arc<ServerHandle> {
        if let Some(h) = self.get(uid) {
            return h;
        }
        let mut map = self.handles.write().unwrap_or_else(|p| p.into_inner());
        map.entry(uid.clone())
            .or_insert_with(|| {
                Arc::new(ServerHandle::new(
                    uid.clone(),
                    exits(),
                    self.bus.clone(),
                    self.console.clone(),
                ))
            })
            .clone()
    }

    /// Forgets a server; its tasks stop and its console clients are disconnected.
    pub fn remove(&self, uid: &Uid) {
        let h = self
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
        if let Some(h) = h {
            h.close();
        }
    }

    /// All handles, sorted by uid.
    pub fn all(&self) -> Vec<Arc<ServerHandle>> {
        self.read().values().cloned().collect()
    }

    /// Publishes an event of `uid` on the bus only (the server may have no handle: a create not
    /// done yet, an eradicated server).
    pub fn publish(&self, uid: &str, kind: super::events::EventKind) {
        let _ = self.bus.send(Arc::new(Event::now(uid, kind)));
    }

    /// Follows every server's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uid, Arc<ServerHandle>>> {
        self.handles.read().unwrap_or_else(|p| p.into_inner())
    }
}
