//! The undo point of an update: a full copy of the server directory taken before the update
//! touches anything, swapped back in one atomic exchange when the update is rolled back. These
//! calls block: run them off the async workers.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::{STATE_FILE, ServerRecord, ServerStore, StoreError, read_server};
use crate::fsio::{atomic, snapshot};
use crate::names::Uid;

impl ServerStore {
    fn undo_dir(&self, uid: &Uid) -> PathBuf {
        self.dir.undo().join(uid.to_string())
    }

    /// Copies the server directory (config, plan files, world) to its undo point, replacing an
    /// older one. The copy is made under a temporary name and renamed: an undo point that exists
    /// is complete.
    pub fn save_undo_point(&self, uid: &Uid) -> super::Result<()> {
        let src = self.dir.server_dir(uid);
        let dest = self.undo_dir(uid);
        let tmp = self
            .dir
            .undo()
            .join(format!(".{uid}-{}", atomic::random_suffix()));
        let made = snapshot::clone_tree(&src, &tmp).and_then(|()| {
            remove_if_present(&dest)?;
            std::fs::rename(&tmp, &dest)?;
            atomic::sync_dir(&self.dir.undo())
        });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(StoreError::io("cannot copy for the undo point", &src, e));
        }
        Ok(())
    }

    /// Puts the undo point back in place of the server directory, keeping the current
    /// `.peon.json` (what the host wants and the exits stay current), and re-reads the server.
    /// The failed version's files are deleted.
    pub fn restore_undo_point(&self, uid: &Uid) -> super::Result<Arc<ServerRecord>> {
        let dir = self.dir.server_dir(uid);
        let undo = self.undo_dir(uid);
        if !undo.is_dir() {
            return Err(StoreError::Corrupt {
                path: undo,
                reason: "the update's undo point is missing".into(),
            });
        }
        let state = dir.join(STATE_FILE);
        match std::fs::read(&state) {
            Ok(b) => atomic::write_atomic(&undo.join(STATE_FILE), &b)
                .map_err(|e| StoreError::io("cannot write", &undo, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("cannot read", &state, e)),
        }
        snapshot::exchange(&undo, &dir).map_err(|e| StoreError::io("cannot swap back", &dir, e))?;
        if let Some(p) = dir.parent() {
            atomic::sync_dir(p).map_err(|e| StoreError::io("cannot sync", p, e))?;
        }
        // `undo` now holds the failed version.
        remove_if_present(&undo).map_err(|e| StoreError::io("cannot remove", &undo, e))?;
        let rec = read_server(uid, &dir)?;
        Ok(self.insert(rec))
    }

    /// Whether the server has a complete undo point (an update was under way).
    pub fn has_undo_point(&self, uid: &Uid) -> bool {
        self.undo_dir(uid).is_dir()
    }

    /// Deletes the server's undo point (the update succeeded, or the server is gone).
    pub fn drop_undo_point(&self, uid: &Uid) -> super::Result<()> {
        let undo = self.undo_dir(uid);
        remove_if_present(&undo).map_err(|e| StoreError::io("cannot remove", &undo, e))
    }
}

fn remove_if_present(p: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
