//! A server moved to another version of its plan: the plan's files in the server directory
//! (`plan.json`, `actions/`, and every other entry the plan folder ships) are replaced by the new
//! plan's, and `config.json` is rewritten; the world folders (every volume source but
//! `actions/`, and `data/`, `config/`, `user/`) are never touched. The plan files and config the
//! server had before are kept as its plan undo (`<data>/undo/plan/<uid>/`), which a rollout that
//! fails later puts back, byte for byte. Hidden entries (the reinstall marker `actions/.update`)
//! stay. These calls block: run them off the async workers.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{CONFIG_FILE, STATE_FILE, ServerRecord, ServerStore, StoreError, read_server};
use crate::fsio::{atomic, fsutil};
use crate::names::Uid;

/// The plan folder every server has (mounted at `/actions`), even when a plan ships none.
const ACTIONS: &str = "actions";

impl ServerStore {
    fn plan_undo_dir(&self, uid: &Uid) -> PathBuf {
        self.dir.undo().join("plan").join(uid.to_string())
    }

    /// Replaces the server's plan files with those of `plan_dir` and its `config.json` with
    /// `config`, after keeping the current ones as the server's plan undo. The caller has made an
    /// update's undo point first: a failure here is rolled back from it.
    pub fn apply_plan(
        &self,
        uid: &Uid,
        plan_dir: &Path,
        config: &Value,
        owner: u32,
    ) -> super::Result<Arc<ServerRecord>> {
        let cur = self.known(uid)?;
        let world = world_names(&cur.config, Some(config));
        let dir = cur.dir.clone();
        self.save_plan_undo(uid, &dir, &world)?;
        let io = |e| StoreError::io("cannot install the plan files in", &dir, e);
        install(&dir, plan_dir, &world, owner).map_err(io)?;
        let cfg = dir.join(CONFIG_FILE);
        atomic::write_json_atomic(&cfg, config)
            .map_err(|e| StoreError::io("cannot write", &cfg, e))?;
        Ok(self.insert(read_server(uid, &dir)?))
    }

    /// The `plan.json` in the server directory (the plan it was built from), when readable.
    pub fn plan_doc(&self, uid: &Uid) -> Option<Value> {
        let bytes = fs::read(self.dir.server_dir(uid).join("plan.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the server has plan files and a config kept from before its last plan update.
    pub fn has_plan_undo(&self, uid: &Uid) -> bool {
        self.plan_undo_dir(uid).join(CONFIG_FILE).is_file()
    }

    /// The plan version of the plan undo (its `config.json`'s `metadata.version`).
    pub fn plan_undo_version(&self, uid: &Uid) -> Option<String> {
        let bytes = fs::read(self.plan_undo_dir(uid).join(CONFIG_FILE)).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v.pointer("/metadata/version")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Puts back the plan files and `config.json` kept before the last plan update, byte for
    /// byte (they stay kept until [`ServerStore::drop_plan_undo`]). The world is not touched.
    pub fn restore_plan_undo(&self, uid: &Uid, owner: u32) -> super::Result<Arc<ServerRecord>> {
        let cur = self.known(uid)?;
        let undo = self.plan_undo_dir(uid);
        let old_cfg = undo.join(CONFIG_FILE);
        let bytes = fs::read(&old_cfg).map_err(|e| StoreError::io("cannot read", &old_cfg, e))?;
        let old: Value = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: old_cfg.clone(),
            reason: e.to_string(),
        })?;
        let world = world_names(&cur.config, Some(&old));
        let dir = cur.dir.clone();
        install(&dir, &undo, &world, owner)
            .map_err(|e| StoreError::io("cannot put back the plan files in", &dir, e))?;
        let cfg = dir.join(CONFIG_FILE);
        atomic::write_atomic(&cfg, &bytes).map_err(|e| StoreError::io("cannot write", &cfg, e))?;
        Ok(self.insert(read_server(uid, &dir)?))
    }

    /// Forgets the plan undo.
    pub fn drop_plan_undo(&self, uid: &Uid) -> super::Result<()> {
        let d = self.plan_undo_dir(uid);
        match fs::remove_dir_all(&d) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::io("cannot remove", &d, e))
            }
            _ => Ok(()),
        }
    }

    /// Copies the server's plan files and `config.json` to its plan undo (made under a
    /// temporary name and renamed: a plan undo that exists is complete).
    fn save_plan_undo(
        &self,
        uid: &Uid,
        dir: &Path,
        world: &BTreeSet<OsString>,
    ) -> super::Result<()> {
        let dest = self.plan_undo_dir(uid);
        let parent = self.dir.undo().join("plan");
        let tmp = parent.join(format!(".{uid}-{}", atomic::random_suffix()));
        let made = (|| {
            fs::create_dir_all(&tmp)?;
            install(&tmp, dir, world, u32::MAX)?;
            fs::copy(dir.join(CONFIG_FILE), tmp.join(CONFIG_FILE))?;
            match fs::remove_dir_all(&dest) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            fs::rename(&tmp, &dest)?;
            atomic::sync_dir(&parent)
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&tmp);
            return Err(StoreError::io("cannot keep the plan files of", dir, e));
        }
        Ok(())
    }

    fn known(&self, uid: &Uid) -> super::Result<Arc<ServerRecord>> {
        self.get(uid).ok_or_else(|| StoreError::Corrupt {
            path: self.dir.server_dir(uid),
            reason: "server is not known".into(),
        })
    }
}

