//! Updates that can be undone. Before an update touches anything, peon records the image the
//! server runs, its plan version, and an undo point (a copy of the whole server directory:
//! config, plan files, world). After the update the new version must get ready and then stay up
//! through a watch window; if any step fails, it does not get ready, or it exits within the
//! window, peon rolls back by itself: the directory is swapped back, the server is pinned to its
//! previous image, and it is started again. The job says what happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::container::run_image;
use super::planver::{PlanChange, PlanStep, PlanTarget};
use super::readiness::DEFAULT_READY_TIMEOUT;
use super::{Result, ServerObject, ServerService, ServiceError, UpdateMode};
use crate::jobs::{JobKind, step};
use crate::live::events::EventKind;
use crate::live::{Phase, ServerHandle};
use crate::model::exit::ExitClass;
use crate::model::update::{UpdateRecord, UpdateResult};
use crate::names::Uid;
use crate::runtime::RuntimeError;
use crate::store::ServerRecord;

/// How often the watch looks at the live state.
const WATCH_TICK: Duration = Duration::from_millis(100);

/// What a caller may choose of an update besides PEON's mode.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// How long the new version must stay up after getting ready; the daemon's default when
    /// `None`, no watch with zero.
    pub watch: Option<Duration>,
    /// How long the new version may take to get ready; the plan's ready timeout when `None`.
    pub ready_within: Option<Duration>,
    /// The image to go to (a rollout's target), which the server is then pinned to; the plan's
    /// image when `None`.
    pub image: Option<String>,
    /// Another version of the plan to move to (its files, settings and image), or none.
    pub plan: Option<PlanTarget>,
}

