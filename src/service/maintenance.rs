//! Maintenance that respects players: a restart or an update with `when_empty` first says so to
//! the players (the plan's `lifecycle.say_command`), then waits until nobody plays (the query's
//! answer is zero), at most until its deadline, then goes ahead anyway. A server whose plan has
//! no `query`, or that is not running, has nobody to wait for: it goes at once. A game that does
//! not answer is not known to be empty: the wait runs to the deadline.

use std::time::{Duration, Instant};

use super::{Result, ServerObject, ServerService, UpdateMode, UpdateOptions};
use crate::jobs::{JobKind, step};
use crate::names::Uid;
use crate::schedule::WhenEmpty;

/// How often the wait looks at the player count (the poller refreshes it every 5 s).
const LOOK_EVERY: Duration = Duration::from_millis(500);

impl ServerService {
    /// A restart that waits for an empty server first.
    pub async fn restart_when_empty(&self, uid: &Uid, w: &WhenEmpty) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Restart, async {
            step("wait for an empty server", self.wait_until_empty(uid, w)).await?;
            let _g = self.lock(uid).await;
            self.check_quota(uid).await?;
            self.stop_locked(uid).await?;
            self.start_locked(uid, None).await
        })
        .await
    }

    /// An update that waits for an empty server first.
    pub async fn update_when_empty(
        &self,
        uid: &Uid,
        mode: UpdateMode,
        opts: UpdateOptions,
        w: &WhenEmpty,
    ) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Update, async {
            step("wait for an empty server", self.wait_until_empty(uid, w)).await?;
            self.update_inner(uid, mode, opts).await
        })
        .await
    }

    /// Announces, then waits until nobody plays or the deadline passes; true when empty.
    pub(super) async fn wait_until_empty(&self, uid: &Uid, w: &WhenEmpty) -> Result<bool> {
        let rec = self.record(uid)?;
        let h = self.handle_of(uid);
        if let (Some(text), Some(template)) = (&w.announce, &rec.plan.lifecycle.say_command)
            && h.console.has_input()
        {
            let command = template.replace("{message}", text);
            if let Err(e) = h.console.send_command(&command).await {
                tracing::warn!(uid = %uid, "announcement not taken: {e}");
            }
        }
        if rec.plan.query.is_none() {
            return Ok(true);
        }
        let deadline = Instant::now() + Duration::from_secs(w.deadline_s);
        loop {
            let (running, players) = (h.is_running(), h.state().players);
            if !running || players == Some(0) {
                tracing::info!(uid = %uid, "nobody plays: maintenance goes ahead");
                return Ok(true);
            }
            if Instant::now() >= deadline {
                tracing::info!(uid = %uid, ?players, "when_empty deadline passed: maintenance goes ahead anyway");
                return Ok(false);
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}
