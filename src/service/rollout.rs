//! Rollouts: many servers updated to a target image, or to a plan version, in batches. Each
//! server's update is an undoable update (`service/update.rs`) that must get ready within
//! `success_timeout` and stay up through the watch window. A batch succeeds when at least
//! `success_percent` of its servers did; otherwise (or when `duration_timeout` runs out, or a host
//! aborts) every server the rollout updated goes back to its last known good (its image; for a
//! plan version, its plan files, config and image too) and the target is marked bad. The rollout
//! is written to `<data>/rollouts.json` at every step and resumed at daemon start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PlanTarget, Result, ServerService, ServiceError, UpdateMode, UpdateOptions};
use crate::names::Uid;
use crate::rollout::{
    Rollout, RolloutError, RolloutServer, RolloutState, ServerStep, batch_size, batch_succeeded,
};

/// What a rollout takes its servers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutTarget {
    /// An image (`repo:tag` or an id), which the servers are then pinned to.
    Image(String),
    /// A version of their game's plan: its files, settings and image.
    PlanVersion(String),
}

/// What a host asks for in `POST /rollouts`.
#[derive(Debug, Clone)]
pub struct RolloutRequest {
    /// Every server of this game ...
    pub game: Option<String>,
    /// ... or these servers.
    pub uids: Vec<Uid>,
    pub target: RolloutTarget,
    pub batch_percent: u32,
    pub success_percent: u32,
    pub success_timeout: Duration,
    pub duration_timeout: Duration,
    /// The watch window of each server's update; the daemon's `update_watch` when `None`.
    pub watch: Option<Duration>,
}

impl ServerService {
    /// Checks and records a rollout, then runs it in the background.
    pub async fn start_rollout(&self, req: RolloutRequest, requester: &str) -> Result<Rollout> {
        let mut uids = req.uids.clone();
        if let Some(game) = &req.game {
            crate::names::game_id(game)?;
            uids.extend(
                self.store
                    .list()
                    .iter()
                    .filter(|r| r.uid.game() == game)
                    .map(|r| r.uid.clone()),
            );
        }
        uids.sort();
        uids.dedup();
        if uids.is_empty() {
            return Err(ServiceError::BadRequest(
                "The rollout has no servers: give a game with servers, or a list of uids.".into(),
            ));
        }
        let mut recs = Vec::new();
        for u in &uids {
            recs.push(self.record(u)?);
        }
        let (target_image, target_plan_version) = match &req.target {
            RolloutTarget::Image(i) => (i.trim().to_owned(), None),
            RolloutTarget::PlanVersion(v) => (String::new(), Some(v.trim().to_owned())),
        };
        if target_image.is_empty() && target_plan_version.as_deref().is_none_or(str::is_empty) {
            return Err(ServiceError::BadRequest(
                "The rollout needs a target image or plan version.".into(),
            ));
        }
        // Every game's plan must be at the version asked for (refreshed from the source if
        // needed), and every server must be able to run it, before any server is touched.
        if let Some(v) = &target_plan_version {
            let target = PlanTarget::Version(v.clone());
            for rec in &recs {
                self.plan_step(rec, &target).await?;
            }
        }
        let per = batch_size(uids.len(), req.batch_percent);
        let servers: Vec<RolloutServer> = uids
            .iter()
            .enumerate()
            .map(|(i, u)| RolloutServer {
                uid: u.to_string(),
                batch: i / per,
                state: ServerStep::Pending,
                from_image: None,
                from_plan_version: None,
                error: None,
            })
            .collect();
        let batches = uids.len().div_ceil(per);
        let r = Rollout {
            id: format!(
                "r{}-{}",
                chrono::Utc::now().format("%Y%m%d-%H%M%S"),
                crate::fsio::atomic::random_suffix()
            ),
            target_image,
            target_plan_version,
            game: req.game.clone(),
            batch_percent: req.batch_percent.clamp(1, 100),
            success_percent: req.success_percent.min(100),
            success_timeout_s: req.success_timeout.as_secs(),
            duration_timeout_s: req.duration_timeout.as_secs(),
            watch_s: req.watch.unwrap_or(self.settings.update_watch).as_secs(),
            state: RolloutState::Running,
            batch: 0,
            batches,
            servers,
            last_known_good: None,
            last_known_bad: None,
            abort_requested: false,
            error: None,
            requester: requester.to_owned(),
            created: crate::live::events::now_rfc3339(),
            finished: None,
            resumed: 0,
        };
        self.rollout_put(r.clone()).await?;
        tracing::info!(rollout = %r.id, target = %r.target_text(), servers = r.servers.len(), batches, "rollout started");
        self.spawn_rollout(r.id.clone());
        Ok(r)
    }

    pub fn rollouts(&self) -> Vec<Rollout> {
        self.rollouts.list()
    }

    pub fn rollout(&self, id: &str) -> Result<Rollout> {
        Ok(self.rollouts.get(id)?)
    }

