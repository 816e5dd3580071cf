//! Every write inside a server's directory, in one place: assembling a new server in staging and
//! renaming it into place, wiping `data/`, clearing the reinstall marker, removing a server.
//! Each is crash-safe: a crash at any point leaves every server readable (staging is cleared at
//! the next start). These calls block: run them off the async workers.

use std::io;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{
    CONFIG_FILE, STATE_FILE, ServerRecord, ServerState, ServerStore, StoreError, read_server,
};
use crate::fsio::{atomic, fsutil};
use crate::names::Uid;

/// A restore's files, unpacked and synced in staging, not yet in place (see
/// [`ServerStore::stage_server`]).
#[derive(Debug)]
pub struct Staged {
    dir: std::path::PathBuf,
}

/// What a new server directory is made of.
pub struct NewServer<'a> {
    /// The plan's folder, copied in (actions and the rest).
    pub plan_dir: &'a Path,
    pub config: &'a Value,
    pub state: &'a ServerState,
    /// Files written into `config/` (already checked names).
    pub config_files: &'a [(String, Vec<u8>)],
    /// Owner (uid and gid) of every file: the game's user.
    pub owner: u32,
}

impl ServerStore {
    /// Builds the server directory in staging, renames it into place and indexes it. On
    /// failure nothing is left behind.
    pub fn create_server(
        &self,
        uid: &Uid,
        new: &NewServer<'_>,
    ) -> super::Result<Arc<ServerRecord>> {
        let dest = self.dir.server_dir(uid);
        let stage = self
            .dir
            .staging()
            .join(format!("{uid}-{}", atomic::random_suffix()));
        if let Err(e) = assemble(&stage, &dest, new) {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(StoreError::io("cannot create", &dest, e));
        }
        match read_server(uid, &dest) {
            Ok(r) => Ok(self.insert(r)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                Err(e)
            }
        }
    }

    /// Empties the server's `data/` folder (PEON's `reinit`).
    pub fn wipe_data(&self, uid: &Uid) -> super::Result<()> {
        let data = self.dir.server_dir(uid).join("data");
        fsutil::empty_dir(&data).map_err(|e| StoreError::io("cannot empty", &data, e))
    }

