//! Who is playing: a background poller asks every running server whose plan has a `query` (A2S
//! or the Minecraft Server List Ping, [`crate::players`]) every [`PLAYERS_INTERVAL`], all at once,
//! each with a [`QUERY_TIMEOUT`], and writes the answer into the live handle; the server object
//! reads it from memory, so no request waits on a game. The same pass decides the idle stop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Result, ServerService};
use crate::jobs::JobKind;
use crate::live::Phase;
use crate::live::events::EventKind;
use crate::model::exit::Expected;
use crate::model::plan::QueryProtocol;
use crate::names::Uid;
use crate::players::query::{self, Protocol};
use crate::store::ServerRecord;

/// How often every game is asked; an answer stands for this long (the cache period).
pub const PLAYERS_INTERVAL: Duration = Duration::from_secs(5);
/// How long a game may take to answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// No idle stop within this long of a start, unless the server says otherwise.
pub const IDLE_GRACE: Duration = Duration::from_secs(600);

impl ServerService {
    /// The address of a server's query port on the host, when its plan has a query.
    pub(super) fn query_addr(&self, rec: &ServerRecord) -> Option<(Protocol, SocketAddr)> {
        let q = rec.plan.query.as_ref()?;
        let group = rec
            .plan
            .port_groups
            .first()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let port = q.port_in(group)?;
        let proto = match q.protocol {
            QueryProtocol::A2s => Protocol::A2s,
            QueryProtocol::Minecraft => Protocol::Minecraft,
        };
        Some((proto, SocketAddr::new(self.game_ip(rec), port)))
    }

    /// Where peon reaches a server's published ports: in cluster mode its node's address,
    /// else the publish address, or loopback for "all".
    pub(super) fn game_ip(&self, rec: &ServerRecord) -> IpAddr {
        if let Some(ip) = rec
            .state
            .node
            .as_ref()
            .and_then(|n| n.address.parse::<IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified())
        {
            return ip;
        }
        match self.settings.publish_address.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => Ipv6Addr::LOCALHOST.into(),
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// Asks every running game with a query, all at once, every [`PLAYERS_INTERVAL`].
    pub async fn watch_players(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PLAYERS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.poll_players().await;
        }
    }

    /// One pass of the poller.
    pub async fn poll_players(self: &Arc<Self>) {
        let mut asks = Vec::new();
        for rec in self.store.list() {
            let h = self.handle_of(&rec.uid);
            let running = h.is_running();
            let target = self.query_addr(&rec).filter(|_| running);
            let Some((proto, addr)) = target else {
                let mut s = h.state();
                s.players = None;
                s.max_players = None;
                s.empty_since = None;
                if !running {
                    s.run_since = None;
                }
                continue;
            };
            asks.push(async move {
                let r = query::ask(proto, addr, QUERY_TIMEOUT).await;
                (rec, h, r)
            });
        }
        let answers = futures_util::future::join_all(asks).await;
        for (rec, h, r) in answers {
            let idle_for = {
                let mut s = h.state();
                let now = Instant::now();
                s.run_since.get_or_insert(now);
                match r {
                    Ok(p) => {
                        s.players = Some(p.online);
                        s.max_players = Some(p.max);
                        if p.online == 0 {
                            s.empty_since.get_or_insert(now);
                        } else {
                            s.empty_since = None;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(uid = %rec.uid, "player query: {e}");
                        // Unknown is not empty: the idle clock starts again.
                        s.players = None;
                        s.max_players = None;
                        s.empty_since = None;
                    }
                }
                self.idle_due(&rec, &s)
            };
            if let Some(idle) = idle_for
                && !h.busy()
            {
                let svc = self.clone();
                tokio::spawn(async move {
                    let uid = rec.uid.clone();
                    if let Err(e) = svc.acting("idle", svc.idle_stop(&uid, idle)).await {
                        tracing::warn!(uid = %uid, "idle stop failed: {e}");
                    }
                });
            }
        }
    }

    /// How long the server has been empty, when that calls for its idle stop now.
    fn idle_due(&self, rec: &ServerRecord, s: &crate::live::handle::LiveState) -> Option<Duration> {
        let idle_stop = Duration::from_secs(rec.state.idle_stop_s?);
        let grace = rec
            .state
            .idle_grace_s
            .map_or(IDLE_GRACE, Duration::from_secs);
        if s.phase != Phase::Running || s.run_since?.elapsed() < grace {
            return None;
        }
        let empty = s.empty_since?.elapsed();
        (empty >= idle_stop).then_some(empty)
    }

    /// The idle stop: a backup first when the server asks for one, then the normal stop
    /// (recorded as `idle_stop`), then, with wake on connect, its ports held.
    async fn idle_stop(&self, uid: &Uid, idle: Duration) -> Result<()> {
        let rec = self.record(uid)?;
        let h = self.handle_of(uid);
        tracing::info!(uid = %uid, idle_s = idle.as_secs(), "nobody played: idle stop");
        if rec.state.backup_before_idle_stop {
            self.backup_before_idle_stop(uid).await?;
        }
        self.want_stopped(uid, Expected::IdleStop).await?;
        self.action(uid, JobKind::Stop, async {
            let _g = self.lock(uid).await;
            self.scheduler.cancel_stop(uid).await?;
            self.stop_locked(uid).await
        })
        .await?;
        h.publish(EventKind::IdleStop {
            idle_s: idle.as_secs(),
            wake_on_connect: rec.state.wake_on_connect,
        });
        if self.record(uid)?.state.wake_on_connect {
            self.save_state(uid, |s| s.sleeping = true).await?;
            self.arm_wake(uid).await;
        }
        Ok(())
    }

    /// The backup taken before an idle stop, when the server asks for one: PEON's `save` (a zip
    /// of the server's files in `backups/`).
    pub async fn backup_before_idle_stop(&self, uid: &Uid) -> Result<()> {
        self.backup(uid, crate::backup::Reason::Idle)
            .await
            .map(|_| ())
    }
}
