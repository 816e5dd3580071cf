//! Backups of a whole server directory (world data included) and restores, each a job with
//! steps. A running game is first asked to save (the plan's `backup.save_command`); the archive
//! is a streamed `tar.zst` hashed while written ([`crate::backup`]); retention runs after every
//! backup. A restore unpacks into staging while checking the sha256 (the game still running),
//! then stops the game, takes a safety backup, swaps the folders in one rename and starts the
//! game again if it was running; a failed restore leaves the files and the running state as
//! they were.

use std::io::BufReader;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Result, ServerObject, ServerService, ServiceError};
use crate::backup::glob::Globs;
use crate::backup::{BackupInfo, Catalog, Policy, Reason, S3Catalog, catalog, space};
use crate::jobs::{JobKind, step};
use crate::live::console::Frame;
use crate::model::plan::SAVE_WAIT;
use crate::names::Uid;

/// Headroom kept free beyond the estimate of what a backup or restore writes.
const SPACE_MARGIN: u64 = 16 << 20;

impl ServerService {
    fn catalog(&self) -> Catalog {
        Catalog::new(&self.settings.backup_dir)
    }

    /// The S3 target, or a 409 when none is configured.
    fn s3(&self) -> Result<S3Catalog> {
        let c = self.settings.s3.as_ref().ok_or_else(|| {
            ServiceError::Conflict("No S3 target is configured (s3_bucket).".into())
        })?;
        Ok(S3Catalog::new(c)?)
    }

    /// Where a server's new backups go: its own choice, else the daemon's.
    pub(super) fn backup_target(&self, rec: &crate::store::ServerRecord) -> String {
        rec.state
            .backup_target
            .clone()
            .unwrap_or_else(|| self.settings.backup_target.clone())
    }

