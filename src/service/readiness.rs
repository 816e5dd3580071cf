//! Readiness: a started game is `starting` until the plan's ready pattern shows on its console,
//! or PEON's state file says `STARTED`, or one of its TCP game ports accepts; then `running`.
//! A start that does not get ready within the deadline becomes `unhealthy`, with the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ServerService;
use crate::live::console::{Frame, Subscription};
use crate::live::events::EventKind;
use crate::live::{Phase, ServerHandle};
use crate::model::plan::Protocol;
use crate::store::ServerRecord;

/// How long a start may take to get ready when the plan does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const TICK: Duration = Duration::from_millis(250);
/// How long a probe connection must stay open (or say something) to count as the game's.
const PROXY_GRACE: Duration = Duration::from_millis(300);

impl ServerService {
    /// Follows the console for the plan's ready pattern, if it has one, starting with the last
    /// `replay` lines.
    pub(super) fn ready_subscription(
        rec: &ServerRecord,
        h: &ServerHandle,
        replay: usize,
    ) -> Option<Subscription> {
        rec.plan
            .lifecycle
            .ready_pattern
            .as_ref()
            .map(|_| h.console.subscribe(replay))
    }

    /// Watches the readiness of the run that just started (the handle is `Starting`).
    /// `sub` follows the console when the plan has a ready pattern.
    /// `since` is when the run started: a state file older than that is the last run's.
    pub(super) fn watch_readiness(
        &self,
        h: &Arc<ServerHandle>,
        rec: &Arc<ServerRecord>,
        sub: Option<Subscription>,
        since: SystemTime,
    ) {
        let since_ns = since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let timeout = rec
            .plan
            .lifecycle
            .ready_timeout
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        let pattern = rec.plan.lifecycle.ready_pattern.clone();
        let ip = self.game_ip(rec);
        let tcp: Vec<SocketAddr> = rec
            .plan
            .port_groups
            .first()
            .map(|g| {
                g.iter()
                    .filter(|p| p.protocols.contains(&Protocol::Tcp))
                    .map(|p| SocketAddr::new(ip, p.port))
                    .collect()
            })
            .unwrap_or_default();
        let (svc, rec) = (self.me.clone(), rec.clone());
        let handle = h.clone();
        let task = tokio::spawn(async move {
            let h = handle;
            let deadline = Instant::now() + timeout;
            let mut sub = sub;
            if let (Some(p), Some(s)) = (&pattern, &sub) {
                if s.replay.iter().any(|l| l.contains(p.as_str())) {
                    return ready(&h, "ready pattern seen");
                }
            }
            loop {
                if h.state().phase != Phase::Starting {
                    return;
                }
                // (In cluster mode the node's agent reads the folder.)
                let Some(s) = svc.upgrade() else { return };
                s.refresh_game_config(&h, &rec).await;
                drop(s);
                let started = {
                    let s = h.state();
                    let fresh = s
                        .config_sig
                        .iter()
                        .any(|(name, _, mtime)| name == "state" && *mtime >= since_ns);
                    fresh
                        && s.config
                            .get("state")
                            .and_then(|v| v.as_str())
                            .is_some_and(|v| v.eq_ignore_ascii_case("STARTED"))
                };
                if started {
                    return ready(&h, "state file says STARTED");
                }
                for a in &tcp {
                    if port_accepts(*a).await {
                        return ready(&h, "game port accepts");
                    }
                }
                if Instant::now() >= deadline {
                    let reason = format!(
                        "not ready after {}s: no ready line, no STARTED state, no game port accepting",
                        timeout.as_secs()
                    );
                    tracing::warn!(uid = %h.uid, "{reason}");
                    h.set_phase(Phase::Unhealthy(reason.clone()), Some(reason.clone()));
                    h.publish(EventKind::Ready {
                        state: "unhealthy".into(),
                        reason: Some(reason),
                    });
                    return;
                }
                let wait = tokio::time::sleep(TICK);
                match (&pattern, sub.as_mut()) {
                    (Some(p), Some(s)) => {
                        tokio::select! {
                            f = s.rx.recv() => match f {
                                Some(Frame::Log(line)) if line.contains(p.as_str()) => {
                                    return ready(&h, "ready pattern seen");
                                }
                                Some(_) => {}
                                None => sub = None,
                            },
                            () = wait => {}
                        }
                    }
                    _ => wait.await,
                }
            }
        });
        h.set_watcher(Some(task));
    }
}

/// Whether the game itself accepts on `addr`. The engine's port proxy accepts on the host port
/// as soon as the container runs and closes the connection at once when nothing listens inside,
/// so a connection that ends straight away, without a byte, does not count.
async fn port_accepts(addr: SocketAddr) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(Ok(mut s)) = tokio::time::timeout(TICK, tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut b = [0u8; 1];
    match tokio::time::timeout(PROXY_GRACE, s.read(&mut b)).await {
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
        // Open and quiet: a game waiting for its client to speak.
        Err(_) => true,
    }
}

fn ready(h: &ServerHandle, why: &str) {
    if h.state().phase != Phase::Starting {
        return;
    }
    tracing::info!(uid = %h.uid, "ready: {why}");
    h.set_phase(Phase::Running, None);
    h.publish(EventKind::Ready {
        state: "running".into(),
        reason: None,
    });
}
