//! The service's face for the schedule handlers: a known server's schedules, adding and
//! removing them, and every schedule of the host. The existence check lives here, so a
//! schedule is never set on a server the daemon does not have.

use chrono_tz::Tz;

use super::{Result, ServerService};
use crate::names::Uid;
use crate::schedule::{Action, ScheduleView, ServerSchedules, When};

impl ServerService {
    /// A server's schedules (soonest first) and last firings (newest first); `NotFound` for
    /// an unknown server.
    pub fn schedules_of(&self, uid: &Uid) -> Result<ServerSchedules> {
        self.record(uid)?;
        Ok(self.scheduler.server(uid))
    }

    /// Adds a recurring or one-shot schedule to a known server.
    pub async fn add_schedule(
        &self,
        uid: &Uid,
        action: Action,
        when: When,
    ) -> Result<ScheduleView> {
        self.record(uid)?;
        Ok(self.scheduler.add(uid, action, when).await?)
    }

    /// Adds a schedule to a known server; a restart may wait for an empty server first.
    pub async fn add_schedule_with(
        &self,
        uid: &Uid,
        action: Action,
        when: When,
        when_empty: Option<crate::schedule::WhenEmpty>,
    ) -> Result<ScheduleView> {
        self.record(uid)?;
        Ok(self
            .scheduler
            .add_with(uid, action, when, when_empty)
            .await?)
    }

    /// Removes schedule `id` of a known server.
    pub async fn remove_schedule(&self, uid: &Uid, id: &str) -> Result<()> {
        self.record(uid)?;
        Ok(self.scheduler.remove(uid, id).await?)
    }

    /// Every schedule of every server, soonest first.
    pub fn all_schedules(&self) -> Vec<ScheduleView> {
        self.scheduler.all()
    }

    /// The time zone cron expressions are read in.
    pub fn schedule_time_zone(&self) -> Tz {
        self.scheduler.timezone()
    }
}
