//! `save`: a zip of a server's configuration and user files (everything but the game install
//! in `data/`), kept in `backups/` with a bounded number per server.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Result, ServerService, ServiceError};
use crate::fsio::atomic;
use crate::jobs::{JobKind, step};
use crate::names::Uid;

/// A finished backup file.
#[derive(Debug, Clone)]
pub struct Backup {
    pub path: PathBuf,
    pub file_name: String,
}

impl ServerService {
    /// Writes `backups/<uid>-<YYYYmmdd-HHMMSS>.zip` and prunes old backups of the server.
    pub async fn save(&self, uid: &Uid) -> Result<Backup> {
        self.record(uid)?;
        self.check_quota(uid).await?;
        self.action(uid, JobKind::Backup, self.save_locked(uid))
            .await
    }

    async fn save_locked(&self, uid: &Uid) -> Result<Backup> {
        let _g = self.lock(uid).await;
        // Cluster mode: the files are on the node; the manager's copy is brought up to date.
        if !self.fetch_from_node(uid).await? {
            return Err(ServiceError::Conflict(format!(
                "The node of [{uid}] holds no directory for it; nothing was saved."
            )));
        }
        let rec = self.record(uid)?;
        let backups = self.store.data_dir().backups();
        let ts = chrono::Utc::now().format("%Y%m%d-%H%M%S");
        let file_name = format!("{uid}-{ts}.zip");
        let path = backups.join(&file_name);
        let keep = self.settings.backups_keep.max(1);
        let (src, dst, prefix) = (rec.dir.clone(), path.clone(), format!("{uid}-"));
        step("zip", async move {
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::create_dir_all(dst.parent().unwrap_or(Path::new(".")))?;
                write_zip(&src, &dst)?;
                prune(dst.parent().unwrap_or(Path::new(".")), &prefix, keep)
            })
            .await
            .map_err(|e| ServiceError::Failed(e.to_string()))??;
            Ok::<_, ServiceError>(())
        })
        .await?;
        tracing::info!(uid = %uid, file = %file_name, "backup written");
        Ok(Backup { path, file_name })
    }
}

/// A signed link to a `save` zip: works without the API key until `expires`.
#[derive(Debug, Clone)]
pub struct SaveLink {
    /// The link's path and query, relative to the API base: `link/save/<uid>/<file>?...`.
    pub path: String,
    /// Unix seconds.
    pub expires: i64,
}

/// The longest a signed link may live.
pub const LINK_TTL_MAX: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl ServerService {
    /// Makes a fresh `save` zip and a signed link to it, valid for `ttl`.
    pub async fn save_link(&self, uid: &Uid, ttl: std::time::Duration) -> Result<SaveLink> {
        let b = self.save(uid).await?;
        let expires = chrono::Utc::now().timestamp() + ttl.min(LINK_TTL_MAX).as_secs() as i64;
        let rel = format!("link/save/{uid}/{}", b.file_name);
        let sig = self.access.links.sign(&rel, expires);
        Ok(SaveLink {
            path: format!("{rel}?expires={expires}&sig={sig}"),
            expires,
        })
    }

    /// The zip a signed link names, once its signature and expiry are checked.
    pub fn open_save_link(&self, uid: &Uid, file: &str, expires: i64, sig: &str) -> Result<Backup> {
        let rel = format!("link/save/{uid}/{file}");
        self.access
            .links
            .verify(&rel, expires, sig, chrono::Utc::now().timestamp())?;
        let ok_name = file.starts_with(&format!("{uid}-"))
            && file.ends_with(".zip")
            && !file.contains('/')
            && !file.contains("..");
        let path = self.store.data_dir().backups().join(file);
        if !ok_name || !path.is_file() {
            return Err(ServiceError::NotFound(format!(
                "The save [{file}] no longer exists; ask for a new link."
            )));
        }
        Ok(Backup {
            path,
            file_name: file.to_owned(),
        })
    }
}

/// Zips `src` into `dst` (through a temporary file and a rename), leaving out the top-level
/// `data/` folder and any symlink.
fn write_zip(src: &Path, dst: &Path) -> std::io::Result<()> {
    let tmp = dst.with_extension(format!("zip.tmp-{}", atomic::random_suffix()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        add_dir(&mut zip, src, src, opts)?;
        let w = zip.finish().map_err(std::io::Error::other)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dst)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn add_dir<W: Write + std::io::Seek>(
    zip: &mut zip::ZipWriter<W>,
    root: &Path,
    dir: &Path,
    opts: zip::write::SimpleFileOptions,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .map_err(std::io::Error::other)?
            .to_string_lossy()
            .into_owned();
        let ft = e.file_type()?;
        if ft.is_dir() {
            if rel == "data" {
                continue;
            }
            zip.add_directory(format!("{rel}/"), opts)
                .map_err(std::io::Error::other)?;
            add_dir(zip, root, &path, opts)?;
        } else if ft.is_file() {
            zip.start_file(rel, opts).map_err(std::io::Error::other)?;
            let mut f = std::fs::File::open(&path)?;
            std::io::copy(&mut f, zip)?;
        }
    }
    Ok(())
}

/// Keeps the newest `keep` backups whose names start with `prefix`.
fn prune(dir: &Path, prefix: &str, keep: usize) -> std::io::Result<()> {
    let mut mine: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(prefix).is_some_and(|rest| {
                rest.ends_with(".zip") && rest.starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect();
    mine.sort();
    let excess = mine.len().saturating_sub(keep);
    for n in mine.into_iter().take(excess) {
        std::fs::remove_file(dir.join(n))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_leaves_out_top_level_data_only() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("srv");
        for p in ["data", "user/data", "config", "actions"] {
            std::fs::create_dir_all(s.join(p)).unwrap();
        }
        std::fs::write(s.join("data/huge.bin"), "x").unwrap();
        std::fs::write(s.join("user/data/world.db"), "w").unwrap();
        std::fs::write(s.join("config.json"), "{}").unwrap();
        let z = d.path().join("b.zip");
        write_zip(&s, &z).unwrap();
        let ar = zip::ZipArchive::new(std::fs::File::open(&z).unwrap()).unwrap();
        let names: Vec<String> = ar.file_names().map(|n| n.unwrap().into_owned()).collect();
        assert!(
            names.contains(&"user/data/world.db".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"config.json".to_owned()));
        assert!(!names.iter().any(|n| n.starts_with("data/")), "{names:?}");
    }

    #[test]
    fn prune_keeps_newest() {
        let d = tempfile::tempdir().unwrap();
        for ts in ["20260101-000000", "20260102-000000", "20260103-000000"] {
            std::fs::write(d.path().join(format!("g.a-{ts}.zip")), "").unwrap();
        }
        std::fs::write(d.path().join("g.ab-20200101-000000.zip"), "").unwrap();
        prune(d.path(), "g.a-", 2).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "g.a-20260102-000000.zip",
                "g.a-20260103-000000.zip",
                "g.ab-20200101-000000.zip"
            ]
        );
    }
}
