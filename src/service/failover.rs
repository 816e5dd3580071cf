//! Cluster mode: optional failover per server (`failover: {"after": "60s"}` in its options,
//! off by default). Once its node has been down that long, the server is rebuilt on another
//! node from its latest off-node backup (the manager's backup target, or S3), as a job of kind
//! `failover` whose steps name the backup and how old the restored world is:
//!
//! 1. the latest backup is chosen (none: the job fails and the server stays where it was);
//! 2. a node is placed for it (never a down node, nor the old one), by the private-node rule
//!    of the key that placed it (`placer`; public nodes only when none was recorded);
//! 3. the old node is marked stale for it (`stale_on`: its copy there is never copied from or
//!    started) and the server is pinned to the new node;
//! 4. its service is removed (Swarm then shuts the old task down when the old node returns:
//!    the service it belonged to is gone) and the backup restored (`restore_locked`);
//! 5. it is started there when it was wanted running.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Result, ServerService, ServiceError};
use crate::jobs::{JobKind, step};
use crate::names::Uid;
use crate::store::NodePin;

/// How long the old service may take to go once removed.
const REMOVE_DEADLINE: Duration = Duration::from_secs(30);

/// The servers failing over now.
#[derive(Default)]
pub(super) struct Failovers {
    running: Mutex<HashSet<Uid>>,
}

impl Failovers {
    fn claim(&self, uid: &Uid) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone())
    }

    fn release(&self, uid: &Uid) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}

/// `1h 2m 3s` from seconds.
fn age_text(secs: i64) -> String {
    let s = secs.max(0);
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

impl ServerService {
    /// Starts the failover of every server whose node has been down longer than its grace
    /// (called by the node watcher after each round).
    pub(super) fn failover_due(&self) {
        let Some(me) = self.me.upgrade() else { return };
        for rec in self.store.list() {
            let (Some(after), Some(pin)) = (rec.state.failover_after_s, rec.state.node.as_ref())
            else {
                continue;
            };
            let Some(down) = self.node_health.down_for(&pin.id) else {
                continue;
            };
            if down < Duration::from_secs(after) || !self.failovers.claim(&rec.uid) {
                continue;
            }
            let (svc, uid, old) = (me.clone(), rec.uid.clone(), pin.clone());
            tracing::warn!(uid = %uid, node = %old.hostname, down_s = down.as_secs(), "node down past the failover grace: failing over");
            tokio::spawn(async move {
                let work = {
                    let (svc, uid) = (svc.clone(), uid.clone());
                    async move { svc.failover(&uid, &old).await }
                };
                let job = svc
                    .detach("failover", JobKind::Failover, &uid.to_string(), work)
                    .await;
                // The job runs in the background; the claim is let go when it ended.
                let mut rx = svc.node_health.subscribe();
                loop {
                    if svc.job(&job.id).is_ok_and(|j| j.state.is_done()) {
                        break;
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                }
                svc.failovers.release(&uid);
                // Pending changes of the server may go on: it is on a node that answers.
                svc.node_health.bump();
            });
        }
    }

    /// Rebuilds `uid` (whose node `old` is down) on another node from its latest backup.
    async fn failover(self: &Arc<Self>, uid: &Uid, old: &NodePin) -> Result<()> {
        let _g = self.lock(uid).await;
        let rec = self.record(uid)?;
        // Still down and still there (it may have come back while the job was queued).
        if rec.state.node.as_ref().map(|n| &n.id) != Some(&old.id) || !self.is_unreachable(uid) {
            return Ok(());
        }
        let backups = self.all_backups(uid).await?;
        let Some(latest) = backups.iter().max_by(|a, b| a.created.cmp(&b.created)) else {
            return Err(ServiceError::Failed(format!(
                "[{uid}] has no off-node backup to fail over from; it stays on {}",
                old.hostname
            )));
        };
        let age = chrono::DateTime::parse_from_rfc3339(&latest.created)
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
            .unwrap_or(-1);
        let id = latest.id.clone();
        let what = format!(
            "world from backup {id} ({} old, taken {})",
            age_text(age),
            latest.created
        );
        step(&what, async { Ok::<_, ServiceError>(()) }).await?;
        let to = step("choose a node", self.place_away(uid, &rec, &old.id)).await?;
        let (old_id, new) = (old.id.clone(), to.clone());
        step(
            &format!(
                "pin to {} (the copy on {} is stale)",
                to.hostname, old.hostname
            ),
            self.save_state(uid, move |s| {
                if !s.stale_on.contains(&old_id) {
                    s.stale_on.push(old_id);
                }
                s.node = Some(new);
            }),
        )
        .await?;
        step("remove the old service", self.remove_and_wait(uid)).await?;
        // The live model still has the old run: the restore must not try to stop it there.
        self.handle_of(uid).set_container(None);
        self.restore_locked(uid, &id).await?;
        let wanted = self.record(uid)?.state.wanted_running;
        if wanted && !self.handle_of(uid).is_running() {
            step("start", self.start_locked(uid, None)).await?;
        }
        tracing::info!(uid = %uid, from = %old.hostname, to = %to.hostname, backup = %id, age_s = age, "failed over");
        Ok(())
    }

    /// Removes `uid`'s service and waits until the manager no longer has it (a service being
    /// removed is still inspected a moment; its replacement must not be confused with it).
    async fn remove_and_wait(&self, uid: &Uid) -> Result<()> {
        let name = uid.container_name();
        self.runtime.remove(&name).await?;
        let deadline = std::time::Instant::now() + REMOVE_DEADLINE;
        while self.runtime.inspect(&name).await?.is_some() {
            if std::time::Instant::now() > deadline {
                return Err(ServiceError::Failed(format!(
                    "the old service of [{uid}] was still there {} s after its removal",
                    REMOVE_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// A node for `uid` other than `old` and every down node: placement's own choice (with
    /// the servers placed a moment ago, and the private nodes the server's key may use),
    /// skipping those nodes.
    async fn place_away(
        &self,
        uid: &Uid,
        rec: &crate::store::ServerRecord,
        old: &str,
    ) -> Result<NodePin> {
        let skip = |n: &super::NodeView| n.id == old || self.node_health.is_down(&n.id);
        let (pin, _) = self
            .place_among(
                uid,
                &rec.plan.port_groups,
                None,
                &self.placer_of(rec),
                &skip,
            )
            .await?;
        // The new node's agent will hold the restored directory.
        self.with_home(pin).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(age_text(5), "5s");
        assert_eq!(age_text(65), "1m 5s");
        assert_eq!(age_text(3725), "1h 2m 5s");
    }
}