/// The top-level names in a server directory that hold the world, not the plan: every volume
/// source of the configs (its first component) but `actions`, and `data`, `config`, `user`.
fn world_names(a: &Value, b: Option<&Value>) -> BTreeSet<OsString> {
    let mut out: BTreeSet<OsString> = ["data", "config", "user"]
        .iter()
        .map(OsString::from)
        .collect();
    for cfg in std::iter::once(a).chain(b) {
        if let Some(v) = cfg.get("volumes").and_then(Value::as_object) {
            for src in v.keys() {
                if let Ok(rel) = crate::model::plan::server_relative(src)
                    && let Some(first) = Path::new(&rel).components().next()
                {
                    out.insert(first.as_os_str().to_owned());
                }
            }
        }
    }
    out.remove(&OsString::from(ACTIONS));
    out
}

/// Whether a top-level entry of a server directory (or a plan folder) is a plan file.
fn is_plan_entry(name: &OsString, world: &BTreeSet<OsString>) -> bool {
    let s = name.to_string_lossy();
    !s.starts_with('.') && s != CONFIG_FILE && s != STATE_FILE && !world.contains(name)
}

fn visible(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e?;
                if !e.file_name().to_string_lossy().starts_with('.') {
                    out.push(e);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Makes the plan entries of `dir` those of `src`: entries `src` lacks go, the others are
/// written over (folders mirrored, hidden entries kept). `owner` `u32::MAX` keeps peon's user.
fn install(dir: &Path, src: &Path, world: &BTreeSet<OsString>, owner: u32) -> io::Result<()> {
    let incoming: BTreeSet<OsString> = visible(src)?
        .iter()
        .map(fs::DirEntry::file_name)
        .filter(|n| is_plan_entry(n, world))
        .chain(std::iter::once(OsString::from(ACTIONS)))
        .collect();
    for e in visible(dir)? {
        let n = e.file_name();
        if is_plan_entry(&n, world) && !incoming.contains(&n) {
            remove(&e.path())?;
        }
    }
    for n in &incoming {
        let (from, to) = (src.join(n), dir.join(n));
        if n == ACTIONS || from.is_dir() {
            mirror(&from, &to)?;
        } else {
            copy_file(&from, &to)?;
        }
        if owner != u32::MAX {
            fsutil::chown_tree(&to, owner, owner)?;
        }
    }
    atomic::sync_dir(dir)
}

/// Makes folder `to` hold what folder `from` holds (a missing `from` is empty); hidden entries
/// of `to` stay.
fn mirror(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() && !to.is_dir() {
        fs::remove_file(to)?;
    }
    fs::create_dir_all(to)?;
    let wanted: BTreeSet<OsString> = visible(from)?.iter().map(fs::DirEntry::file_name).collect();
    for e in visible(to)? {
        if !wanted.contains(&e.file_name()) {
            remove(&e.path())?;
        }
    }
    for e in visible(from)? {
        let ft = e.file_type()?;
        let target = to.join(e.file_name());
        if ft.is_dir() {
            mirror(&e.path(), &target)?;
        } else if ft.is_file() {
            copy_file(&e.path(), &target)?;
        }
    }
    atomic::sync_dir(to)
}

/// Writes `to` with the bytes and mode of `from`, atomically.
fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    if to.is_dir() {
        fs::remove_dir_all(to)?;
    }
    let mode = fs::metadata(from)?.permissions().mode() & 0o7777;
    atomic::write_atomic_mode(to, &fs::read(from)?, mode)?;
    // The mode given at creation is masked by the umask: set it as it was.
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
}

fn remove(p: &Path) -> io::Result<()> {
    if fs::symlink_metadata(p)?.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DataDir;

    fn config(version: &str) -> Value {
        serde_json::json!({
            "metadata": {"game_uid": "g", "version": version, "image": "x:1"},
            "ports": [{"PORT": ["27960", "tcp"]}],
            "environment": {},
            "volumes": {"~!/actions": "/actions", "~!/data": "/d", "~!/saves": "/s"}
        })
    }

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    #[test]
    fn apply_then_restore_keeps_the_world_and_puts_back_every_byte() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path().join("data"));
        data.prepare().unwrap();
        let uid = Uid::parse("g.a").unwrap();
        let dir = data.server_dir(&uid);
        fs::create_dir_all(&dir).unwrap();
        atomic::write_json_atomic(&dir.join(CONFIG_FILE), &config("1")).unwrap();
        write(&dir.join(STATE_FILE), "{}");
        write(&dir.join("plan.json"), "plan v1");
        write(&dir.join("actions/server_start"), "start v1");
        write(&dir.join("actions/old_only"), "gone in v2");
        write(&dir.join("actions/.update"), "marker");
        write(&dir.join("server.cfg"), "cfg v1");
        write(&dir.join("data/world"), "the world");
        write(&dir.join("saves/s1"), "a save");
        let before_cfg = fs::read(dir.join(CONFIG_FILE)).unwrap();
        let store = ServerStore::load(data.clone()).unwrap();

        let plan = d.path().join("plan2");
        write(&plan.join("plan.json"), "plan v2");
        write(&plan.join("actions/server_start"), "start v2");
        write(&plan.join("extra.txt"), "new file");
        write(&plan.join("data/seed"), "never copied over a world");
        fs::set_permissions(
            plan.join("actions/server_start"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let rec = store
            .apply_plan(&uid, &plan, &config("2"), u32::MAX)
            .unwrap();
        assert_eq!(rec.plan.version.as_deref(), Some("2"));
        let read = |p: &str| fs::read_to_string(dir.join(p)).unwrap();
        assert_eq!(read("plan.json"), "plan v2");
        assert_eq!(read("actions/server_start"), "start v2");
        let mode = fs::metadata(dir.join("actions/server_start"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(!dir.join("actions/old_only").exists());
        assert!(!dir.join("server.cfg").exists());
        assert_eq!(read("actions/.update"), "marker");
        assert_eq!(read("extra.txt"), "new file");
        assert_eq!(read("data/world"), "the world");
        assert!(!dir.join("data/seed").exists());
        assert_eq!(read("saves/s1"), "a save");
        assert!(store.has_plan_undo(&uid));
        assert_eq!(store.plan_undo_version(&uid).as_deref(), Some("1"));

        let rec = store.restore_plan_undo(&uid, u32::MAX).unwrap();
        assert_eq!(rec.plan.version.as_deref(), Some("1"));
        assert_eq!(fs::read(dir.join(CONFIG_FILE)).unwrap(), before_cfg);
        assert_eq!(read("plan.json"), "plan v1");
        assert_eq!(read("actions/server_start"), "start v1");
        assert_eq!(read("actions/old_only"), "gone in v2");
        assert_eq!(read("server.cfg"), "cfg v1");
        assert!(!dir.join("extra.txt").exists());
        assert_eq!(read("data/world"), "the world");
        assert_eq!(read("actions/.update"), "marker");
        store.drop_plan_undo(&uid).unwrap();
        assert!(!store.has_plan_undo(&uid));
    }
}
