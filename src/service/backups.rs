//! Backups of a whole server directory (world data included) and restores, each a job with
//! steps. A running game is first asked to save (the plan's `backup.save_command`); the archive
//! is a streamed `tar.zst` hashed while written ([`crate::backup`]); retention runs after every
//! backup. A restore stops the game, takes a safety backup, unpacks into staging while checking
//! the sha256, swaps the folders in one rename and starts the game again if it was running; a
//! failed restore leaves the files and the running state as they were.

use std::io::BufReader;
use std::path::PathBuf;

use super::{Result, ServerObject, ServerService, ServiceError};
use crate::backup::glob::Globs;
use crate::backup::{BackupInfo, Catalog, Policy, Reason, catalog, space};
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
            self.backup_locked(uid, reason).await
        })
        .await
    }

    /// The backup itself; the caller holds the server's power lock.
    async fn backup_locked(&self, uid: &Uid, reason: Reason) -> Result<BackupInfo> {
        let rec = self.record(uid)?;
        let exclude = Globs::new(&rec.plan.backup.exclude);
        let catalog = self.catalog();
        let (dir, root, ex) = (rec.dir.clone(), catalog.root().to_owned(), exclude.clone());
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
        let h = self.handle_of(uid);
        let live = h.is_running();
        if live && !rec.plan.backup.save_command.is_empty() {
            step("save", self.ask_to_save(uid, &rec.plan.backup)).await?;
        }
        let id = catalog::new_id(chrono::Utc::now());
        let (c, u, i, dir) = (catalog.clone(), uid.clone(), id.clone(), rec.dir.clone());
        let stats = step("archive", async move {
            blocking(move || Ok(c.write_archive(&u, &i, &dir, &exclude)?)).await
        })
        .await?;
        let info = BackupInfo {
            id,
            uid: uid.to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            bytes: stats.bytes,
            sha256: stats.sha256,
            files: stats.files,
            source_bytes: stats.source_bytes,
            live,
            reason,
            target: "local".into(),
        };
        let (c, u, i) = (catalog.clone(), uid.clone(), info.clone());
        blocking(move || Ok(c.write_info(&i, &u)?)).await?;
        tracing::info!(uid = %uid, id = %info.id, bytes = info.bytes, files = info.files, live, "backup written");
        let policy = self.backup_policy(&rec);
        let (c, u, keep) = (catalog, uid.clone(), info.id.clone());
        step("prune", async move {
            blocking(move || {
                let all = c.list(&u)?;
                let dated: Vec<_> = all
                    .iter()
                    .filter_map(|b| {
                        chrono::DateTime::parse_from_rfc3339(&b.created)
                            .ok()
                            .map(|t| (b.id.clone(), t.with_timezone(&chrono::Utc)))
                    })
                    .collect();
                for id in policy.expired(&dated) {
                    if id != keep {
                        c.delete(&u, &id)?;
                        tracing::info!(uid = %u, id = %id, "backup pruned by retention");
                    }
                }
                Ok(())
            })
            .await
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
        let (c, u) = (self.catalog(), uid.clone());
        blocking(move || Ok(c.list(&u)?)).await
    }

    /// One backup and the path of its archive, or `backup.notfound`.
    pub async fn backup_file(&self, uid: &Uid, id: &str) -> Result<(BackupInfo, PathBuf)> {
        self.record(uid)?;
        let (c, u, i) = (self.catalog(), uid.clone(), id.to_owned());
        let found = blocking(move || {
            let info = c.get(&u, &i)?;
            Ok(info.map(|b| {
                let p = c.archive_path(&u, &b.id);
                (b, p)
            }))
        })
        .await?;
        found
            .ok_or_else(|| ServiceError::NotFound(format!("There is no backup [{id}] of [{uid}].")))
    }

    /// Deletes one backup.
    pub async fn delete_backup(&self, uid: &Uid, id: &str) -> Result<BackupInfo> {
        let (info, _) = self.backup_file(uid, id).await?;
        let (c, u, i) = (self.catalog(), uid.clone(), info.id.clone());
        blocking(move || Ok(c.delete(&u, &i)?)).await?;
        tracing::info!(uid = %uid, id = %info.id, "backup deleted");
        Ok(info)
    }

    /// Sets (or, with `None`, clears) the server's retention policy.
    pub async fn set_backup_policy(&self, uid: &Uid, p: Option<Policy>) -> Result<ServerObject> {
        self.record(uid)?;
        self.save_state(uid, move |s| s.backup_policy = p.filter(|p| !p.is_empty()))
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

    async fn restore_locked(&self, uid: &Uid, id: &str) -> Result<ServerObject> {
        let (info, archive) = self.backup_file(uid, id).await?;
        let servers = self.store.data_dir().servers();
        let need = info.source_bytes;
        step("check space", async move {
            blocking(move || Ok(space::free_bytes(&servers)?))
                .await
                .and_then(|free| enough(need, free, "restore"))
        })
        .await?;
        let was_running = self.handle_of(uid).is_running();
        if was_running {
            step("stop", self.stop_locked(uid)).await?;
        }
        let restored = async {
            step("safety backup", self.backup_locked(uid, Reason::Safety)).await?;
            let (svc, u, sha) = (self.me.upgrade(), uid.clone(), info.sha256.clone());
            step("unpack and swap", async move {
                let svc = svc.ok_or_else(|| ServiceError::Failed("shutting down".into()))?;
                blocking(move || {
                    let (_, rec) = svc.store.replace_server(&u, |stage| {
                        let f = std::fs::File::open(&archive)?;
                        let (_, got) =
                            crate::backup::unpack(BufReader::with_capacity(1 << 20, f), stage)?;
                        if got != sha {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("checksum mismatch: the archive has sha256 {got}, its record says {sha}"),
                            ));
                        }
                        Ok(())
                    })?;
                    Ok(rec)
                })
                .await
            })
            .await
        }
        .await;
        if let Err(e) = restored {
            tracing::warn!(uid = %uid, id, "restore failed, the server's files are unchanged: {e}");
            if was_running {
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

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Failed(e.to_string()))?
}
