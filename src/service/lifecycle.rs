//! Start, stop, restart, update, describe, destroy, import, and bringing servers back after a
//! daemon restart. Every action waits for the real container state and returns a fresh object.

use std::time::{Duration, Instant};

use serde_json::Value;

use std::sync::Arc;

use super::{Result, ServerObject, ServerService, ServiceError};
use crate::jobs::{self, JobKind, step};
use crate::live::events::EventKind;
use crate::live::{Phase, ServerHandle};
use crate::model::exit::Expected;
use crate::model::lifecycle::RestartPolicy;
use crate::names::Uid;
use crate::runtime::RuntimeError;
use crate::schedule::OneShot;
use crate::store::{ServerRecord, ServerState};

/// PEON's update modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Wipe `data/`, pull the image, force the game to reinstall.
    Reinit,
    /// Pull the image and force the game to reinstall/validate.
    Full,
    /// Pull the image only.
    Image,
    /// Force the game to reinstall/validate only.
    Server,
}

impl UpdateMode {
    pub fn parse(s: &str) -> Result<UpdateMode> {
        match s.to_ascii_lowercase().as_str() {
            "reinit" => Ok(UpdateMode::Reinit),
            "full" | "all" => Ok(UpdateMode::Full),
            "image" | "container" => Ok(UpdateMode::Image),
            "server" | "game" => Ok(UpdateMode::Server),
            other => Err(ServiceError::BadRequest(format!(
                "Unknown update mode [{other}]. Use full (or all), image (or container), server (or game), or reinit."
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateMode::Reinit => "reinit",
            UpdateMode::Full => "full",
            UpdateMode::Image => "image",
            UpdateMode::Server => "server",
        }
    }

    pub(super) fn pulls(self) -> bool {
        matches!(
            self,
            UpdateMode::Reinit | UpdateMode::Full | UpdateMode::Image
        )
    }

    pub(super) fn reinstalls(self) -> bool {
        matches!(
            self,
            UpdateMode::Reinit | UpdateMode::Full | UpdateMode::Server
        )
    }
}

/// How long a container may take to show `running` after the engine accepted the start.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a started game is watched for an immediate crash.
const SETTLE: Duration = Duration::from_secs(1);
/// How long an action waits for the live model to see an exit the engine reported.
const SEE_EXIT: Duration = Duration::from_secs(3);

/// What `PUT /server/options` may change.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub restart_policy: Option<RestartPolicy>,
    pub stop_grace: Option<Duration>,
    /// `Some(None)` turns the idle stop off.
    pub idle_stop: Option<Option<Duration>>,
    pub idle_grace: Option<Duration>,
    pub wake_on_connect: Option<bool>,
    pub backup_before_idle_stop: Option<bool>,
    /// Cluster mode: `Some(None)` turns failover off, `Some(Some(d))` fails over after `d`.
    pub failover_after: Option<Option<Duration>>,
}

impl ServerService {
    /// Rewrites `.peon.json` through the store, off the async workers.
    pub(super) async fn save_state(
        &self,
        uid: &Uid,
        change: impl FnOnce(&mut ServerState) + Send + 'static,
    ) -> Result<()> {
        let Some(svc) = self.me.upgrade() else {
            return Ok(());
        };
        let uid = uid.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            svc.store.change_state(&uid, change)?;
            Ok(())
        })
        .await
        .map_err(|e| ServiceError::Failed(e.to_string()))?
    }

    pub(super) async fn set_wanted(&self, uid: &Uid, running: bool) -> Result<()> {
        if self
            .store
            .get(uid)
            .is_some_and(|r| r.state.wanted_running == running)
        {
            return Ok(());
        }
        self.save_state(uid, move |s| s.wanted_running = running)
            .await
    }

