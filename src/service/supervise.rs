//! Feeding the live model: ONE subscription to the engine's event stream, a full resync at boot
//! and after every reconnect, exits classified and recorded, the restart policy applied, and the
//! console of every running game attached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{Result, ServerService};
use crate::jobs::JobKind;
use crate::live::events::EventKind;
use crate::live::handle::ContainerSnap;
use crate::live::policy::{self, Decision};
use crate::live::{Phase, ServerHandle};
use crate::model::exit::{self, ExitClass, ExitRecord, Expected};
use crate::model::lifecycle::RestartPolicy;
use crate::names::Uid;
use crate::runtime::{ContainerDetails, EventAction, RuntimeEvent, labels};
use crate::store::ServerRecord;

/// How often the games' `config/` folders are checked for changes.
const CONFIG_REFRESH: Duration = Duration::from_secs(2);
/// How many lines of the engine's log fill an empty console when peon attaches to a game that
/// was already running (a daemon restart).
const PREFILL: usize = 150;

fn snap(d: &ContainerDetails) -> ContainerSnap {
    let label = |k: &str| d.labels.get(k).cloned().unwrap_or_default();
    ContainerSnap {
        id: d.id.clone(),
        state: d.state.clone(),
        started_at: d.started_at.clone(),
        container_type: label(labels::CONTAINER_TYPE),
        build_version: label(labels::BUILD_VERSION),
    }
}

/// The engine's zero time: a container that never ran.
fn never_ran(started_at: &Option<String>) -> bool {
    started_at
        .as_deref()
        .is_none_or(|s| s.starts_with("0001-01-01"))
}

