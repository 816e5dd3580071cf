//! Updates to another version of a server's plan. The plan store is refreshed from its source
//! when it does not hold the version asked for (the source serves the newest plan only: a version
//! other than the one it serves is refused, naming what is there); the server's new config is the
//! new plan's, with the host's settings kept (`model::reconfig`). The update itself
//! (`service/update.rs`) puts the new plan files and config in place through the store, after its
//! undo point, and goes to the new plan's image.

use std::path::PathBuf;

use serde_json::Value;

use super::{Result, ServerService, ServiceError};
use crate::names::Uid;
use crate::store::ServerRecord;

/// Which plan an update moves a server to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanTarget {
    /// This version of the game's plan (the plan store's, refreshed from the source if needed).
    Version(String),
    /// The plan files and config the server had before its last plan update (a rollout going
    /// back to its last known good).
    Previous,
}

/// A plan change, checked before the update touches anything.
#[derive(Debug, Clone)]
pub(super) enum PlanChange {
    /// Install this plan folder with this config.
    New { dir: PathBuf, config: Value },
    /// Put back the plan undo.
    Previous,
}

/// A resolved plan change and the version it goes to.
#[derive(Debug, Clone)]
pub(super) struct PlanStep {
    pub change: PlanChange,
    pub to_version: Option<String>,
}

fn shown(v: Option<&str>) -> &str {
    v.unwrap_or("(none)")
}

impl ServerService {
    /// Makes the plan store hold `version` of `game`'s plan: as it is, or after a refresh from
    /// the source. A 409 names the versions there are when it cannot.
    pub(super) async fn plan_at_version(
        &self,
        game: &str,
        version: &str,
    ) -> Result<crate::plans::LoadedPlan> {
        let local = self.plans.load(game);
        if let Ok(l) = &local
            && l.plan.version.as_deref() == Some(version)
        {
            return Ok(local?);
        }
        let refreshed = match self.plans.source() {
            Some(_) => Some(self.plans.refresh_now(game).await),
            None => None,
        };
        if let Some(Ok(true)) = refreshed {
            tracing::info!(
                game,
                "plan refreshed from the source for an update to plan version {version}"
            );
        }
        let loaded = self.plans.load(game)?;
        if loaded.plan.version.as_deref() == Some(version) {
            return Ok(loaded);
        }
        let held = shown(loaded.plan.version.as_deref());
        let source = match (self.plans.source(), refreshed) {
            (None, _) => "there is no plan source to refresh it from".to_owned(),
            (Some(s), Some(Err(e))) => format!("refreshing it from {s} failed: {e}"),
            (Some(s), _) => format!("{s} serves version {held}"),
        };
        Err(ServiceError::Conflict(format!(
            "Plan [{game}] version {version} is not available: this host has version {held} ({source}). Versions available: [{held}]."
        )))
    }

    /// Checks a plan change for a server: the plan at `target`, and the server's config on it.
    pub(super) async fn plan_step(
        &self,
        rec: &ServerRecord,
        target: &PlanTarget,
    ) -> Result<PlanStep> {
        let uid: &Uid = &rec.uid;
        match target {
            PlanTarget::Version(v) => {
                let loaded = self.plan_at_version(uid.game(), v).await?;
                let old = match self.me.upgrade() {
                    Some(me) => {
                        let u = uid.clone();
                        tokio::task::spawn_blocking(move || me.store.plan_doc(&u))
                            .await
                            .ok()
                            .flatten()
                    }
                    None => None,
                };
                let config = crate::model::reconfig::upgrade_config(
                    &rec.config,
                    old.as_ref(),
                    &loaded.doc,
                )
                .map_err(
                        |missing| {
                            ServiceError::Conflict(format!(
                                "Plan [{}] version {v} requires settings that server [{uid}] has no value for: {missing:?}. Set them on the server first.",
                                uid.game()
                            ))
                        },
                    )?;
                // The new config must make a runnable server.
                crate::model::plan::parse_plan(uid.game(), &config).map_err(|p| {
                    ServiceError::Conflict(format!(
                        "Plan [{}] version {v} cannot run server [{uid}]: {}",
                        uid.game(),
                        crate::model::plan::problems_text(&p)
                    ))
                })?;
                Ok(PlanStep {
                    change: PlanChange::New {
                        dir: loaded.dir,
                        config,
                    },
                    to_version: Some(v.clone()),
                })
            }
            PlanTarget::Previous => {
                if !self.store.has_plan_undo(uid) {
                    return Err(ServiceError::Conflict(format!(
                        "Server [{uid}] has no plan kept from before a plan update to go back to."
                    )));
                }
                Ok(PlanStep {
                    change: PlanChange::Previous,
                    to_version: self.store.plan_undo_version(uid),
                })
            }
        }
    }

    /// Puts the plan change in place (the update's undo point is made) and records the plan
    /// version in `.peon.json`.
    pub(super) async fn apply_plan_step(&self, uid: &Uid, ps: &PlanStep) -> Result<()> {
        let change = ps.change.clone();
        let owner = super::container::GAME_USER;
        self.blocking_store(uid, move |store, u| {
            match &change {
                PlanChange::New { dir, config } => store.apply_plan(u, dir, config, owner),
                PlanChange::Previous => store.restore_plan_undo(u, owner),
            }
            .map(|_| ())
        })
        .await?;
        let v = ps.to_version.clone();
        self.save_state(uid, move |s| s.plan_version = v).await?;
        tracing::info!(uid = %uid, to = shown(ps.to_version.as_deref()), "update: plan files and config in place");
        Ok(())
    }
}