impl ServerService {
    /// PEON's update (stop, apply the mode, start with a fresh container), undone by itself
    /// when the new version fails.
    pub async fn update(
        &self,
        uid: &Uid,
        mode: UpdateMode,
        opts: UpdateOptions,
    ) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Update, self.update_inner(uid, mode, opts))
            .await
    }

    pub(super) async fn update_inner(
        &self,
        uid: &Uid,
        mode: UpdateMode,
        opts: UpdateOptions,
    ) -> Result<ServerObject> {
        let _g = self.lock(uid).await;
        let rec = self.record(uid)?;
        self.check_quota(uid).await?;
        let h = self.handle_of(uid);
        let watch = opts.watch.unwrap_or(self.settings.update_watch);
        // A plan version that is not there is refused before anything changes.
        let plan_step = match &opts.plan {
            Some(t) => Some(step("plan", self.plan_step(&rec, t)).await?),
            None => None,
        };
        let from_image = step("record", async {
            // The image the container runs (its tag may point elsewhere by now), else the one
            // it would run.
            let from = match self.runtime.inspect(&uid.container_name()).await? {
                Some(c) if !c.image_id.is_empty() => Some(c.image_id),
                _ => self.runtime.image_id(run_image(&rec)).await?,
            };
            // Cluster mode: the undo point is of the node's files.
            self.fetch_from_node(uid).await?;
            self.blocking_store(uid, |store, u| store.save_undo_point(u))
                .await?;
            Ok::<_, ServiceError>(from)
        })
        .await?;
        let mut record = UpdateRecord {
            time: crate::live::events::now_rfc3339(),
            mode: mode.as_str().to_owned(),
            from_image: from_image.clone(),
            to_image: None,
            plan_version: rec.state.plan_version.clone(),
            to_plan_version: plan_step.as_ref().and_then(|p| p.to_version.clone()),
            watch_s: watch.as_secs(),
            result: UpdateResult::Running,
            reason: None,
        };
        self.note_update(uid, &record, None).await?;
        tracing::info!(uid = %uid, mode = mode.as_str(), from = ?from_image, from_plan = ?record.plan_version, to_plan = ?record.to_plan_version, "update: undo point recorded");

        let outcome = self
            .apply_update(uid, &rec, &h, mode, &opts, plan_step.as_ref(), watch)
            .await;
        let reason = match outcome {
            Ok(to_image) => {
                record.to_image = to_image;
                record.result = UpdateResult::Updated;
                // The update is kept: the server follows its plan's image again, or stays on
                // the image it was updated to.
                self.note_update(uid, &record, Some(opts.image.clone()))
                    .await?;
                self.blocking_store(uid, |store, u| store.drop_undo_point(u))
                    .await?;
                // Back on the plan kept before a plan update: that plan undo is used up.
                if plan_step
                    .as_ref()
                    .is_some_and(|p| matches!(p.change, PlanChange::Previous))
                {
                    self.blocking_store(uid, |store, u| store.drop_plan_undo(u))
                        .await?;
                }
                tracing::info!(uid = %uid, "update kept");
                let rec = self.record(uid)?;
                return Ok(self.object(&rec, &h, true));
            }
            Err(reason) => reason,
        };
        tracing::warn!(uid = %uid, "update failed, rolling back: {reason}");
        let rolled = step(
            "roll back",
            self.roll_back(uid, from_image.as_deref(), record.plan_version.clone()),
        )
        .await;
        let (result, message) = match &rolled {
            Ok(()) => (
                UpdateResult::RolledBack,
                format!(
                    "The update of [{uid}] failed ({reason}) and was rolled back: its previous image, files and world are back and it runs again."
                ),
            ),
            Err(e) => (
                UpdateResult::RollbackFailed,
                format!(
                    "The update of [{uid}] failed ({reason}) and the rollback failed too ({e}); the copy made before the update is kept in the data dir's undo/{uid}."
                ),
            ),
        };
        record.result = result;
        record.reason = Some(reason.clone());
        let pin = if rolled.is_ok() {
            Some(from_image.clone())
        } else {
            None
        };
        if let Err(e) = self.note_update(uid, &record, pin).await {
            tracing::warn!(uid = %uid, "cannot record the rollback: {e}");
        }
        h.publish(EventKind::UpdateRolledBack {
            reason,
            ok: rolled.is_ok(),
        });
        Err(ServiceError::RolledBack(message))
    }

    /// The update itself, then the watch. `Ok` with the new image id, or why it failed.
    #[allow(clippy::too_many_arguments)]
    async fn apply_update(
        &self,
        uid: &Uid,
        rec: &Arc<ServerRecord>,
        h: &Arc<ServerHandle>,
        mode: UpdateMode,
        opts: &UpdateOptions,
        plan: Option<&PlanStep>,
        watch: Duration,
    ) -> std::result::Result<Option<String>, String> {
        // Whether the update changes files (in cluster mode, made on the manager's copy,
        // fetched from the node once the game stopped and sent back before the start).
        let files = mode == UpdateMode::Reinit || plan.is_some() || mode.reinstalls();
        let steps = async {
            step("stop", self.stop_locked(uid)).await?;
            if files {
                self.fetch_from_node(uid).await?;
            }
            if mode == UpdateMode::Reinit {
                step(
                    "wipe data",
                    self.blocking_store(uid, |store, u| store.wipe_data(u)),
                )
                .await?;
                tracing::info!(uid = %uid, "update: data/ wiped");
            }
            if let Some(ps) = plan {
                let name = format!(
                    "plan {} -> {}",
                    rec.state.plan_version.as_deref().unwrap_or("(none)"),
                    ps.to_version.as_deref().unwrap_or("(none)")
                );
                step(&name, self.apply_plan_step(uid, ps)).await?;
            }
            // The plan's image (the new plan's, after a plan change), or the one asked for.
            let target = match &opts.image {
                Some(i) => i.clone(),
                None => self.record(uid)?.plan.image.clone(),
            };
            if mode.pulls() {
                step("pull image", self.pull_for_update(uid, &target)).await?;
            }
            if mode.reinstalls() {
                step(
                    "reinstall marker",
                    self.blocking_store(uid, |store, u| store.clear_update_marker(u)),
                )
                .await?;
            }
            // The update goes to the plan's image (a pin left by an earlier rollback is lifted
            // for the new container, and dropped for good when the update is kept), or to the
            // image asked for.
            if rec.state.image_pin != opts.image {
                let pin = opts.image.clone();
                self.save_state(uid, move |s| s.image_pin = pin).await?;
            }
            // A new container picks up a new image and the current config.
            step("recreate", self.remove_container(rec)).await?;
            let to = self.runtime.image_id(&target).await?;
            if to.is_none() {
                return Err(ServiceError::Conflict(format!(
                    "The image {target} is not on the engine and could not be pulled."
                )));
            }
            if files {
                self.send_to_node(uid).await?;
            }
            // PEON's update ends with the server started.
            let before = h.state().recorded_run.clone();
            step("start", self.start_locked(uid, None)).await?;
            Ok::<_, ServiceError>((to, before))
        };
        let (to, before) = steps.await.map_err(|e| e.to_string())?;
        let rec = self.record(uid).map_err(|e| e.to_string())?;
        step(
            "watch",
            self.watch_update(&rec, h, &before, opts.ready_within, watch),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(to)
    }

    /// Pulls the plan's image; a pull that fails while the image is present keeps the local
    /// one (no registry reachable is not a failed update).
    async fn pull_for_update(&self, uid: &Uid, image: &str) -> Result<()> {
        match self.runtime.pull_image(image).await {
            Ok(()) => Ok(()),
            Err(e @ RuntimeError::ImageUnavailable { .. }) => {
                if self.runtime.image_env(image).await?.is_none() {
                    return Err(e.into());
                }
                tracing::warn!(uid = %uid, "update: pull failed, keeping the local image: {e}");
                Ok(())
            }
            Err(e) => Err(ServiceError::from(e)),
        }
    }

    /// Waits for the started game to get ready (within the plan's ready timeout), then for
    /// `window` without an exit.
    async fn watch_update(
        &self,
        rec: &ServerRecord,
        h: &Arc<ServerHandle>,
        before: &Option<String>,
        ready_within: Option<Duration>,
        window: Duration,
    ) -> Result<()> {
        let ready_within = ready_within
            .or(rec.plan.lifecycle.ready_timeout)
            .unwrap_or(DEFAULT_READY_TIMEOUT);
        let failed = |why: String| Err(ServiceError::Failed(why));
        let deadline = Instant::now() + ready_within + Duration::from_secs(5);
        loop {
            if let Some(why) = exited_since(h, before) {
                return failed(why);
            }
            match h.state().phase.clone() {
                Phase::Running => break,
                Phase::Unhealthy(reason) => return failed(format!("not ready: {reason}")),
                Phase::Stopped | Phase::Stopping => {
                    return failed("the game stopped before it was ready".into());
                }
                Phase::Starting => {}
            }
            if Instant::now() >= deadline {
                return failed(format!("not ready within {}s", ready_within.as_secs()));
            }
            tokio::time::sleep(WATCH_TICK).await;
        }
        tracing::info!(uid = %rec.uid, "update: ready, watching for {}s", window.as_secs());
        let end = Instant::now() + window;
        while Instant::now() < end {
            if let Some(why) = exited_since(h, before) {
                return failed(format!("{why} within the watch window"));
            }
            tokio::time::sleep(WATCH_TICK.min(end.saturating_duration_since(Instant::now()))).await;
        }
        match exited_since(h, before) {
            Some(why) => failed(format!("{why} within the watch window")),
            None => Ok(()),
        }
    }

    /// At daemon start: every update a stopped daemon left under way (`last_update` still
    /// `running`) is rolled back from its undo point, as a job asked for by `daemon`; one that
    /// had not yet made its undo point had changed nothing and is only marked so.
    pub(super) async fn recover_updates(&self) {
        for rec in self.store.list() {
            let Some(last) = rec.state.last_update.clone() else {
                continue;
            };
            if last.result != UpdateResult::Running {
                continue;
            }
            let uid = rec.uid.clone();
            let why = "the daemon stopped while the update ran".to_owned();
            tracing::warn!(uid = %uid, "{why}: rolling it back");
            let work = self.action(&uid, JobKind::Update, async {
                let _g = self.lock(&uid).await;
                let mut record = last.clone();
                record.reason = Some(why.clone());
                if !self.store.has_undo_point(&uid) {
                    // It stopped before the undo point was complete: nothing had changed.
                    record.result = UpdateResult::RolledBack;
                    self.note_update(&uid, &record, None).await?;
                    return Ok(());
                }
                let rolled = step(
                    "roll back",
                    self.roll_back(&uid, last.from_image.as_deref(), last.plan_version.clone()),
                )
                .await;
                record.result = if rolled.is_ok() {
                    UpdateResult::RolledBack
                } else {
                    UpdateResult::RollbackFailed
                };
                let pin = rolled.is_ok().then(|| last.from_image.clone());
                self.note_update(&uid, &record, pin).await?;
                self.handle_of(&uid).publish(EventKind::UpdateRolledBack {
                    reason: why.clone(),
                    ok: rolled.is_ok(),
                });
                rolled
            });
            if let Err(e) = self.acting("daemon", work).await {
                tracing::warn!(uid = %uid, "the interrupted update could not be rolled back: {e}");
            }
        }
    }

    /// Swaps the undo point back (plan files, config and world), pins the previous image, puts
    /// back the plan version, and starts the server again (PEON's update ends with the server
    /// started).
    async fn roll_back(
        &self,
        uid: &Uid,
        from_image: Option<&str>,
        from_plan: Option<String>,
    ) -> Result<()> {
        let _ = self.stop_locked(uid).await;
        let rec = self.record(uid)?;
        self.remove_container(&rec).await?;
        self.blocking_store(uid, |store, u| store.restore_undo_point(u).map(|_| ()))
            .await?;
        // Cluster mode: the undo point's files go back to the node.
        self.send_to_node(uid).await?;
        // `.peon.json` is the current one: its plan version goes back with the files.
        self.save_state(uid, move |s| s.plan_version = from_plan)
            .await?;
        let Some(image) = from_image else {
            return Err(ServiceError::Failed(
                "the image the server ran before the update is unknown".into(),
            ));
        };
        let keep = keep_tag(uid);
        self.runtime.tag_image(image, &keep).await?;
        let pin = image.to_owned();
        self.save_state(uid, move |s| s.image_pin = Some(pin))
            .await?;
        self.start_locked(uid, None).await?;
        Ok(())
    }

    /// Records the update in `.peon.json`; `pin` changes the image pin when `Some`.
    async fn note_update(
        &self,
        uid: &Uid,
        record: &UpdateRecord,
        pin: Option<Option<String>>,
    ) -> Result<()> {
        let record = record.clone();
        // The known-good tag is kept only while a rollback's pin holds.
        let drop_tag = pin.is_some() && record.result != UpdateResult::RolledBack;
        self.save_state(uid, move |s| {
            s.last_update = Some(record);
            if let Some(p) = pin {
                s.image_pin = p;
            }
        })
        .await?;
        if drop_tag {
            self.runtime.remove_image(&keep_tag(uid)).await?;
        }
        Ok(())
    }
}

/// The tag that keeps a server's last known good image on the engine while it is pinned to it.
fn keep_tag(uid: &Uid) -> String {
    format!("peon-known-good/{}:{}", uid.game(), uid.name())
}

/// How the game exited, if an exit was recorded since the run recorded last was `before`.
fn exited_since(h: &ServerHandle, before: &Option<String>) -> Option<String> {
    let class = h.exit_since(before)?;
    let code = h.state().exits.last().map_or(-1, |e| e.exit_code);
    let what = match class {
        ExitClass::Crash => "the game crashed",
        ExitClass::OutOfMemory => "the game ran out of memory",
        ExitClass::InGameStop => "the game stopped by itself",
        ExitClass::OperatorStop | ExitClass::KilledAfterGrace | ExitClass::IdleStop => {
            "the game was stopped"
        }
    };
    Some(format!("{what} (exit code {code})"))
}
