//! Start, stop, restart, update, describe, destroy, import, and bringing servers back after a
//! daemon restart. Every action waits for the real container state and returns a fresh object.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Result, ServerObject, ServerService, ServiceError};
use crate::docker::DockerError;
use crate::fsio::{atomic, fsutil};
use crate::names::Uid;
use crate::schedule::OneShot;
use crate::store::ServerState;

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

    fn pulls(self) -> bool {
        matches!(
            self,
            UpdateMode::Reinit | UpdateMode::Full | UpdateMode::Image
        )
    }

    fn reinstalls(self) -> bool {
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

impl ServerService {
    async fn set_wanted(&self, uid: &Uid, running: bool) -> Result<()> {
        if let Some(rec) = self.store.get(uid) {
            let state = ServerState {
                wanted_running: running,
                ..rec.state.clone()
            };
            self.store.write_state(uid, state)?;
        }
        Ok(())
    }

    /// Starts a server, with an optional stop timer.
    pub async fn start(&self, uid: &Uid, timer: Option<OneShot>) -> Result<ServerObject> {
        let _g = self.lock(uid).await;
        self.start_locked(uid, timer).await
    }

    /// Start, with the server's lock held by the caller. The container is recreated from the
    /// server's config when it is missing.
    pub(super) async fn start_locked(
        &self,
        uid: &Uid,
        timer: Option<OneShot>,
    ) -> Result<ServerObject> {
        let rec = self.record(uid)?;
        let name = uid.container_name();
        let current = self.engine.inspect(&name).await?;
        if !current.as_ref().is_some_and(|c| c.running) {
            let group = rec.plan.port_groups.first().cloned().unwrap_or_default();
            self.check_ports_free(uid, &group).await?;
            if current.is_none() {
                self.ensure_container(&rec).await?;
            }
            match self.engine.start_container(&name).await {
                Ok(()) => {}
                Err(DockerError::PortInUse(m)) => {
                    return Err(ServiceError::PortsInUse(format!(
                        "A port required by [{uid}] is in use on the host: {m}"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            self.wait_running(uid).await?;
            tracing::info!(uid = %uid, "server started");
        }
        self.set_wanted(uid, true).await?;
        if let Some(t) = timer {
            self.scheduler.set_stop(uid, t).await?;
        }
        self.get(uid).await
    }

    /// Waits until the container runs, then watches it for a short settle time: a game that
    /// exits (or is restarted by the engine) at once fails the action with its exit code and
    /// last output lines, instead of being reported as running.
    async fn wait_running(&self, uid: &Uid) -> Result<()> {
        let name = uid.container_name();
        let deadline = Instant::now() + START_DEADLINE;
        let mut running_since: Option<(Instant, i64)> = None;
        loop {
            let d = self.engine.inspect(&name).await?.ok_or_else(|| {
                ServiceError::Failed(format!(
                    "The container of [{uid}] disappeared while starting."
                ))
            })?;
            let crashed = match running_since {
                Some((_, restarts)) => d.restart_count > restarts || !d.running,
                None => matches!(d.state.as_str(), "exited" | "dead"),
            };
            if crashed {
                let tail = self.engine.logs(&name, 10).await.unwrap_or_default();
                return Err(ServiceError::Failed(format!(
                    "The server [{uid}] exited right after starting (exit code {}). Last output: {}",
                    d.exit_code.unwrap_or(-1),
                    tail.join(" | ")
                )));
            }
            match running_since {
                Some((t, _)) if t.elapsed() >= SETTLE => return Ok(()),
                None if d.running => running_since = Some((Instant::now(), d.restart_count)),
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

    /// Stops a server now (SIGTERM, then kill after the stop timeout) and cancels its pending
    /// stop timer; with a timer, only schedules the stop.
    pub async fn stop(&self, uid: &Uid, timer: Option<OneShot>) -> Result<ServerObject> {
        let _g = self.lock(uid).await;
        self.record(uid)?;
        if let Some(t) = timer {
            self.scheduler.set_stop(uid, t).await?;
            drop(_g);
            return self.get(uid).await;
        }
        self.scheduler.cancel_stop(uid).await?;
        self.stop_locked(uid).await
    }

    /// Stop, with the server's lock held by the caller.
    pub(super) async fn stop_locked(&self, uid: &Uid) -> Result<ServerObject> {
        let timeout = i32::try_from(self.settings.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        match self
            .engine
            .stop_container(&uid.container_name(), timeout)
            .await
        {
            Ok(()) | Err(DockerError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.set_wanted(uid, false).await?;
        tracing::info!(uid = %uid, "server stopped");
        self.get(uid).await
    }

    /// Restarts a running server, or starts a stopped one.
    pub async fn restart(&self, uid: &Uid) -> Result<ServerObject> {
        let _g = self.lock(uid).await;
        self.record(uid)?;
        let name = uid.container_name();
        match self.engine.inspect(&name).await? {
            Some(d) if d.running => {
                let timeout =
                    i32::try_from(self.settings.stop_timeout.as_secs()).unwrap_or(i32::MAX);
                self.engine.restart_container(&name, timeout).await?;
                self.wait_running(uid).await?;
                self.set_wanted(uid, true).await?;
                self.get(uid).await
            }
            _ => self.start_locked(uid, None).await,
        }
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

    /// PEON's update: stop, apply the mode, then start with a fresh container.
    pub async fn update(&self, uid: &Uid, mode: UpdateMode) -> Result<ServerObject> {
        let _g = self.lock(uid).await;
        let rec = self.record(uid)?;
        self.stop_locked(uid).await?;
        if mode == UpdateMode::Reinit {
            let data = rec.dir.join("data");
            tokio::task::spawn_blocking(move || fsutil::empty_dir(&data))
                .await
                .map_err(|e| ServiceError::Failed(e.to_string()))??;
            tracing::info!(uid = %uid, "update: data/ wiped");
        }
        if mode.pulls() {
            match self.engine.pull_image(&rec.plan.image).await {
                Ok(()) => {}
                Err(e @ DockerError::ImageUnavailable { .. }) => {
                    if self.engine.image_env(&rec.plan.image).await?.is_none() {
                        return Err(e.into());
                    }
                    tracing::warn!(uid = %uid, "update: pull failed, keeping the local image: {e}");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if mode.reinstalls() {
            match std::fs::remove_file(rec.dir.join("actions").join(".update")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A new container picks up a new image and the current config.
        self.remove_container(&rec).await?;
        self.start_locked(uid, None).await
    }

    /// Removes the container and network; with `eradicate`, also every file of the server.
    pub async fn destroy(&self, uid: &Uid, eradicate: bool) -> Result<String> {
        let _g = self.lock(uid).await;
        let rec = self.record(uid)?;
        self.remove_container(&rec).await?;
        self.scheduler.forget_server(uid).await?;
        if eradicate {
            self.remove_files(uid).await?;
            Ok(format!(
                "Server {uid} was removed. All files for {uid} were deleted."
            ))
        } else {
            self.set_wanted(uid, false).await?;
            Ok(format!("Server {uid} was removed. Its files were kept."))
        }
    }

    /// Moves the server directory to staging (one rename), forgets it, then deletes it.
    pub(super) async fn remove_files(&self, uid: &Uid) -> Result<()> {
        let dir = self.store.data_dir().server_dir(uid);
        let trash = self
            .store
            .data_dir()
            .staging()
            .join(format!("trash-{uid}-{}", atomic::random_suffix()));
        self.store.forget(uid);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            match std::fs::rename(&dir, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
            if let Some(p) = dir.parent() {
                atomic::sync_dir(p)?;
                // Leave no empty game folder behind.
                let _ = std::fs::remove_dir(p);
            }
            std::fs::remove_dir_all(&trash)
        })
        .await
        .map_err(|e| ServiceError::Failed(e.to_string()))??;
        tracing::info!(uid = %uid, "server files removed");
        Ok(())
    }

    /// PEON's import: adopts server directories on disk and gives every server without a
    /// container a fresh (stopped) one.
    pub async fn import(&self) -> Result<Vec<ServerObject>> {
        let new = self.store.rescan()?;
        for uid in &new {
            tracing::info!(uid = %uid, "import: found server directory");
        }
        let containers = self.containers().await?;
        for rec in self.store.list() {
            if containers.contains_key(&rec.uid.to_string()) {
                continue;
            }
            let _g = self.lock(&rec.uid).await;
            if let Err(e) = self.ensure_container(&rec).await {
                tracing::warn!(uid = %rec.uid, "import: cannot create container: {e}");
            }
        }
        self.list().await
    }

    /// After a daemon (or engine) restart: servers the host wants running are started, running
    /// containers are left alone.
    pub async fn reconcile(&self) -> Result<()> {
        let containers = self.containers().await?;
        for rec in self.store.list() {
            let running = containers
                .get(&rec.uid.to_string())
                .is_some_and(|c| c.state == "running");
            if rec.state.wanted_running && !running {
                tracing::info!(uid = %rec.uid, "reconcile: server should run, starting it");
                if let Err(e) = self.start(&rec.uid, None).await {
                    tracing::warn!(uid = %rec.uid, "reconcile: start failed: {e}");
                }
            }
        }
        Ok(())
    }
}
