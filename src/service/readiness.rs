//! Readiness: a started game is `starting` until the plan's ready pattern shows on its console,
//! or PEON's state file says `STARTED`, or one of its TCP game ports accepts; then `running`.
//! A start that does not get ready within the deadline becomes `unhealthy`, with the reason.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ServerService;
use crate::live::console::{Frame, Subscription};
use crate::live::events::EventKind;
use crate::live::{Phase, ServerHandle};
use crate::model::plan::Protocol;
use crate::store::ServerRecord;

/// How long a start may take to get ready when the plan does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const TICK: Duration = Duration::from_millis(250);

impl ServerService {
    /// Watches the readiness of the run that just started (the handle is `Starting`).
    /// `sub` follows the console when the plan has a ready pattern.
    pub(super) fn watch_readiness(
        &self,
        h: &Arc<ServerHandle>,
        rec: &Arc<ServerRecord>,
        sub: Option<Subscription>,
    ) {
        let timeout = rec
            .plan
            .lifecycle
            .ready_timeout
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        let pattern = rec.plan.lifecycle.ready_pattern.clone();
        let ip: IpAddr = match self.settings.publish_address.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
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
        let dir = rec.dir.clone();
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
                let (h2, d2) = (h.clone(), dir.clone());
                let _ =
                    tokio::task::spawn_blocking(move || super::gameconfig::refresh(&h2, &d2)).await;
                let started = h
                    .state()
                    .config
                    .get("state")
                    .and_then(|v| v.as_str())
                    .is_some_and(|s| s.eq_ignore_ascii_case("STARTED"));
                if started {
                    return ready(&h, "state file says STARTED");
                }
                for a in &tcp {
                    let c = tokio::time::timeout(TICK, tokio::net::TcpStream::connect(a)).await;
                    if matches!(c, Ok(Ok(_))) {
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