    /// Runs an action as a job, publishing its start and end as events. The job is the one
    /// the task already runs for (a background job made by `detach`, or an action inside
    /// another), else a new one, asked for by the task's requester (`daemon` when none).
    pub(super) async fn action<T>(
        &self,
        uid: &Uid,
        kind: JobKind,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let name = kind.as_str();
        let work = Box::pin(work);
        // The job is set up before the action's start is published: what a client does on
        // seeing that event (a kill during a start) finds the action under way.
        let own = match jobs::current() {
            Some(job) => {
                if !job.is_started() {
                    job.set_uid(&uid.to_string());
                    job.start().await;
                }
                None
            }
            None => {
                let who = jobs::requester().unwrap_or_else(|| "daemon".to_owned());
                let job = self.jobs.begin(kind, &uid.to_string(), &who).await;
                job.start().await;
                Some((job, who))
            }
        };
        let h = self.handle_of(uid);
        h.publish(EventKind::Action {
            action: name.to_owned(),
            phase: "start".into(),
            ok: None,
            error: None,
        });
        let r = match &own {
            Some((job, who)) => jobs::within(job.clone(), who, work).await,
            None => work.await,
        };
        if let Some((job, _)) = own {
            job.finish(r.as_ref().map(|_| ()).map_err(ToString::to_string))
                .await;
        }
        // The directory's disk use after the action (in the background).
        if let Some(svc) = self.me.upgrade() {
            let u = uid.clone();
            tokio::spawn(async move {
                if svc.store.contains(&u) {
                    let _ = svc.measure_disk(&u).await;
                }
            });
        }
        h.publish(EventKind::Action {
            action: name.to_owned(),
            phase: "end".into(),
            ok: Some(r.is_ok()),
            error: r.as_ref().err().map(ToString::to_string),
        });
        r
    }

