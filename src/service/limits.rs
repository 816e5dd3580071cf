//! Resource limits of a server: memory, CPU, processes (applied to the container) and the disk
//! quota (checked by peon). The plan's `limits` are the defaults; a server's own overrides are
//! kept in `.peon.json`, so a rebuilt container keeps them. A change is applied to a running
//! container in place, without a restart.

use super::{Result, ServerObject, ServerService};
use crate::jobs::{JobKind, step};
use crate::model::lifecycle::{LimitsPatch, PlanLimits};
use crate::names::Uid;
use crate::runtime::Limits;
use crate::store::ServerRecord;

impl ServerService {
    /// The limits a server runs with: its own, else its plan's.
    pub(super) fn limits_of(&self, rec: &ServerRecord) -> PlanLimits {
        rec.state.limits.or(rec.plan.limits)
    }

    /// The engine's limits of a server (the disk quota is peon's, not the engine's).
    pub(super) fn engine_limits(&self, rec: &ServerRecord) -> Limits {
        let l = self.limits_of(rec);
        Limits {
            memory_bytes: l.memory_bytes,
            nano_cpus: l.nano_cpus,
            pids: l.pids,
        }
    }

    /// Changes a server's limits: saved first, then applied to its container in place. A limit
    /// the engine cannot lift in place (memory, CPU) is lifted when the container is next
    /// rebuilt (the next start of a stopped server does it).
    pub async fn set_limits(&self, uid: &Uid, patch: LimitsPatch) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Limits, async {
            let _g = self.lock(uid).await;
            step(
                "save",
                self.save_state(uid, move |s| patch.apply(&mut s.limits)),
            )
            .await?;
            let rec = self.record(uid)?;
            let want = self.engine_limits(&rec);
            let name = uid.container_name();
            if let Some(c) = self.runtime.inspect(&name).await? {
                let update = Limits {
                    // A lifted process limit is `-1` (unlimited) for the engine.
                    pids: want.pids.or(c.limits.pids.map(|_| -1)),
                    ..want
                };
                if update != c.limits {
                    step("apply", async {
                        self.runtime.update_limits(&name, update).await?;
                        Ok::<_, super::ServiceError>(())
                    })
                    .await?;
                }
                let lifted = (want.memory_bytes.is_none() && c.limits.memory_bytes.is_some())
                    || (want.nano_cpus.is_none() && c.limits.nano_cpus.is_some());
                if lifted {
                    tracing::info!(uid = %uid, "a lifted memory or CPU limit applies when the container is next rebuilt");
                }
            }
            tracing::info!(uid = %uid, limits = ?self.limits_of(&rec), "server limits changed");
            Ok(self.object(&rec, &self.handle_of(uid), true))
        })
        .await
    }
}
