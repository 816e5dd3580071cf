//! A server's backups in a local directory: `<root>/<game>/<name>/<id>.tar.zst` and beside it
//! `<id>.json` (its [`BackupInfo`]). The archive is written under a temporary name, synced and
//! renamed; its info is written after it, so a backup is listed only once complete. A failed
//! write removes its temporary file; one a crash left is removed at the next start
//! ([`Catalog::clear_debris`]).

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::{PackStats, pack};
use super::glob::Globs;
use crate::fsio::atomic;
use crate::names::Uid;

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Asked through the API or the CLI.
    Manual,
    /// A schedule with `action: backup`.
    Scheduled,
    /// Taken by a restore before it replaced the server's files.
    Safety,
    /// Taken before an idle stop (the server's `backup_before_idle_stop`).
    Idle,
}

/// One backup, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupInfo {
    /// `YYYYmmdd-HHMMSS-<millis><hex>` (UTC): sorts by time.
    pub id: String,
    pub uid: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// Size of the `tar.zst` archive.
    pub bytes: u64,
    /// sha256 of the archive, lowercase hex.
    pub sha256: String,
    /// Regular files in the archive.
    pub files: u64,
    /// Bytes of those files before compression.
    pub source_bytes: u64,
    /// True when the game was running while the backup was taken.
    pub live: bool,
    pub reason: Reason,
    /// Where it is kept: `local`.
    pub target: String,
}

/// True for a backup id peon makes: `YYYYmmdd-HHMMSS-` then 4 to 16 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() >= 20
        && b.len() <= 32
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
        && b[16..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A new backup id for `now`: the time to the millisecond, then 4 random hex digits, so ids
/// sort by time.
pub fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}-{:03}{}",
        now.format("%Y%m%d-%H%M%S"),
        now.timestamp_subsec_millis(),
        &atomic::random_suffix()[..4]
    )
}

/// The backups of every server under one root directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: PathBuf,
}

impl Catalog {
    pub fn new(root: impl Into<PathBuf>) -> Catalog {
        Catalog { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one server's backups.
    pub fn dir(&self, uid: &Uid) -> PathBuf {
        self.root.join(uid.game()).join(uid.name())
    }

    pub fn archive_path(&self, uid: &Uid, id: &str) -> PathBuf {
        self.dir(uid).join(format!("{id}.tar.zst"))
    }

    fn info_path(&self, uid: &Uid, id: &str) -> PathBuf {
        self.dir(uid).join(format!("{id}.json"))
    }

    /// Packs `src` into the archive `id` of `uid` (temporary name, fsync, rename).
    pub fn write_archive(
        &self,
        uid: &Uid,
        id: &str,
        src: &Path,
        exclude: &Globs,
    ) -> io::Result<PackStats> {
        let dir = self.dir(uid);
        std::fs::create_dir_all(&dir)?;
        let dst = self.archive_path(uid, id);
        let tmp = dir.join(format!(".{id}.tar.zst.tmp-{}", atomic::random_suffix()));
        let result = (|| {
            let file = File::create(&tmp)?;
            let (w, stats) = pack(src, exclude, BufWriter::with_capacity(1 << 20, file))?;
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &dst)?;
            atomic::sync_dir(&dir)?;
            Ok(stats)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Records a finished archive: from here on it is listed.
    pub fn write_info(&self, info: &BackupInfo, uid: &Uid) -> io::Result<()> {
        atomic::write_json_atomic(&self.info_path(uid, &info.id), info)
    }

    /// Removes what a crash in the middle of a backup left: temporary files (`.<name>.tmp-*`)
    /// in every server's folder. Only for the daemon's start, when no backup runs. Returns the
    /// files removed.
    pub fn clear_debris(&self) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for game in subdirs(&self.root)? {
            for server in subdirs(&game)? {
                for e in std::fs::read_dir(&server)?.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.')
                        && name.contains(".tmp-")
                        && e.file_type().is_ok_and(|t| t.is_file())
                    {
                        std::fs::remove_file(e.path())?;
                        removed.push(e.path());
                    }
                }
            }
        }
        Ok(removed)
    }

    /// The server's complete backups, oldest first.
    pub fn list(&self, uid: &Uid) -> io::Result<Vec<BackupInfo>> {
        let dir = self.dir(uid);
        let rd = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !valid_id(id) || !self.archive_path(uid, id).is_file() {
                continue;
            }
            match std::fs::read(e.path())
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<BackupInfo>(&b).map_err(|e| e.to_string()))
            {
                Ok(i) => out.push(i),
                Err(err) => tracing::warn!(uid = %uid, "skipping backup {id}: {err}"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// One backup, or `None`.
    pub fn get(&self, uid: &Uid, id: &str) -> io::Result<Option<BackupInfo>> {
        if !valid_id(id) {
            return Ok(None);
        }
        Ok(self.list(uid)?.into_iter().find(|b| b.id == id))
    }

    /// Removes a backup: its info first (it is no longer listed), then the archive.
    pub fn delete(&self, uid: &Uid, id: &str) -> io::Result<()> {
        for p in [self.info_path(uid, id), self.archive_path(uid, id)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let _ = atomic::sync_dir(&self.dir(uid));
        Ok(())
    }
}

/// The folders directly in `dir` (none when it does not exist).
fn subdirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        let id = new_id(chrono::Utc::now());
        assert!(valid_id(&id), "{id}");
        for bad in [
            "",
            "../../etc/passwd",
            "20260101-000000-",
            "20260101-000000-ZZ12",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_only_complete_backups_are_listed() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::new(d.path().join("b"));
        let uid = Uid::parse("g.a").unwrap();
        let id = new_id(chrono::Utc::now());
        assert!(
            c.write_archive(&uid, &id, &d.path().join("missing"), &Globs::default())
                .is_err()
        );
        assert_eq!(std::fs::read_dir(c.dir(&uid)).unwrap().count(), 0);
        let src = d.path().join("s");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        let st = c.write_archive(&uid, &id, &src, &Globs::default()).unwrap();
        assert!(c.list(&uid).unwrap().is_empty(), "no info yet: not listed");
        let info = BackupInfo {
            id: id.clone(),
            uid: uid.to_string(),
            created: "2026-01-01T00:00:00Z".into(),
            bytes: st.bytes,
            sha256: st.sha256,
            files: st.files,
            source_bytes: st.source_bytes,
            live: false,
            reason: Reason::Manual,
            target: "local".into(),
        };
        c.write_info(&info, &uid).unwrap();
        assert_eq!(c.list(&uid).unwrap(), vec![info]);
        c.delete(&uid, &id).unwrap();
        assert!(c.list(&uid).unwrap().is_empty());
    }

    #[test]
    fn debris_of_a_crashed_backup_is_cleared_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::new(d.path().join("b"));
        assert!(c.clear_debris().unwrap().is_empty(), "no root yet");
        let uid = Uid::parse("g.a").unwrap();
        let src = d.path().join("s");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        let id = new_id(chrono::Utc::now());
        c.write_archive(&uid, &id, &src, &Globs::default()).unwrap();
        let dir = c.dir(&uid);
        let junk = dir.join(format!(".{id}.tar.zst.tmp-0a1b2c"));
        std::fs::write(&junk, "half").unwrap();
        std::fs::write(dir.join("notes.tmp-keep"), "not ours").unwrap();
        assert_eq!(c.clear_debris().unwrap(), vec![junk.clone()]);
        assert!(!junk.exists());
        assert!(c.archive_path(&uid, &id).is_file());
        assert!(dir.join("notes.tmp-keep").is_file());
    }
}
