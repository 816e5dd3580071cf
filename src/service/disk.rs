//! Disk use of each server's directory, kept current cheaply: a background walk of every server
//! at a modest interval, and a fresh walk of one server after its actions and before those the
//! quota guards. Readers (the server object, `GET /capacity`) take the last measure from the
//! live handle. The optional quota (`limits.disk`) warns with a `quota` event at 90 % and
//! refuses a start, an update or a backup over it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Result, ServerService, ServiceError};
use crate::fsio::fsutil::tree_size;
use crate::live::events::EventKind;
use crate::live::handle::DiskUse;
use crate::names::Uid;

/// How often every server's directory is measured in the background.
pub(super) const DISK_INTERVAL: Duration = Duration::from_secs(60);
/// The share of the quota at which a warning is published.
const WARN_AT: f64 = 0.9;

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `7 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

impl ServerService {
    /// Measures one server's directory now (off the async workers) and records it in its
    /// handle, publishing the quota warning when it crosses 90 %.
    pub(super) async fn measure_disk(&self, uid: &Uid) -> Result<DiskUse> {
        let rec = self.record(uid)?;
        let dir = rec.dir.clone();
        // Cluster mode: the directory the game uses is on its node.
        let (bytes, data_bytes) = match self.node_facts(uid).await? {
            Some(f) => (f.bytes, f.data_bytes),
            None => {
                tokio::task::spawn_blocking(move || (tree_size(&dir), tree_size(&dir.join("data"))))
                    .await
                    .map_err(|e| ServiceError::Failed(format!("measuring {uid} failed: {e}")))?
            }
        };
        let used = DiskUse {
            bytes,
            data_bytes,
            at: Instant::now(),
        };
        let h = self.handle_of(uid);
        let quota = self.limits_of(&rec).disk_bytes.map(|q| q.max(1) as u64);
        let warn = {
            let mut s = h.state();
            s.disk = Some(used);
            match quota {
                Some(q) if bytes as f64 >= q as f64 * WARN_AT => {
                    !std::mem::replace(&mut s.quota_warned, true)
                }
                _ => {
                    s.quota_warned = false;
                    false
                }
            }
        };
        if let (true, Some(q)) = (warn, quota) {
            tracing::warn!(uid = %uid, used = bytes, quota = q, "server directory near or over its disk quota");
            h.publish(EventKind::Quota {
                used_bytes: bytes,
                quota_bytes: q,
                percent: (bytes as f64 / q as f64 * 1000.0).round() / 10.0,
            });
        }
        Ok(used)
    }

    /// Refuses (409 `srv.quota`) when the server's directory is over its disk quota, measured
    /// now. Start, update and restart call it; a backup should too.
    pub async fn check_quota(&self, uid: &Uid) -> Result<()> {
        let rec = self.record(uid)?;
        let Some(quota) = self.limits_of(&rec).disk_bytes else {
            return Ok(());
        };
        let used = self.measure_disk(uid).await?;
        if used.bytes > quota as u64 {
            return Err(ServiceError::OverQuota(format!(
                "The server [{uid}] uses {} ({} bytes) of disk, over its quota of {} ({quota} bytes). Free space in its directory or raise the quota (PUT /server/limits/{uid} {{\"disk\": ...}}).",
                human_bytes(used.bytes),
                used.bytes,
                human_bytes(quota as u64),
            )));
        }
        Ok(())
    }

    /// Measures every server's directory every [`DISK_INTERVAL`], one at a time.
    pub async fn watch_disk(self: Arc<Self>) {
        loop {
            for rec in self.store.list() {
                if let Err(e) = self.measure_disk(&rec.uid).await {
                    tracing::debug!(uid = %rec.uid, "disk measure failed: {e}");
                }
            }
            tokio::time::sleep(DISK_INTERVAL).await;
        }
    }

    /// The last measure of a server, when it is recent enough to stand for now.
    pub(super) fn disk_of(&self, uid: &Uid) -> Option<DiskUse> {
        self.registry
            .get(uid)
            .and_then(|h| h.state().disk)
            .filter(|d| d.at.elapsed() <= DISK_INTERVAL * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human() {
        assert_eq!(human_bytes(7), "7 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