impl ServerService {
    /// Follows the engine for as long as the daemon runs: resync, then the event stream; when
    /// the engine goes away, waits for it (with back-off) and does it again. The first resync
    /// also brings back the servers the host wants running and fires missed schedules.
    pub async fn supervise(self: Arc<Self>) {
        tokio::spawn(refresh_configs(Arc::downgrade(&self)));
        tokio::spawn(super::metrics::sample_stats(Arc::downgrade(&self)));
        tokio::spawn(super::notify::forward(Arc::downgrade(&self)));
        // Cluster mode: node loss seen within seconds, and the changes queued meanwhile.
        self.resume_pending();
        tokio::spawn(self.clone().watch_nodes());
        let mut delay = Duration::from_millis(250);
        let mut first = true;
        loop {
            // Events since a second before the resync are replayed, so none falls in between.
            let since = chrono::Utc::now().timestamp() - 1;
            let stream = match self
                .runtime
                .events(since, labels::INSTANCE, &self.settings.instance)
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{e}; retrying in {:.1}s", delay.as_secs_f32());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if let Err(e) = self.resync().await {
                tracing::warn!(
                    "resync failed: {e}; retrying in {:.1}s",
                    delay.as_secs_f32()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
            delay = Duration::from_millis(250);
            self.synced.send_replace(true);
            self.metrics.engine_connected(true);
            let me = self.clone();
            let boot = first;
            tokio::spawn(async move {
                if boot {
                    // Before anything is started: an update the last daemon left half done
                    // is undone.
                    me.recover_updates().await;
                }
                if let Err(e) = me.reconcile().await {
                    tracing::warn!("reconcile failed: {e}");
                }
                if boot {
                    me.scheduler.fire_missed().await;
                    me.resume_rollouts().await;
                }
            });
            first = false;
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => self.on_event(ev).await,
                    Err(e) => {
                        tracing::warn!("{e}");
                        break;
                    }
                }
            }
            self.metrics.engine_connected(false);
            tracing::warn!("lost the engine's event stream; reconnecting");
            tokio::time::sleep(delay).await;
        }
    }

    /// Reads every container of this instance once and brings the live model in line: handles
    /// for every server, consoles attached to running games, exits that happened unseen
    /// recorded (without applying the restart policy: boot reconciliation decides).
    pub(super) async fn resync(&self) -> Result<()> {
        let list = self
            .runtime
            .list_labelled(labels::INSTANCE, &self.settings.instance)
            .await?;
        let by_uid: HashMap<String, _> = list
            .into_iter()
            .filter_map(|c| Some((c.label(labels::UID)?.to_owned(), c)))
            .collect();
        for rec in self.store.list() {
            let h = self.handle_of(&rec.uid);
            match by_uid.get(&rec.uid.to_string()) {
                None => {
                    if !h.busy() {
                        h.set_container(None);
                    }
                }
                Some(c) if c.state == "running" => self.observe_start(&h, &rec, true).await,
                Some(_) => self.observe_exit(&h, None, false).await,
            }
        }
        tracing::info!(
            servers = self.store.len(),
            "live model in sync with the engine"
        );
        Ok(())
    }

    async fn on_event(&self, ev: RuntimeEvent) {
        let Some(uid) = ev.label(labels::UID).and_then(|u| Uid::parse(u).ok()) else {
            return;
        };
        let Some(rec) = self.store.get(&uid) else {
            return;
        };
        let h = self.handle_of(&uid);
        tracing::debug!(uid = %uid, action = ?ev.action, "engine event");
        match ev.action {
            EventAction::Start => self.observe_start(&h, &rec, false).await,
            EventAction::Die { exit_code } => self.observe_exit(&h, exit_code, true).await,
            EventAction::Oom => {
                h.state().oom_seen = true;
                tracing::warn!(uid = %uid, "the game ran out of memory");
            }
            EventAction::Destroy if !h.busy() => h.set_container(None),
            EventAction::Create => {
                if let Ok(Some(d)) = self.runtime.inspect(&uid.container_name()).await {
                    h.set_container(Some(snap(&d)));
                }
            }
            _ => {}
        }
    }

    /// A game runs: its container is recorded, its console attached (when nobody did yet) and,
    /// when it was not started by peon, its readiness watched.
    async fn observe_start(&self, h: &Arc<ServerHandle>, rec: &Arc<ServerRecord>, resync: bool) {
        let name = h.uid.container_name();
        let d = match self.runtime.inspect(&name).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(uid = %h.uid, "inspect after start: {e}");
                return;
            }
        };
        h.set_container(Some(snap(&d)));
        if !d.running {
            return;
        }
        if !h.attached() {
            if resync && h.console.recent(1).is_empty() {
                if let Ok(lines) = self.runtime.logs(&name, PREFILL).await {
                    for l in lines {
                        h.console.push_bytes(format!("{l}\n").as_bytes());
                    }
                }
            }
            if let Err(e) = self.attach_console(h).await {
                tracing::warn!(uid = %h.uid, "cannot attach the console: {e}");
            }
        }
        let idle = {
            let s = h.state();
            s.phase == Phase::Stopped && !s.in_start
        };
        if idle {
            h.set_phase(Phase::Starting, None);
            let sub = Self::ready_subscription(rec, h, 50);
            let since = d
                .started_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(std::time::UNIX_EPOCH, std::time::SystemTime::from);
            self.watch_readiness(h, rec, sub, since);
        }
    }

    /// Reads the server's container from the engine into its handle.
    pub(super) async fn refresh_container(&self, h: &ServerHandle) -> Result<()> {
        let d = self.runtime.inspect(&h.uid.container_name()).await?;
        h.set_container(d.as_ref().map(snap));
        Ok(())
    }

    /// Reads the game's `config/` folder into its handle now (off the async workers).
    /// In cluster mode the folder is on the game's node: its agent reads it.
    pub(super) async fn refresh_game_config(&self, h: &Arc<ServerHandle>, rec: &ServerRecord) {
        match self.node_facts(&rec.uid).await {
            Ok(Some(f)) => {
                super::gameconfig::apply(h, f.config_sig, f.config);
            }
            Ok(None) => {
                let (h, dir) = (h.clone(), rec.dir.clone());
                let _ =
                    tokio::task::spawn_blocking(move || super::gameconfig::refresh(&h, &dir)).await;
            }
            Err(e) => tracing::debug!(uid = %rec.uid, "the game's config/ is not read: {e}"),
        }
    }

    /// Attaches to the game's console (stdin and output) and feeds the handle's console.
    pub(super) async fn attach_console(&self, h: &Arc<ServerHandle>) -> Result<()> {
        let a = self.runtime.attach(&h.uid.container_name()).await?;
        let console = h.console.clone();
        let uid = h.uid.clone();
        let mut output = a.output;
        h.set_attach_task(tokio::spawn(async move {
            while let Some(item) = output.next().await {
                match item {
                    Ok(b) => console.push_bytes(&b),
                    Err(e) => {
                        tracing::debug!(uid = %uid, "console stream ended: {e}");
                        break;
                    }
                }
            }
            console.end_of_stream();
        }));
        h.console.set_input(Some(Box::new(a.input))).await;
        tracing::info!(uid = %h.uid, "console attached");
        Ok(())
    }

    /// The game exited (or was found exited): classify and record the exit once per run, then,
    /// for an exit seen live, apply the restart policy.
    pub(super) async fn observe_exit(
        &self,
        h: &Arc<ServerHandle>,
        event_code: Option<i64>,
        live: bool,
    ) {
        let d = match self.runtime.inspect(&h.uid.container_name()).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                h.set_container(None);
                return;
            }
            Err(e) => {
                tracing::warn!(uid = %h.uid, "inspect after exit: {e}");
                return;
            }
        };
        if d.running || never_ran(&d.started_at) {
            h.set_container(Some(snap(&d)));
            return;
        }
        let (rec, class, skip_policy) = {
            let mut s = h.state();
            if s.recorded_run == d.started_at {
                drop(s);
                h.set_container(Some(snap(&d)));
                return;
            }
            s.recorded_run = d.started_at.clone();
            let expected = std::mem::replace(&mut s.expected, Expected::Nothing);
            let oom = d.oom_killed || std::mem::take(&mut s.oom_seen);
            let code = d.exit_code.or(event_code).unwrap_or(-1);
            let class = exit::classify(code, oom, expected);
            let rec = ExitRecord {
                time: d
                    .finished_at
                    .clone()
                    .filter(|t| !t.starts_with("0001-01-01"))
                    .unwrap_or_else(crate::live::events::now_rfc3339),
                exit_code: code,
                class,
                last_lines: h.console.recent(exit::LAST_LINES),
                run_started: d.started_at.clone(),
            };
            exit::push(&mut s.exits, rec.clone());
            if let Some(i) = ExitClass::ALL.iter().position(|c| *c == class) {
                s.exits_total[i] += 1;
            }
            s.stats = None;
            (rec, class, s.in_start)
        };
        h.set_watcher(None);
        h.set_container(Some(snap(&d)));
        h.set_phase(Phase::Stopped, None);
        tracing::info!(uid = %h.uid, exit_code = rec.exit_code, class = class.as_str(), "game exited");
        h.publish(EventKind::Exit { exit: rec });
        let exits = h.state().exits.clone();
        if let Err(e) = self.save_state(&h.uid, move |st| st.exits = exits).await {
            tracing::warn!(uid = %h.uid, "cannot record the exit: {e}");
        }
        // A container removed behind peon's back is not restarted: it stays missing until the
        // host starts it (or peon restarts and the host wants it running).
        if live && !skip_policy && d.state != "removing" {
            self.apply_policy(h, class).await;
        }
    }

    /// The restart policy after an exit of class `class`.
    pub(super) async fn apply_policy(&self, h: &Arc<ServerHandle>, class: ExitClass) {
        // Cluster mode: a game on a node that does not answer is not restarted there (its
        // queued changes and failover decide); the host's wish is kept.
        if self.is_unreachable(&h.uid) {
            tracing::info!(uid = %h.uid, "exit seen while its node is unreachable: no restart");
            return;
        }
        let Some((intent, delay)) = self.decide_restart(h, class).await else {
            return;
        };
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(restart_task(me, h.clone(), intent, delay));
    }

    /// Decides after an exit: `Some((intent, delay))` to restart; otherwise the server stays
    /// stopped (and the host no longer wants it running).
    async fn decide_restart(
        &self,
        h: &Arc<ServerHandle>,
        class: ExitClass,
    ) -> Option<(u64, Duration)> {
        let rec = self.store.get(&h.uid)?;
        if matches!(
            class,
            ExitClass::OperatorStop | ExitClass::KilledAfterGrace | ExitClass::IdleStop
        ) || !rec.state.wanted_running
        {
            return None;
        }
        let policy = self.restart_policy(&rec);
        let (decision, intent) = {
            let mut s = h.state();
            let d = policy::decide(policy, class, &mut s.restarts, Instant::now());
            if matches!(d, Decision::Restart { .. }) {
                s.restarts_total += 1;
            }
            (d, s.intent)
        };
        match decision {
            Decision::Stay => {
                tracing::info!(uid = %h.uid, policy = %policy, class = class.as_str(), "not restarted");
                let _ = self.set_wanted(&h.uid, false).await;
                None
            }
            Decision::GiveUp(reason) => {
                tracing::warn!(uid = %h.uid, "{reason}");
                h.set_phase(Phase::Stopped, Some(reason.clone()));
                h.publish(EventKind::GaveUp { reason });
                let _ = self.set_wanted(&h.uid, false).await;
                None
            }
            Decision::Restart { attempt, delay } => {
                h.publish(EventKind::Restart {
                    attempt,
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                });
                tracing::info!(uid = %h.uid, attempt, delay_ms = delay.as_millis() as u64, "restarting after {}", class.as_str());
                Some((intent, delay))
            }
        }
    }

    /// Automatic restarts: unless an operator stopped or killed the server meanwhile. A start
    /// that fails counts as another crash.
    async fn restart_after(self: Arc<Self>, h: Arc<ServerHandle>, intent: u64, delay: Duration) {
        let (mut intent, mut delay) = (intent, delay);
        loop {
            tokio::time::sleep(delay).await;
            let guard = h.lock_power().await;
            let wanted = self
                .store
                .get(&h.uid)
                .is_some_and(|r| r.state.wanted_running);
            if h.state().intent != intent || !wanted {
                tracing::info!(uid = %h.uid, "restart cancelled: the server was stopped meanwhile");
                return;
            }
            let before = h.state().recorded_run.clone();
            let start = self.action(&h.uid, JobKind::Restart, self.start_locked(&h.uid, None));
            match self.acting("policy", start).await {
                Ok(_) => {
                    tracing::info!(uid = %h.uid, "restarted");
                    return;
                }
                Err(e) => {
                    drop(guard);
                    tracing::warn!(uid = %h.uid, "restart failed: {e}");
                    // The game exited while starting: judge that exit; a start that failed
                    // without one (a port taken, an image gone) counts as a crash.
                    let class = h.exit_since(&before).unwrap_or(ExitClass::Crash);
                    match self.decide_restart(&h, class).await {
                        Some((i, d)) => (intent, delay) = (i, d),
                        None => return,
                    }
                }
            }
        }
    }

    /// The server's restart policy: its own, else the plan's, else `on-crash`.
    pub(super) fn restart_policy(&self, rec: &ServerRecord) -> RestartPolicy {
        rec.state
            .restart_policy
            .or(rec.plan.lifecycle.restart_policy)
            .unwrap_or_default()
    }

    /// The server's stop grace period: its own, else the plan's, else the daemon's.
    pub(super) fn stop_grace(&self, rec: &ServerRecord) -> Duration {
        rec.state
            .stop_grace_s
            .map(Duration::from_secs)
            .or(rec.plan.lifecycle.stop_grace)
            .unwrap_or(self.settings.stop_timeout)
    }
}

/// The restart task, boxed: its future reaches back into the exit handling that spawns it.
fn restart_task(
    svc: Arc<ServerService>,
    h: Arc<ServerHandle>,
    intent: u64,
    delay: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(svc.restart_after(h, intent, delay))
}

/// Keeps the copies of running games' `config/` folders current.
async fn refresh_configs(svc: std::sync::Weak<ServerService>) {
    let mut tick = tokio::time::interval(CONFIG_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = svc.upgrade() else { return };
        let work: Vec<_> = s
            .store
            .list()
            .into_iter()
            .filter_map(|r| {
                let h = s.registry.get(&r.uid)?;
                h.is_running().then_some((h, r))
            })
            .collect();
        // Cluster mode: each node's agent reads its games' folders, all at once.
        let work: Vec<_> = if s.cluster.get().is_some() {
            futures_util::future::join_all(work.iter().map(|(h, r)| s.refresh_game_config(h, r)))
                .await;
            Vec::new()
        } else {
            work.into_iter().map(|(h, r)| (h, r.dir.clone())).collect()
        };
        drop(s);
        if work.is_empty() {
            continue;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for (h, dir) in work {
                super::gameconfig::refresh(&h, &dir);
            }
        })
        .await;
    }
}