    /// Every backup of a server in every configured target, oldest first.
    pub(super) async fn all_backups(&self, uid: &Uid) -> Result<Vec<BackupInfo>> {
        let (c, u) = (self.catalog(), uid.clone());
        let mut all = blocking(move || Ok(c.list(&u)?)).await?;
        if self.settings.s3.is_some() {
            all.extend(self.s3()?.list(uid).await?);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// Removes one backup from the target holding it.
    async fn delete_from_target(&self, uid: &Uid, info: &BackupInfo) -> Result<()> {
        if info.target == "s3" {
            return Ok(self.s3()?.delete(uid, &info.id).await?);
        }
        let (c, u, i) = (self.catalog(), uid.clone(), info.id.clone());
        blocking(move || Ok(c.delete(&u, &i)?)).await
    }

    /// The retention of a server: its own policy, else the daemon's `backups_keep` last.
    pub(super) fn backup_policy(&self, rec: &crate::store::ServerRecord) -> Policy {
        rec.state
            .backup_policy
            .filter(|p| !p.is_empty())
            .unwrap_or(Policy {
                keep_last: Some(self.settings.backups_keep.max(1) as u32),
                ..Policy::default()
            })
    }

    /// Takes a backup of the whole server folder as a job.
    pub async fn backup(&self, uid: &Uid, reason: Reason) -> Result<BackupInfo> {
        self.record(uid)?;
        self.action(uid, JobKind::Backup, async {
            let _g = self.lock(uid).await;
            self.check_quota(uid).await?;
            self.backup_locked(uid, reason, None).await
        })
        .await
    }

    /// The backup itself; the caller holds the server's power lock. Retention never removes
    /// `protect` (the backup a restore is about to unpack).
    async fn backup_locked(
        &self,
        uid: &Uid,
        reason: Reason,
        protect: Option<&str>,
    ) -> Result<BackupInfo> {
        let rec = self.record(uid)?;
        let exclude = Globs::new(&rec.plan.backup.exclude);
        let catalog = self.catalog();
        let target = self.backup_target(&rec);
        let s3 = if target == "s3" {
            Some(self.s3()?)
        } else {
            None
        };
        let h = self.handle_of(uid);
        let live = h.is_running();
        let save = live && !rec.plan.backup.save_command.is_empty();
        // Cluster mode: the world is on the node; the game saves, then the manager's copy is
        // brought up to date (and its space checked after). A safety backup (before a restore,
        // also onto a node that has no copy yet: a failover) takes the manager's copy when the
        // node has none. On one host the space is checked before the game is asked to save.
        let on_node = self.cluster.get().is_some();
        if on_node {
            if save {
                step("save", self.ask_to_save(uid, &rec.plan.backup)).await?;
            }
            if !self.fetch_from_node(uid).await? && reason != Reason::Safety {
                return Err(ServiceError::Conflict(format!(
                    "The node of [{uid}] holds no directory for it; nothing was backed up."
                )));
            }
        }
        let (dir, root, ex) = (rec.dir.clone(), catalog.root().to_owned(), exclude.clone());
        // An S3 backup is streamed: nothing is written locally.
        if s3.is_none() {
            step("check space", async move {
                blocking(move || {
                    std::fs::create_dir_all(&root)?;
                    let need = space::tree_bytes(&dir, &ex)?;
                    let free = space::free_bytes(&root)?;
                    Ok((need, free))
                })
                .await
                .and_then(|(need, free)| enough(need, free, "back up"))
            })
            .await?;
        }
        if !on_node && save {
            step("save", self.ask_to_save(uid, &rec.plan.backup)).await?;
        }
        let now = chrono::Utc::now();
        let id = catalog::new_id(now);
        let (c, u, i, dir) = (catalog.clone(), uid.clone(), id.clone(), rec.dir.clone());
        let stats = step("archive", async {
            match &s3 {
                Some(s3) => Ok(s3.write_archive(uid, &id, &rec.dir, &exclude).await?),
                None => {
                    blocking(move || {
                        c.write_archive(&u, &i, &dir, &exclude)
                            .map_err(|e| disk_error(e, "writing the backup; nothing was kept"))
                    })
                    .await
                }
            }
        })
        .await?;
        let info = BackupInfo {
            id,
            uid: uid.to_string(),
            created: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            bytes: stats.bytes,
            sha256: stats.sha256,
            files: stats.files,
            source_bytes: stats.source_bytes,
            live,
            reason,
            target: target.clone(),
        };
        match &s3 {
            Some(s3) => s3.write_info(&info, uid).await?,
            None => {
                let (c, u, i) = (catalog.clone(), uid.clone(), info.clone());
                blocking(move || Ok(c.write_info(&i, &u)?)).await?;
            }
        }
        tracing::info!(uid = %uid, id = %info.id, bytes = info.bytes, files = info.files, live, "backup written");
        let policy = self.backup_policy(&rec);
        step("prune", async {
            let all = self.all_backups(uid).await?;
            let dated: Vec<_> = all
                .iter()
                .filter_map(|b| {
                    chrono::DateTime::parse_from_rfc3339(&b.created)
                        .ok()
                        .map(|t| (b.id.clone(), t.with_timezone(&chrono::Utc)))
                })
                .collect();
            let expired = policy.expired(&dated);
            let kept = |b: &BackupInfo| b.id == info.id || Some(b.id.as_str()) == protect;
            for b in all.iter().filter(|b| !kept(b) && expired.contains(&b.id)) {
                self.delete_from_target(uid, b).await?;
                tracing::info!(uid = %uid, id = %b.id, "backup pruned by retention");
            }
            Ok::<_, ServiceError>(())
        })
        .await?;
        Ok(info)
    }

    /// Writes the plan's save commands to the game and waits for its `save_done` line.
    async fn ask_to_save(&self, uid: &Uid, b: &crate::model::plan::PlanBackup) -> Result<()> {
        let mut sub = self.handle_of(uid).console.subscribe(0);
        for cmd in &b.save_command {
            self.command(uid, cmd).await?;
        }
        let Some(done) = &b.save_done else {
            return Ok(());
        };
        let wait = async {
            while let Some(f) = sub.rx.recv().await {
                if let Frame::Log(line) = f
                    && line.contains(done.as_str())
                {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(SAVE_WAIT, wait).await {
            Ok(true) => Ok(()),
            _ => Err(ServiceError::Failed(format!(
                "The game [{uid}] did not confirm its save ([{done}]) within {}s.",
                SAVE_WAIT.as_secs()
            ))),
        }
    }

    /// The server's backups, oldest first.
    pub async fn backups(&self, uid: &Uid) -> Result<Vec<BackupInfo>> {
        self.record(uid)?;
        self.all_backups(uid).await
    }

    /// One backup, or 404.
    pub async fn backup_info(&self, uid: &Uid, id: &str) -> Result<BackupInfo> {
        self.record(uid)?;
        let found = if catalog::valid_id(id) {
            self.all_backups(uid)
                .await?
                .into_iter()
                .find(|b| b.id == id)
        } else {
            None
        };
        found
            .ok_or_else(|| ServiceError::NotFound(format!("There is no backup [{id}] of [{uid}].")))
    }

    /// One backup and its archive as a stream of bytes.
    pub async fn open_backup(
        &self,
        uid: &Uid,
        id: &str,
    ) -> Result<(BackupInfo, BoxStream<'static, std::io::Result<Bytes>>)> {
        let info = self.backup_info(uid, id).await?;
        if info.target == "s3" {
            let s = self.s3()?.open(uid, &info.id).await?;
            return Ok((info, s));
        }
        let f = tokio::fs::File::open(self.catalog().archive_path(uid, &info.id)).await?;
        Ok((
            info,
            tokio_util::io::ReaderStream::with_capacity(f, 256 << 10).boxed(),
        ))
    }

    /// Deletes one backup.
    pub async fn delete_backup(&self, uid: &Uid, id: &str) -> Result<BackupInfo> {
        let info = self.backup_info(uid, id).await?;
        self.delete_from_target(uid, &info).await?;
        tracing::info!(uid = %uid, id = %info.id, "backup deleted");
        Ok(info)
    }

    /// Sets the server's retention policy (an empty one restores the default) and, when given,
    /// its target (`local`, `s3`, or `default` for the daemon's).
    pub async fn set_backup_policy(
        &self,
        uid: &Uid,
        p: Policy,
        target: Option<String>,
    ) -> Result<ServerObject> {
        self.record(uid)?;
        let target = match target.as_deref() {
            None => None,
            Some("default") => Some(None),
            Some("local") => Some(Some("local".to_owned())),
            Some("s3") => {
                self.s3()?;
                Some(Some("s3".to_owned()))
            }
            Some(o) => {
                return Err(ServiceError::BadRequest(format!(
                    "Unknown target [{o}]: use local, s3 or default."
                )));
            }
        };
        self.save_state(uid, move |s| {
            s.backup_policy = Some(p).filter(|p| !p.is_empty());
            if let Some(t) = target {
                s.backup_target = t;
            }
        })
        .await?;
        self.get(uid).await
    }

    /// Restores a backup as a job.
    pub async fn restore(&self, uid: &Uid, id: &str) -> Result<ServerObject> {
        self.record(uid)?;
        self.action(uid, JobKind::Restore, async {
            let _g = self.lock(uid).await;
            self.restore_locked(uid, id).await
        })
        .await
    }

    /// Stage, verify and sync, then stop, safety backup, swap, start: the archive is unpacked
    /// into staging, its sha256 checked and the files synced while the game still runs, so a
    /// damaged or missing archive (local or S3) is refused before anything is stopped.
    pub(super) async fn restore_locked(&self, uid: &Uid, id: &str) -> Result<ServerObject> {
        let info = self.backup_info(uid, id).await?;
        let source = if info.target == "s3" {
            Some(self.s3()?.open(uid, &info.id).await?)
        } else {
            None
        };
        let archive = self.catalog().archive_path(uid, &info.id);
        let servers = self.store.data_dir().servers();
        let need = info.source_bytes;
        step("check space", async move {
            blocking(move || Ok(space::free_bytes(&servers)?))
                .await
                .and_then(|free| enough(need, free, "restore"))
        })
        .await?;
        let (svc, u, sha) = (self.me.upgrade(), uid.clone(), info.sha256.clone());
        let handle = tokio::runtime::Handle::current();
        let staged = step("unpack and verify", async move {
            let svc = svc.ok_or_else(|| ServiceError::Failed("shutting down".into()))?;
            blocking(move || {
                // Set when the archive itself is at fault, for an error that says so.
                let mut damaged = None;
                let staged = svc.store.stage_server(&u, |stage| {
                    let unpacked = match source {
                        Some(stream) => crate::backup::unpack(
                            tokio_util::io::SyncIoBridge::new_with_handle(
                                tokio_util::io::StreamReader::new(stream),
                                handle,
                            ),
                            stage,
                        ),
                        None => std::fs::File::open(&archive).and_then(|f| {
                            crate::backup::unpack(BufReader::with_capacity(1 << 20, f), stage)
                        }),
                    };
                    let why = match unpacked {
                        Ok((_, got)) if got == sha => return Ok(()),
                        Ok((_, got)) => format!("its sha256 is {got}, its record says {sha}"),
                        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => e.to_string(),
                        Err(e) => return Err(e),
                    };
                    damaged = Some(why.clone());
                    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
                });
                match (staged, damaged) {
                    (Ok(((), staged)), _) => Ok(staged),
                    (Err(_), Some(why)) => Err(ServiceError::Failed(format!(
                        "The backup's archive is damaged ({why}); the server was left as it was."
                    ))),
                    (Err(crate::store::StoreError::Io { source, .. }), None) => Err(disk_error(
                        source,
                        "unpacking the backup; the server was left as it was",
                    )),
                    (Err(e), None) => Err(e.into()),
                }
            })
            .await
        })
        .await?;
        let (svc, st) = (self.me.upgrade(), staged);
        let staged = step("sync", async move {
            let svc = svc.ok_or_else(|| ServiceError::Failed("shutting down".into()))?;
            blocking(move || match svc.store.sync_staged(&st) {
                Ok(()) => Ok(st),
                Err(e) => {
                    svc.store.discard_staged(st);
                    Err(e.into())
                }
            })
            .await
        })
        .await?;
        let was_running = self.handle_of(uid).is_running();
        let restored = async {
            if was_running {
                step("stop", self.stop_locked(uid)).await?;
            }
            step(
                "safety backup",
                self.backup_locked(uid, Reason::Safety, Some(&info.id)),
            )
            .await?;
            Ok::<_, ServiceError>(())
        }
        .await;
        let restored = match restored {
            Ok(()) => {
                let (svc, u) = (self.me.upgrade(), uid.clone());
                step("swap", async move {
                    let svc = svc.ok_or_else(|| ServiceError::Failed("shutting down".into()))?;
                    blocking(move || {
                        let (rec, old) = svc.store.swap_staged(&u, staged)?;
                        // The old files go in the background: the restore does not wait for them.
                        std::thread::spawn(move || svc.store.remove_replaced(&old));
                        Ok(rec)
                    })
                    .await
                })
                .await
            }
            Err(e) => {
                let svc = self.me.upgrade();
                let _ = blocking(move || {
                    if let Some(svc) = svc {
                        svc.store.discard_staged(staged);
                    }
                    Ok(())
                })
                .await;
                Err(e)
            }
        };
        // Cluster mode: the restored files go to the node (which keeps its own until they
        // arrived whole).
        let restored = match restored {
            Ok(_) => self.send_to_node(uid).await.map_err(|e| {
                ServiceError::Failed(format!(
                    "The backup was unpacked on the manager but not sent to the server's node, whose files are unchanged: {e}"
                ))
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = restored {
            tracing::warn!(uid = %uid, id, "restore failed, the server's files are unchanged: {e}");
            if was_running && !self.handle_of(uid).is_running() {
                step("start again", self.start_locked(uid, None)).await?;
            }
            return Err(e);
        }
        tracing::info!(uid = %uid, id, "backup restored");
        if was_running {
            return step("start", self.start_locked(uid, None)).await;
        }
        self.get(uid).await
    }
}

/// Refuses when `free` bytes cannot hold `need` plus a margin.
fn enough(need: u64, free: u64, what: &str) -> Result<()> {
    if free >= need.saturating_add(SPACE_MARGIN) {
        Ok(())
    } else {
        Err(ServiceError::NoSpace(format!(
            "Not enough free space to {what}: need about {} MiB (plus {} MiB headroom), {} MiB free.",
            need >> 20,
            SPACE_MARGIN >> 20,
            free >> 20
        )))
    }
}

/// A full disk as 507 (`NoSpace`), any other I/O error as it is.
fn disk_error(e: std::io::Error, while_: &str) -> ServiceError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded => {
            ServiceError::NoSpace(format!("The disk filled up while {while_}."))
        }
        _ => e.into(),
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Failed(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_check_names_what_is_needed_and_free() {
        assert!(enough(100 << 20, 200 << 20, "back up").is_ok());
        let e = enough(100 << 20, 110 << 20, "back up").unwrap_err();
        assert!(matches!(e, ServiceError::NoSpace(_)));
        assert_eq!(
            e.to_string(),
            "Not enough free space to back up: need about 100 MiB (plus 16 MiB headroom), 110 MiB free."
        );
    }
}