    /// Removes `actions/.update`, so the game reinstalls or validates at its next start.
    pub fn clear_update_marker(&self, uid: &Uid) -> super::Result<()> {
        let p = self.dir.server_dir(uid).join("actions").join(".update");
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("cannot remove", &p, e)),
        }
    }

    /// Forgets a server and deletes its directory: one rename into staging, then the delete.
    pub fn remove_server(&self, uid: &Uid) -> super::Result<()> {
        let dir = self.dir.server_dir(uid);
        let trash = self
            .dir
            .staging()
            .join(format!("trash-{uid}-{}", atomic::random_suffix()));
        self.forget(uid);
        // The plan kept from before a plan update belongs to the server.
        self.drop_plan_undo(uid)?;
        match std::fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("cannot remove", &dir, e)),
        }
        if let Some(p) = dir.parent() {
            atomic::sync_dir(p).map_err(|e| StoreError::io("cannot sync", p, e))?;
            // Leave no empty game folder behind.
            let _ = std::fs::remove_dir(p);
        }
        std::fs::remove_dir_all(&trash).map_err(|e| StoreError::io("cannot remove", &trash, e))
    }

    /// The first half of replacing the server's directory (a restore), done while the server
    /// still runs: `fill` writes into a fresh folder in staging, which is then checked to hold
    /// a readable `config.json`. Nothing of the server is touched; on failure the staged folder
    /// is removed. [`ServerStore::sync_staged`] makes it durable, [`ServerStore::swap_staged`]
    /// puts it in place, [`ServerStore::discard_staged`] drops it (staging is also cleared at
    /// the next start).
    pub fn stage_server<T>(
        &self,
        uid: &Uid,
        fill: impl FnOnce(&Path) -> io::Result<T>,
    ) -> super::Result<(T, Staged)> {
        let dest = self.dir.server_dir(uid);
        let stage = self
            .dir
            .staging()
            .join(format!("restore-{uid}-{}", atomic::random_suffix()));
        let staged = (|| {
            std::fs::create_dir_all(&stage)?;
            fill(&stage)
        })();
        let t = match staged {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&stage);
                return Err(StoreError::io("cannot stage the restore of", &dest, e));
            }
        };
        if let Err(e) = read_server(uid, &stage) {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
        Ok((t, Staged { dir: stage }))
    }

    /// Flushes a staged folder to disk with one `syncfs` (not an fsync per file), so that the
    /// swap never puts files in place that a crash could leave empty.
    pub fn sync_staged(&self, staged: &Staged) -> super::Result<()> {
        atomic::sync_fs(&staged.dir).map_err(|e| StoreError::io("cannot sync", &staged.dir, e))
    }

    /// Puts a staged folder in place of the server's (synced first with
    /// [`ServerStore::sync_staged`]): the current `.peon.json` (peon's facts
    /// about the server now) is copied in, the two folders are swapped in one rename
    /// (`RENAME_EXCHANGE`) and the index is reloaded from the new `config.json`. Returns the
    /// folder in staging now holding the old files, for [`ServerStore::remove_replaced`]. On
    /// failure the server's files are untouched and the staged folder is removed.
    pub fn swap_staged(
        &self,
        uid: &Uid,
        staged: Staged,
    ) -> super::Result<(Arc<ServerRecord>, std::path::PathBuf)> {
        let dest = self.dir.server_dir(uid);
        let stage = staged.dir;
        // The current `.peon.json` is copied in and the record put back under the lock of
        // state changes: none made meanwhile is lost.
        let _w = self.state_writes();
        let prepared = (|| {
            let state = dest.join(STATE_FILE);
            match std::fs::read(&state) {
                Ok(b) => atomic::write_atomic(&stage.join(STATE_FILE), &b)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(())
        })();
        if let Err(e) = prepared {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(StoreError::io("cannot stage the restore of", &dest, e));
        }
        let record = match read_server(uid, &stage) {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&stage);
                return Err(e);
            }
        };
        if let Err(e) = fsutil::exchange(&stage, &dest) {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(StoreError::io("cannot swap in the restored", &dest, e));
        }
        if let Some(p) = dest.parent() {
            atomic::sync_dir(p).map_err(|e| StoreError::io("cannot sync", p, e))?;
        }
        // `stage` now holds the old files.
        let rec = self.insert(ServerRecord {
            dir: dest.clone(),
            ..record
        });
        Ok((rec, stage))
    }

    /// Removes a staged folder that will not be swapped in.
    pub fn discard_staged(&self, staged: Staged) {
        self.remove_replaced(&staged.dir);
    }

    /// [`ServerStore::stage_server`] then [`ServerStore::swap_staged`] at once.
    pub fn replace_server<T>(
        &self,
        uid: &Uid,
        fill: impl FnOnce(&Path) -> io::Result<T>,
    ) -> super::Result<(T, Arc<ServerRecord>, std::path::PathBuf)> {
        let (t, staged) = self.stage_server(uid, fill)?;
        if let Err(e) = self.sync_staged(&staged) {
            self.discard_staged(staged);
            return Err(e);
        }
        let (rec, old) = self.swap_staged(uid, staged)?;
        Ok((t, rec, old))
    }

    /// Deletes the old files a [`ServerStore::replace_server`] left in staging.
    pub fn remove_replaced(&self, old: &Path) {
        if !old.starts_with(self.dir.staging()) {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(old) {
            tracing::warn!("cannot remove the replaced files {}: {e}", old.display());
        }
    }
}

