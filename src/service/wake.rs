//! Wake on connect: a server stopped for being idle, with `wake_on_connect`, has its game ports
//! held by the daemon ([`crate::players::hold`]); the first TCP connection or UDP packet (an
//! A2S_INFO query is answered as starting instead) releases them and starts the server, asked
//! for by `wake`. A wake that fails is an event, and the ports are held again.

use std::net::IpAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::ServerService;
use crate::live::events::EventKind;
use crate::model::plan::Protocol as PortProtocol;
use crate::names::Uid;
use crate::players::hold::{Holder, Transport};

/// A sleeping server's held ports: the task that holds them, and how to make it let go.
pub(super) struct Sleeper {
    release: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ServerService {
    /// Holds a sleeping server's ports (unless they are held already). A port that cannot be
    /// bound (taken by someone else) is logged and the server just stays stopped. Boxed: the
    /// task it spawns arms it again after a failed wake.
    pub(super) fn arm_wake<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, ()> {
        Box::pin(self.arm_wake_inner(uid))
    }

    async fn arm_wake_inner(&self, uid: &Uid) {
        let Some(svc) = self.me.upgrade() else {
            return;
        };
        if self.sleepers().contains_key(uid) {
            return;
        }
        let Ok(rec) = self.record(uid) else {
            return;
        };
        let ports: Vec<(u16, Transport)> = rec
            .plan
            .port_groups
            .first()
            .map(|g| {
                g.iter()
                    .flat_map(|p| {
                        p.protocols.iter().map(move |pr| {
                            let t = match pr {
                                PortProtocol::Tcp => Transport::Tcp,
                                PortProtocol::Udp => Transport::Udp,
                            };
                            (p.port, t)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ip: IpAddr = self
            .settings
            .publish_address
            .parse()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let name = format!("{} (starting on connect)", uid.name());
        let mut holder = match Holder::bind(ip, &ports, &name).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(uid = %uid, "wake on connect: cannot hold the ports: {e}");
                self.handle_of(uid).publish(EventKind::WakeFailed {
                    error: format!("cannot hold the game's ports: {e}"),
                });
                return;
            }
        };
        tracing::info!(uid = %uid, ports = ports.len(), "wake on connect: holding the game's ports");
        let (release, mut released) = oneshot::channel();
        let u = uid.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                w = holder.woken() => {
                    holder.release().await;
                    // The ports are free: the game may have them.
                    svc.sleepers().remove(&u);
                    svc.wake(&u, w).await;
                }
                _ = &mut released => holder.release().await,
            }
        });
        self.sleepers()
            .insert(uid.clone(), Sleeper { release, task });
    }

    /// Lets go of a sleeping server's ports (a start, a destroy, wake turned off); when it
    /// returns, they are free.
    pub(super) async fn disarm_wake(&self, uid: &Uid) {
        let sleeper = self.sleepers().remove(uid);
        if let Some(s) = sleeper {
            let _ = s.release.send(());
            let _ = s.task.await;
            tracing::info!(uid = %uid, "wake on connect: ports released");
        }
        if self.store.get(uid).is_some_and(|r| r.state.sleeping)
            && let Err(e) = self.save_state(uid, |s| s.sleeping = false).await
        {
            tracing::warn!(uid = %uid, "cannot record the end of sleep: {e}");
        }
    }

    /// The first connection came: start the server; a failure is an event and the ports are held
    /// again.
    async fn wake(self: &Arc<Self>, uid: &Uid, w: crate::players::hold::Wake) {
        let by = format!("{:?} {} from {}", w.transport, w.port, w.from).to_lowercase();
        tracing::info!(uid = %uid, by = %by, "wake on connect: starting the server");
        self.handle_of(uid)
            .publish(EventKind::Wake { by: by.clone() });
        match self.acting("wake", self.start(uid, None)).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(uid = %uid, "wake on connect: start failed: {e}");
                self.handle_of(uid).publish(EventKind::WakeFailed {
                    error: e.to_string(),
                });
                if self.store.get(uid).is_some() {
                    let _ = self.save_state(uid, |s| s.sleeping = true).await;
                    self.arm_wake(uid).await;
                }
            }
        }
    }

    /// Whether a server's ports are held for it now.
    pub(super) fn is_sleeping(&self, uid: &Uid) -> bool {
        self.sleepers().contains_key(uid)
    }

    fn sleepers(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uid, Sleeper>> {
        self.sleepers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
