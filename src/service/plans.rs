//! The service's face for the plan handlers: the registry listing, updating from the plan
//! source, and what one plan asks of a server.

use serde_json::{Map, Value};

use super::{Result, ServerService};
use crate::plans::{self, PlanError, UpdateReport};

impl ServerService {
    /// `GET /plans`: the registry entries sorted by title, plus the plan folders missing from
    /// it. Reads the plans directory off the async runtime.
    pub async fn plan_listing(&self) -> Result<Vec<Value>> {
        let store = self.plans.clone();
        let dir = store.dir().to_owned();
        let list = tokio::task::spawn_blocking(move || store.listing())
            .await
            .map_err(|e| PlanError::Io {
                game: "*".into(),
                path: dir,
                reason: format!("the listing task failed: {e}"),
            })??;
        Ok(list)
    }

    /// Updates the local plans from the plan source.
    pub async fn update_plans_from_source(&self) -> Result<UpdateReport> {
        Ok(self.plans.update().await?)
    }

    /// The settings a server of `game` takes: required ones as `""`, optional ones with their
    /// default, and `description`.
    pub fn plan_settings(&self, game: &str) -> Result<Map<String, Value>> {
        let loaded = self.plans.load(game)?;
        Ok(plans::settings_summary(game, &loaded.plan))
    }

    /// The whole plan of `game` as peon reads it, with its settings summary.
    pub fn plan_full(&self, game: &str) -> Result<Value> {
        let loaded = self.plans.load(game)?;
        Ok(plans::full_view(game, &loaded))
    }
}