/// Builds the server directory in `stage` and renames it to `dest`.
fn assemble(stage: &Path, dest: &Path, new: &NewServer<'_>) -> io::Result<()> {
    fsutil::copy_tree(new.plan_dir, stage)?;
    atomic::write_json_atomic(&stage.join(CONFIG_FILE), new.config)?;
    atomic::write_json_atomic(&stage.join(STATE_FILE), new.state)?;
    // Every volume source is a directory the container can write to.
    let mut dirs: Vec<String> = vec![
        "actions".into(),
        "config".into(),
        "data".into(),
        "user".into(),
    ];
    if let Some(v) = new.config.get("volumes").and_then(Value::as_object) {
        for src in v.keys() {
            if let Ok(rel) = crate::model::plan::server_relative(src) {
                dirs.push(rel);
            }
        }
    }
    for d in dirs.iter().filter(|d| !d.is_empty()) {
        std::fs::create_dir_all(stage.join(d))?;
    }
    for (name, content) in new.config_files {
        atomic::write_atomic(&stage.join("config").join(name), content)?;
    }
    fsutil::chown_tree(stage, new.owner, new.owner)?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(stage, dest)?;
    if let Some(parent) = dest.parent() {
        atomic::sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DataDir;

    fn config(description: &str) -> Value {
        serde_json::json!({
            "metadata": {"game_uid": "g", "description": description, "image": "x:1"},
            "ports": [{"PORT": ["27960", "tcp"]}],
            "environment": {},
            "volumes": {"~!/user": "/home/steam/user"}
        })
    }

    #[test]
    fn replace_server_swaps_whole_folders_and_a_failure_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path());
        data.prepare().unwrap();
        let uid = Uid::parse("g.a").unwrap();
        let dir = data.server_dir(&uid);
        std::fs::create_dir_all(dir.join("user")).unwrap();
        atomic::write_json_atomic(&dir.join(CONFIG_FILE), &config("old")).unwrap();
        std::fs::write(dir.join(STATE_FILE), r#"{"wanted_running": true}"#).unwrap();
        std::fs::write(dir.join("user/world"), "old world").unwrap();
        let store = ServerStore::load(data.clone()).unwrap();

        let r = store.replace_server(&uid, |stage| {
            std::fs::write(stage.join("half"), "x")?;
            Err::<(), _>(io::Error::other("unpack failed"))
        });
        assert!(r.is_err());
        assert_eq!(
            std::fs::read_to_string(dir.join("user/world")).unwrap(),
            "old world"
        );
        assert!(!dir.join("half").exists());
        assert_eq!(std::fs::read_dir(data.staging()).unwrap().count(), 0);

        let (_, rec, old) = store
            .replace_server(&uid, |stage| {
                std::fs::create_dir_all(stage.join("user"))?;
                std::fs::write(stage.join("user/world"), "restored")?;
                atomic::write_json_atomic(&stage.join(CONFIG_FILE), &config("new"))
            })
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("user/world")).unwrap(),
            "restored"
        );
        assert_eq!(rec.description(), Some("new"));
        assert_eq!(store.get(&uid).unwrap().description(), Some("new"));
        assert!(rec.state.wanted_running, "the current .peon.json is kept");
        assert_eq!(
            std::fs::read_to_string(old.join("user/world")).unwrap(),
            "old world"
        );
        store.remove_replaced(&old);
        assert_eq!(std::fs::read_dir(data.staging()).unwrap().count(), 0);
    }

    #[test]
    fn state_changes_made_at_once_are_all_kept() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path());
        data.prepare().unwrap();
        let uid = Uid::parse("g.a").unwrap();
        let dir = data.server_dir(&uid);
        std::fs::create_dir_all(&dir).unwrap();
        atomic::write_json_atomic(&dir.join(CONFIG_FILE), &config("s")).unwrap();
        let store = ServerStore::load(data.clone()).unwrap();
        let n = 16;
        std::thread::scope(|sc| {
            for i in 0..n {
                let (store, uid) = (&store, &uid);
                sc.spawn(move || {
                    store
                        .change_state(uid, |s| s.stale_on.push(format!("node{i}")))
                        .unwrap()
                        .unwrap();
                });
            }
        });
        let again = ServerStore::load(data).unwrap();
        for st in [
            &store.get(&uid).unwrap().state,
            &again.get(&uid).unwrap().state,
        ] {
            let mut got = st.stale_on.clone();
            got.sort();
            let mut want: Vec<String> = (0..n).map(|i| format!("node{i}")).collect();
            want.sort();
            assert_eq!(got, want);
        }
        assert!(
            store
                .change_state(&Uid::parse("g.none").unwrap(), |_| {})
                .unwrap()
                .is_none()
        );
    }
}