    /// Asks a running rollout to stop: no new server update begins; the servers it updated go
    /// back to their last known good.
    pub async fn abort_rollout(&self, id: &str) -> Result<Rollout> {
        let r = self.rollouts.get(id)?;
        if r.state != RolloutState::Running {
            return Err(RolloutError::Ended(id.to_owned()).into());
        }
        let id2 = id.to_owned();
        self.rollout_change(&id2, |r| r.abort_requested = true)
            .await
    }

    /// Resumes the rollouts a stopped daemon left running.
    pub(super) async fn resume_rollouts(&self) {
        for r in self.rollouts.running() {
            tracing::info!(rollout = %r.id, batch = r.batch, "rollout resumed after a daemon start");
            if let Err(e) = self.rollout_change(&r.id, |r| r.resumed += 1).await {
                tracing::warn!(rollout = %r.id, "cannot resume: {e}");
                continue;
            }
            self.spawn_rollout(r.id);
        }
    }

    fn spawn_rollout(&self, id: String) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            if let Err(e) = me.run_rollout(&id).await {
                tracing::warn!(rollout = %id, "rollout stopped: {e}");
            }
        });
    }

    async fn run_rollout(self: &Arc<Self>, id: &str) -> Result<()> {
        let started = Instant::now();
        // Servers caught mid-update by a daemon stop are updated again.
        let mut r = self
            .rollout_change(id, |r| {
                for s in r.servers.iter_mut() {
                    if s.state == ServerStep::Updating {
                        s.state = ServerStep::Pending;
                    }
                }
            })
            .await?;
        let deadline = started + Duration::from_secs(r.duration_timeout_s);
        let opts = UpdateOptions {
            watch: Some(Duration::from_secs(r.watch_s)),
            ready_within: Some(Duration::from_secs(r.success_timeout_s)),
            image: r
                .target_plan_version
                .is_none()
                .then(|| r.target_image.clone()),
            plan: r.target_plan_version.clone().map(PlanTarget::Version),
        };
        while r.batch < r.batches {
            if let Some(why) = self.stop_reason(id, deadline)? {
                return self.end_rollout(id, why.0, why.1).await;
            }
            let b = r.batch;
            let todo: Vec<String> = r
                .batch_servers(b)
                .filter(|s| s.state == ServerStep::Pending)
                .map(|s| s.uid.clone())
                .collect();
            tracing::info!(rollout = %id, batch = b, servers = todo.len(), "rollout: batch begins");
            let updates = todo.iter().map(|u| self.rollout_one(id, u, &opts));
            for res in futures_util::future::join_all(updates).await {
                res?;
            }
            r = self.rollouts.get(id)?;
            let (ok, total) = r.batch_servers(b).fold((0, 0), |(ok, n), s| {
                (ok + usize::from(s.state == ServerStep::Updated), n + 1)
            });
            if !batch_succeeded(ok, total, r.success_percent) {
                let why = format!(
                    "batch {} of {}: {ok} of {total} servers got ready on {} (needed {}%)",
                    b + 1,
                    r.batches,
                    r.target_text(),
                    r.success_percent
                );
                return self.end_rollout(id, RolloutState::Failed, why).await;
            }
            r = self.rollout_change(id, |r| r.batch += 1).await?;
        }
        self.rollout_change(id, move |r| {
            r.state = RolloutState::Succeeded;
            r.batch = r.batches;
            r.finished = Some(crate::live::events::now_rfc3339());
        })
        .await?;
        tracing::info!(rollout = %id, "rollout succeeded");
        self.rollout_done(id);
        Ok(())
    }

    /// Why the rollout must stop now, if it must.
    fn stop_reason(&self, id: &str, deadline: Instant) -> Result<Option<(RolloutState, String)>> {
        let r = self.rollouts.get(id)?;
        if r.abort_requested {
            return Ok(Some((RolloutState::Aborted, "aborted by a host".into())));
        }
        if Instant::now() >= deadline {
            return Ok(Some((
                RolloutState::Failed,
                format!("the rollout ran out of its {}s", r.duration_timeout_s),
            )));
        }
        Ok(None)
    }

    /// Updates one server of a rollout to its target.
    async fn rollout_one(&self, id: &str, uid: &str, opts: &UpdateOptions) -> Result<()> {
        let u = Uid::parse(uid)?;
        let from = match self.runtime.inspect(&u.container_name()).await? {
            Some(c) if !c.image_id.is_empty() => Some(c.image_id),
            _ => None,
        };
        let from_plan = self.record(&u)?.state.plan_version.clone();
        let who = format!("rollout {id}");
        let uid_s = uid.to_owned();
        self.rollout_change(id, move |r| {
            if let Some(s) = r.servers.iter_mut().find(|s| s.uid == uid_s) {
                s.state = ServerStep::Updating;
                // A resumed update keeps the image the server ran before the rollout.
                if s.from_image.is_none() {
                    s.from_image = from;
                }
                if s.from_plan_version.is_none() {
                    s.from_plan_version = from_plan;
                }
            }
        })
        .await?;
        let res = self
            .acting(&who, self.update(&u, UpdateMode::Image, opts.clone()))
            .await;
        let uid_s = uid.to_owned();
        self.rollout_change(id, move |r| {
            if let Some(s) = r.servers.iter_mut().find(|s| s.uid == uid_s) {
                match &res {
                    Ok(_) => s.state = ServerStep::Updated,
                    Err(e) => {
                        s.state = ServerStep::Failed;
                        s.error = Some(e.to_string());
                    }
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Ends a rollout that failed or was aborted: every server it updated goes back to the image
    /// it ran before (and, for a plan version, to the plan files and config it had), and the
    /// target is marked bad (for a failure).
    async fn end_rollout(&self, id: &str, state: RolloutState, why: String) -> Result<()> {
        tracing::warn!(rollout = %id, "rollout ends ({state:?}): {why}; rolling back the updated servers");
        let r = self.rollouts.get(id)?;
        let who = format!("rollout {id}");
        let back: Vec<RolloutServer> = r
            .servers
            .iter()
            .filter(|s| s.state == ServerStep::Updated)
            .cloned()
            .collect();
        let plan = r.target_plan_version.is_some();
        for s in back {
            if s.from_image.is_none() && !plan {
                continue;
            }
            let u = Uid::parse(&s.uid)?;
            let opts = UpdateOptions {
                watch: Some(Duration::ZERO),
                ready_within: Some(Duration::from_secs(r.success_timeout_s)),
                image: s.from_image.clone(),
                plan: plan.then_some(PlanTarget::Previous),
            };
            let res = self
                .acting(&who, self.update(&u, UpdateMode::Image, opts))
                .await;
            let uid_s = s.uid.clone();
            self.rollout_change(id, move |r| {
                if let Some(x) = r.servers.iter_mut().find(|x| x.uid == uid_s) {
                    match res {
                        Ok(_) => x.state = ServerStep::RolledBack,
                        Err(e) => {
                            x.state = ServerStep::RollbackFailed;
                            x.error = Some(e.to_string());
                        }
                    }
                }
            })
            .await?;
        }
        self.rollout_change(id, move |r| {
            r.state = state;
            r.error = Some(why);
            if state == RolloutState::Failed {
                r.last_known_bad = Some(r.target_value());
            }
            r.finished = Some(crate::live::events::now_rfc3339());
        })
        .await?;
        self.rollout_done(id);
        Ok(())
    }

    /// Tells the event stream (and so the webhooks) that a rollout ended.
    fn rollout_done(&self, id: &str) {
        let Ok(r) = self.rollouts.get(id) else { return };
        let state = match r.state {
            RolloutState::Running => "running",
            RolloutState::Succeeded => "succeeded",
            RolloutState::Failed => "failed",
            RolloutState::Aborted => "aborted",
        };
        self.registry.publish(
            r.game.as_deref().unwrap_or(""),
            crate::live::EventKind::RolloutDone {
                id: r.id.clone(),
                state: state.to_owned(),
                target_image: r.target_image.clone(),
                target_plan_version: r.target_plan_version.clone(),
                error: r.error.clone(),
            },
        );
    }

    async fn rollout_put(&self, r: Rollout) -> Result<()> {
        let me = self.me.upgrade().ok_or_else(shutting_down)?;
        tokio::task::spawn_blocking(move || me.rollouts.put(r))
            .await
            .map_err(|e| ServiceError::Failed(e.to_string()))??;
        Ok(())
    }

    /// Changes a rollout (and its last known good, from its servers) and writes the file.
    async fn rollout_change(
        &self,
        id: &str,
        f: impl FnOnce(&mut Rollout) + Send + 'static,
    ) -> Result<Rollout> {
        let me = self.me.upgrade().ok_or_else(shutting_down)?;
        let id = id.to_owned();
        let r = tokio::task::spawn_blocking(move || {
            me.rollouts.change(&id, |r| {
                f(r);
                r.last_known_good = common_image(r);
            })
        })
        .await
        .map_err(|e| ServiceError::Failed(e.to_string()))??;
        Ok(r)
    }
}

/// The image (for a rollout to a plan version: the plan version) every server ran before the
/// rollout, when they all ran the same one.
fn common_image(r: &Rollout) -> Option<String> {
    let plan = r.target_plan_version.is_some();
    let mut it = r.servers.iter().filter_map(|s| {
        if plan {
            s.from_plan_version.as_ref()
        } else {
            s.from_image.as_ref()
        }
    });
    let first = it.next()?;
    it.all(|i| i == first).then(|| first.clone())
}

fn shutting_down() -> ServiceError {
    ServiceError::Failed("the service is shutting down".into())
}
