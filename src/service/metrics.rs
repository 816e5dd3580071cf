//! The service's side of the metrics ([`crate::metrics`]): what a scrape reads of the live
//! model, the job hook, and the stats sampler that keeps each running game's CPU and memory in
//! its handle, so that a scrape makes no engine call.

use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::StreamExt;

use super::ServerService;
use crate::live::Phase;
use crate::live::handle::StatsSample;
use crate::metrics::{Metrics, ServerSample};
use crate::model::exit::ExitClass;

/// How many stats calls run at once.
const SAMPLERS: usize = 4;

impl ServerService {
    /// The daemon's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Every metric in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// Connects the metrics to the live model and the job history (at open).
    pub(super) fn install_metrics(&self) {
        let me = self.me.clone();
        self.metrics
            .set_servers(move || me.upgrade().map(|s| s.server_samples()).unwrap_or_default());
        let metrics = self.metrics.clone();
        self.jobs.on_end(move |job| {
            let secs = match (job.started.as_ref().unwrap_or(&job.created), &job.finished) {
                (from, Some(to)) => seconds_between(from, to),
                _ => 0.0,
            };
            metrics.job_done(job.kind.as_str(), job.state.as_str(), secs);
        });
    }

    /// Every server of the index as the live model has it.
    fn server_samples(&self) -> Vec<ServerSample> {
        self.store
            .list()
            .into_iter()
            .map(|rec| {
                let mut out = ServerSample {
                    uid: rec.uid.to_string(),
                    game: rec.uid.game().to_owned(),
                    state: "missing".into(),
                    exits: ExitClass::ALL.iter().map(|c| (c.as_str(), 0)).collect(),
                    ..ServerSample::default()
                };
                if let Some(h) = self.registry.get(&rec.uid) {
                    let s = h.state();
                    out.state = crate::live::handle::server_state(&s);
                    out.ready = s.phase == Phase::Running;
                    out.restarts = s.restarts_total;
                    for (slot, n) in out.exits.iter_mut().zip(s.exits_total) {
                        slot.1 = n;
                    }
                    if let Some(st) = s.stats.filter(|_| h.is_running()) {
                        out.cpu_percent = Some(st.cpu_percent);
                        out.memory_bytes = Some(st.memory_bytes);
                        out.memory_limit_bytes = Some(st.memory_limit_bytes);
                    }
                    out.players = s.players;
                    out.max_players = s.max_players;
                }
                out
            })
            .collect()
    }
}

fn seconds_between(from: &str, to: &str) -> f64 {
    match (
        chrono::DateTime::parse_from_rfc3339(from),
        chrono::DateTime::parse_from_rfc3339(to),
    ) {
        (Ok(a), Ok(b)) => {
            #[allow(clippy::cast_precision_loss)]
            let ms = (b - a).num_milliseconds().max(0) as f64;
            ms / 1000.0
        }
        _ => 0.0,
    }
}

/// Samples the CPU and memory of every running game every `stats_interval` (one engine call
/// per game, a few at once) into its handle, for as long as the service lives.
pub(super) async fn sample_stats(svc: Weak<ServerService>) {
    let Some(every) = svc.upgrade().map(|s| s.settings.stats_interval) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = svc.upgrade() else { return };
        let running: Vec<_> = s
            .registry
            .all()
            .into_iter()
            .filter(|h| {
                let on = h.is_running();
                if !on {
                    h.state().stats = None;
                }
                on
            })
            .collect();
        let runtime = s.runtime.clone();
        drop(s);
        futures_util::stream::iter(running)
            .for_each_concurrent(SAMPLERS, |h| {
                let runtime = runtime.clone();
                async move {
                    match runtime.stats(&h.uid.container_name()).await {
                        Ok(Some(st)) => {
                            h.state().stats = Some(StatsSample {
                                cpu_percent: st.cpu_percent,
                                memory_bytes: st.memory_bytes,
                                memory_limit_bytes: st.memory_limit_bytes,
                                at: Instant::now(),
                            });
                        }
                        Ok(None) => h.state().stats = None,
                        Err(e) => tracing::debug!(uid = %h.uid, "stats sample failed: {e}"),
                    }
                }
            })
            .await;
    }
}