    /// Starts a server, with an optional stop timer.
    pub async fn start(&self, uid: &Uid, timer: Option<OneShot>) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Start, async {
            let _g = self.lock(uid).await;
            self.start_locked(uid, timer).await
        })
        .await
    }

    /// Start, with the server's power lock held by the caller. The container is recreated from
    /// the server's config when it is missing or was made without stdin (an older peon). The
    /// console is attached before the game starts, so no line is missed.
    pub(super) async fn start_locked(
        &self,
        uid: &Uid,
        timer: Option<OneShot>,
    ) -> Result<ServerObject> {
        self.check_quota(uid).await?;
        // A sleeping server's held ports are released before the game needs them.
        self.disarm_wake(uid).await;
        let rec = self.record(uid)?;
        let h = self.handle_of(uid);
        let (intent, before) = {
            let mut s = h.state();
            s.in_start = true;
            (s.intent, s.recorded_run.clone())
        };
        let mut r = self.start_run(&rec, &h, intent).await;
        if r.is_ok() {
            // Recorded while the start still owns the exits, so an exit right after it is
            // judged against what the host now wants.
            r = self.want_running_unless_stopped(uid, &h, intent).await;
        }
        h.state().in_start = false;
        let exited = h.exit_since(&before);
        if let Err(e) = r {
            if h.state().phase == Phase::Starting && !h.is_running() {
                h.set_phase(Phase::Stopped, None);
            }
            if h.state().intent != intent {
                return Err(ServiceError::NotRunning(format!(
                    "The server [{uid}] was stopped while it was starting."
                )));
            }
            return Err(e);
        }
        if let Some(class) = exited {
            // The game exited just after the start was confirmed: the policy decides now.
            self.apply_policy(&h, class).await;
        }
        if let Some(t) = timer {
            self.scheduler.set_stop(uid, t).await?;
        }
        self.refresh_game_config(&h, &rec).await;
        Ok(self.object(&rec, &h, true))
    }

    /// Records that the host wants the server running, unless a stop or kill came since the
    /// start began (`intent`); a stop that raced with this write is re-applied.
    async fn want_running_unless_stopped(
        &self,
        uid: &Uid,
        h: &ServerHandle,
        intent: u64,
    ) -> Result<()> {
        if h.state().intent != intent {
            return Ok(());
        }
        self.set_wanted(uid, true).await?;
        if h.state().intent != intent {
            self.set_wanted(uid, false).await?;
        }
        Ok(())
    }

    async fn start_run(
        &self,
        rec: &Arc<ServerRecord>,
        h: &Arc<ServerHandle>,
        intent: u64,
    ) -> Result<()> {
        let uid = &rec.uid;
        let name = uid.container_name();
        let running = step("prepare container", async {
            let mut current = self.runtime.inspect(&name).await?;
            if current.as_ref().is_some_and(|c| c.running) {
                return Ok(true);
            }
            let group = rec.plan.port_groups.first().cloned().unwrap_or_default();
            self.check_ports_free(uid, &group).await?;
            if let Some(c) = &current {
                let policy_ok = matches!(c.restart_policy.as_str(), "" | "no");
                if c.limits != self.engine_limits(rec) {
                    // A limit lifted while it ran (the engine cannot lift it in place).
                    tracing::info!(uid = %uid, "container limits differ from the server's: recreating it");
                    self.runtime.remove(&name).await?;
                    current = None;
                } else if !c.stdin_open || !policy_ok {
                    tracing::info!(uid = %uid, "container made by an older peon (no stdin or an engine restart policy): recreating it");
                    self.runtime.remove(&name).await?;
                    current = None;
                }
            }
            if current.is_none() {
                self.ensure_container(rec).await?;
            }
            Ok::<_, ServiceError>(false)
        })
        .await?;
        if running {
            return Ok(());
        }
        // In cluster mode the task (and its container on a node) exists only once started:
        // the console is attached after the start, through the node's agent.
        let cluster = self.cluster.get().is_some();
        if !cluster {
            step("attach console", self.attach_console(h)).await?;
        }
        let sub = Self::ready_subscription(rec, h, 0);
        {
            let mut s = h.state();
            if s.intent != intent {
                return Err(ServiceError::NotRunning(format!("[{uid}] was stopped")));
            }
            s.expected = Expected::Nothing;
            s.oom_seen = false;
            s.run_since = Some(Instant::now());
            s.empty_since = None;
            s.players = None;
            s.max_players = None;
        }
        h.set_phase(Phase::Starting, None);
        let since = std::time::SystemTime::now();
        step("start", async {
            match self.runtime.start(&name).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    h.set_phase(Phase::Stopped, None);
                    Err(match e {
                        RuntimeError::PortInUse(m) => ServiceError::PortsInUse(format!(
                            "A port required by [{uid}] is in use on the host: {m}"
                        )),
                        e => e.into(),
                    })
                }
            }
        })
        .await?;
        if cluster && let Err(e) = self.attach_console(h).await {
            tracing::warn!(uid = %uid, "console not attached (cluster mode needs the node's agent): {e}");
        }
        if h.state().intent != intent {
            // A kill or stop came while the engine was starting the game: honour it.
            let _ = self.runtime.kill(&name, "KILL").await;
            return Err(ServiceError::NotRunning(format!("[{uid}] was stopped")));
        }
        self.watch_readiness(h, rec, sub, since);
        step("settle", self.wait_running(uid)).await?;
        tracing::info!(uid = %uid, "server started");
        Ok(())
    }

    /// Waits until the container runs, then watches it for a short settle time: a game that
    /// exits at once fails the action with its exit code and last output lines, instead of
    /// being reported as running.
    async fn wait_running(&self, uid: &Uid) -> Result<()> {
        let name = uid.container_name();
        let deadline = Instant::now() + START_DEADLINE;
        let mut running_since: Option<Instant> = None;
        loop {
            let d = self.runtime.inspect(&name).await?.ok_or_else(|| {
                ServiceError::Failed(format!(
                    "The container of [{uid}] disappeared while starting."
                ))
            })?;
            let crashed = match running_since {
                Some(_) => !d.running,
                None => matches!(d.state.as_str(), "exited" | "dead"),
            };
            if crashed {
                let h = self.handle_of(uid);
                // The exit is recorded now (the event may come later).
                self.observe_exit(&h, d.exit_code, true).await;
                let tail = h.console.recent(10);
                return Err(ServiceError::Failed(format!(
                    "The server [{uid}] exited right after starting (exit code {}). Last output: {}",
                    d.exit_code.unwrap_or(-1),
                    tail.join(" | ")
                )));
            }
            match running_since {
                Some(t) if t.elapsed() >= SETTLE => return Ok(()),
                None if d.running => running_since = Some(Instant::now()),
                None if Instant::now() >= deadline => {
                    return Err(ServiceError::Failed(format!(
                        "The server [{uid}] did not reach the running state within {}s.",
                        START_DEADLINE.as_secs()
                    )));
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops a server now (its stop commands, then SIGTERM, then kill after the grace period)
    /// and cancels its pending stop timer; with a timer, only schedules the stop.
    pub async fn stop(&self, uid: &Uid, timer: Option<OneShot>) -> Result<ServerObject> {
        self.record(uid)?;
        if let Some(t) = timer {
            let _g = self.lock(uid).await;
            self.scheduler.set_stop(uid, t).await?;
            drop(_g);
            return self.get(uid).await;
        }
        // What the host wants is recorded before waiting for the lock: a stop sent while a
        // start is under way is honoured.
        self.want_stopped(uid, Expected::Stop).await?;
        self.action(uid, JobKind::Stop, async {
            let _g = self.lock(uid).await;
            self.scheduler.cancel_stop(uid).await?;
            self.stop_locked(uid).await
        })
        .await
    }

    /// Records that the host wants the server stopped: no restart, no readiness watch.
    pub(super) async fn want_stopped(&self, uid: &Uid, how: Expected) -> Result<()> {
        let h = self.handle_of(uid);
        {
            let mut s = h.state();
            s.intent += 1;
            s.expected = how;
        }
        h.set_watcher(None);
        self.set_wanted(uid, false).await
    }

    /// Stop, with the server's power lock held by the caller.
    pub(super) async fn stop_locked(&self, uid: &Uid) -> Result<ServerObject> {
        let rec = self.record(uid)?;
        let h = self.handle_of(uid);
        {
            let mut s = h.state();
            s.intent += 1;
            if !matches!(s.expected, Expected::Kill | Expected::IdleStop) {
                s.expected = Expected::Stop;
            }
        }
        h.set_watcher(None);
        self.set_wanted(uid, false).await?;
        let name = uid.container_name();
        let running = self
            .runtime
            .inspect(&name)
            .await?
            .is_some_and(|d| d.running);
        if running {
            h.set_phase(Phase::Stopping, None);
            let grace = self.stop_grace(&rec);
            let t0 = Instant::now();
            let commands = &rec.plan.lifecycle.stop_command;
            if !commands.is_empty() && h.console.has_input() {
                step("stop commands", async {
                    for c in commands {
                        if let Err(e) = h.console.send_command(c).await {
                            tracing::warn!(uid = %uid, "stop command not taken: {e}");
                            break;
                        }
                    }
                    h.wait_stopped(grace / 2).await;
                    Ok::<_, ServiceError>(())
                })
                .await?;
            }
            let rest = grace
                .saturating_sub(t0.elapsed())
                .max(Duration::from_secs(1));
            step("signal", async {
                match self
                    .runtime
                    .stop(&name, rec.plan.lifecycle.stop_signal.as_deref(), rest)
                    .await
                {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
                    Err(e) => Err(ServiceError::from(e)),
                }
            })
            .await?;
            step("wait for exit", async {
                self.observe_exit(&h, None, true).await;
                Ok::<_, ServiceError>(())
            })
            .await?;
            tracing::info!(uid = %uid, "server stopped");
        } else {
            // The game may have exited just before the inspect, its exit not yet seen: record
            // it now, as the stop the host asked for, before forgetting the stop.
            self.observe_exit(&h, None, true).await;
            h.state().expected = Expected::Nothing;
        }
        Ok(self.object(&rec, &h, true))
    }

    /// Kills a server at once (SIGKILL). It goes through even while another action holds the
    /// power lock, and is never undone by the restart policy.
    pub async fn kill(&self, uid: &Uid) -> Result<ServerObject> {
        let rec = self.record(uid)?;
        self.refuse_if_unreachable(uid, "a kill")?;
        self.want_stopped(uid, Expected::Kill).await?;
        self.scheduler.cancel_stop(uid).await?;
        self.action(uid, JobKind::Kill, async {
            let h = self.handle_of(uid);
            let killed = step("signal", async {
                match self.runtime.kill(&uid.container_name(), "KILL").await {
                    Ok(()) => Ok(true),
                    Err(RuntimeError::Conflict(_) | RuntimeError::NotFound(_)) => {
                        // Not running: an exit the event stream has not delivered yet is the
                        // stop the host asked for, not an in-game stop or a crash.
                        self.observe_exit(&h, None, true).await;
                        h.state().expected = Expected::Nothing;
                        Ok(false)
                    }
                    Err(e) => Err(ServiceError::from(e)),
                }
            })
            .await?;
            if killed {
                step("wait for exit", async {
                    if !h.wait_stopped(SEE_EXIT).await {
                        self.observe_exit(&h, None, true).await;
                    }
                    Ok::<_, ServiceError>(())
                })
                .await?;
            }
            tracing::info!(uid = %uid, "server killed");
            Ok(self.object(&rec, &h, true))
        })
        .await
    }

    /// Restarts a running server (stop, then start), or starts a stopped one.
    pub async fn restart(&self, uid: &Uid) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Restart, async {
            let _g = self.lock(uid).await;
            self.check_quota(uid).await?;
            self.stop_locked(uid).await?;
            self.start_locked(uid, None).await
        })
        .await
    }

    /// Changes the server's restart policy and stop grace period.
    pub async fn set_options(&self, uid: &Uid, o: ServerOptions) -> Result<ServerObject> {
        self.record(uid)?;
        if o.wake_on_connect == Some(true) {
            self.refuse_wake_in_cluster()?;
        }
        let _g = self.lock(uid).await;
        let grace = o.stop_grace.map(|d| d.as_secs());
        let wake_off = o.wake_on_connect == Some(false);
        self.save_state(uid, move |s| {
            if let Some(p) = o.restart_policy {
                s.restart_policy = Some(p);
            }
            if let Some(g) = grace {
                s.stop_grace_s = Some(g);
            }
            if let Some(i) = o.idle_stop {
                s.idle_stop_s = i.map(|d| d.as_secs());
            }
            if let Some(g) = o.idle_grace {
                s.idle_grace_s = Some(g.as_secs());
            }
            if let Some(w) = o.wake_on_connect {
                s.wake_on_connect = w;
            }
            if let Some(b) = o.backup_before_idle_stop {
                s.backup_before_idle_stop = b;
            }
            if let Some(f) = o.failover_after {
                s.failover_after_s = f.map(|d| d.as_secs());
            }
        })
        .await?;
        if wake_off {
            // Turned off while asleep: the ports are let go.
            self.disarm_wake(uid).await;
        }
        tracing::info!(uid = %uid, "server options changed");
        drop(_g);
        self.get(uid).await
    }

    /// Sets the server's description in `config.json`.
    pub async fn describe(&self, uid: &Uid, description: &str) -> Result<ServerObject> {
        let _g = self.lock(uid).await;
        let rec = self.record(uid)?;
        let mut config = rec.config.clone();
        match config.get_mut("metadata").and_then(Value::as_object_mut) {
            Some(m) => {
                m.insert("description".into(), Value::String(description.to_owned()));
            }
            None => {
                config["metadata"] = serde_json::json!({ "description": description });
            }
        }
        self.store.write_config(uid, config)?;
        drop(_g);
        self.get(uid).await
    }

    /// Wake on connect holds a stopped game's ports on this host: in cluster mode the game's
    /// ports are on its node, where peon does not listen.
    pub(super) fn refuse_wake_in_cluster(&self) -> Result<()> {
        if self.cluster.get().is_some() {
            return Err(ServiceError::BadRequest(
                "wake_on_connect is for single-host mode: in cluster mode a game's ports are on its node.".into(),
            ));
        }
        Ok(())
    }

    /// Removes the container and network; with `eradicate`, also every file of the server.
    pub async fn destroy(&self, uid: &Uid, eradicate: bool) -> Result<String> {
        self.record(uid)?;
        let kind = if eradicate {
            JobKind::Eradicate
        } else {
            JobKind::Destroy
        };
        self.action(uid, kind, self.destroy_inner(uid, eradicate))
            .await
    }

    async fn destroy_inner(&self, uid: &Uid, eradicate: bool) -> Result<String> {
        self.want_stopped(uid, Expected::Stop).await?;
        self.disarm_wake(uid).await;
        let _g = self.lock(uid).await;
        let rec = self.record(uid)?;
        step("remove container", self.remove_container(&rec)).await?;
        self.handle_of(uid).set_container(None);
        step("forget schedules", async {
            self.scheduler.forget_server(uid).await
        })
        .await?;
        if eradicate {
            step("remove files", self.remove_files(uid)).await?;
            Ok(format!(
                "Server {uid} was removed. All files for {uid} were deleted."
            ))
        } else {
            self.set_wanted(uid, false).await?;
            Ok(format!("Server {uid} was removed. Its files were kept."))
        }
    }

    /// Forgets the server and deletes its files (in cluster mode, on its node first: a node
    /// whose agent does not answer fails it, and nothing is forgotten).
    pub(super) async fn remove_files(&self, uid: &Uid) -> Result<()> {
        self.remove_on_node(uid).await?;
        self.remove_local_files(uid).await
    }

    /// Forgets the server and deletes the files in the manager's data dir.
    pub(super) async fn remove_local_files(&self, uid: &Uid) -> Result<()> {
        self.registry.remove(uid);
        self.blocking_store(uid, |store, u| store.remove_server(u))
            .await?;
        tracing::info!(uid = %uid, "server files removed");
        Ok(())
    }

    /// Runs a blocking store call off the async workers.
    pub(super) async fn blocking_store(
        &self,
        uid: &Uid,
        f: impl FnOnce(&crate::store::ServerStore, &Uid) -> crate::store::Result<()> + Send + 'static,
    ) -> Result<()> {
        let svc = self
            .me
            .upgrade()
            .ok_or_else(|| ServiceError::Failed("the service is shutting down".into()))?;
        let uid = uid.clone();
        tokio::task::spawn_blocking(move || f(&svc.store, &uid))
            .await
            .map_err(|e| ServiceError::Failed(e.to_string()))??;
        Ok(())
    }

    /// PEON's import: adopts server directories on disk and gives every server without a
    /// container a fresh (stopped) one.
    pub async fn import(&self) -> Result<Vec<ServerObject>> {
        let new = self.store.rescan()?;
        for uid in &new {
            tracing::info!(uid = %uid, "import: found server directory");
        }
        self.resync().await?;
        for rec in self.store.list() {
            if self.handle_of(&rec.uid).state().container.is_some() {
                continue;
            }
            let _g = self.lock(&rec.uid).await;
            if let Err(e) = self.ensure_container(&rec).await {
                tracing::warn!(uid = %rec.uid, "import: cannot create container: {e}");
            }
            self.refresh_container(&self.handle_of(&rec.uid)).await?;
        }
        self.list().await
    }

    /// After a daemon (or engine) restart: servers the host wants running are started, running
    /// containers are left alone. Reads the live model, which a resync has just filled.
    pub async fn reconcile(&self) -> Result<()> {
        for rec in self.store.list() {
            let running = self.handle_of(&rec.uid).is_running();
            if rec.state.sleeping && !running {
                self.arm_wake(&rec.uid).await;
                continue;
            }
            if rec.state.wanted_running && !running {
                tracing::info!(uid = %rec.uid, "reconcile: server should run, starting it");
                let start = self.acting("daemon", self.start(&rec.uid, None));
                if let Err(e) = start.await {
                    tracing::warn!(uid = %rec.uid, "reconcile: start failed: {e}");
                }
            }
        }
        Ok(())
    }
}
