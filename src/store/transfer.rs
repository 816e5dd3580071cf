//! A server directory received whole from elsewhere (a move between nodes, through the node's
//! peon agent) and its removal from the node that gave it up. Like every write in a server's
//! directory: staged on the same filesystem, then swapped in with one rename (an atomic exchange
//! when a directory is already there), so a failed transfer leaves the old directory as it was.
//! These calls block: run them off the async workers.

use std::io;
use std::path::Path;

use super::{DataDir, Result, StoreError};
use crate::fsio::{atomic, fsutil};
use crate::names::Uid;

/// The file in the data dir naming its storage (see [`DataDir::storage_id`]).
const STORAGE_FILE: &str = ".peon-storage";

impl DataDir {
    /// The id of the storage holding the data dir: random, made by the first process that asks
    /// and read by every one that sees the same folder (a filesystem shared between nodes, as
    /// in tests on one machine). Two data dirs with the same id are one copy of every server's
    /// directory: nothing is copied between them.
    pub fn storage_id(&self) -> io::Result<String> {
        let path = self.root().join(STORAGE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(self.root())?;
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
        let id = crate::backup::archive::hex(&b);
        atomic::write_atomic(&path, format!("{id}\n").as_bytes())?;
        // Two processes may race here: the file that stayed is the id.
        Ok(std::fs::read_to_string(&path)?.trim().to_owned())
    }

    /// Replaces (or creates) the server's directory with one filled by `fill`, which writes into
    /// a fresh folder in staging and fails to refuse it (a damaged or interrupted transfer). The
    /// received tree is taken as it is, `.peon.json` included. On failure the old directory is
    /// untouched and nothing is left in staging.
    pub fn receive_server<T>(
        &self,
        uid: &Uid,
        fill: impl FnOnce(&Path) -> io::Result<T>,
    ) -> Result<T> {
        let dest = self.server_dir(uid);
        let staging = self.staging();
        std::fs::create_dir_all(&staging)
            .map_err(|e| StoreError::io("cannot create", &staging, e))?;
        let stage = staging.join(format!("receive-{uid}-{}", atomic::random_suffix()));
        let filled = std::fs::create_dir(&stage).and_then(|()| fill(&stage));
        let t = match filled {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&stage);
                return Err(StoreError::io("cannot receive", &dest, e));
            }
        };
        let swapped = if dest.is_dir() {
            fsutil::exchange(&stage, &dest).map(|()| true)
        } else {
            dest.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(&stage, &dest))
                .map(|()| false)
        };
        let had_old = match swapped {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&stage);
                return Err(StoreError::io("cannot swap in the received", &dest, e));
            }
        };
        if let Some(p) = dest.parent() {
            atomic::sync_dir(p).map_err(|e| StoreError::io("cannot sync", p, e))?;
        }
        if had_old {
            // `stage` now holds the old files.
            if let Err(e) = std::fs::remove_dir_all(&stage) {
                tracing::warn!(uid = %uid, "cannot remove the replaced files {}: {e}", stage.display());
            }
        }
        Ok(t)
    }

    /// Deletes the server's directory (one rename into staging, then the delete). Returns
    /// whether there was one.
    pub fn remove_server_dir(&self, uid: &Uid) -> Result<bool> {
        let dir = self.server_dir(uid);
        let staging = self.staging();
        std::fs::create_dir_all(&staging)
            .map_err(|e| StoreError::io("cannot create", &staging, e))?;
        let trash = staging.join(format!("trash-{uid}-{}", atomic::random_suffix()));
        match std::fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("cannot remove", &dir, e)),
        }
        if let Some(p) = dir.parent() {
            atomic::sync_dir(p).map_err(|e| StoreError::io("cannot sync", p, e))?;
            // Leave no empty game folder behind.
            let _ = std::fs::remove_dir(p);
        }
        std::fs::remove_dir_all(&trash).map_err(|e| StoreError::io("cannot remove", &trash, e))?;
        Ok(true)
    }
}

impl super::ServerStore {
    /// Replaces the manager's copy of a server's directory with its node's (cluster mode), as
    /// `fill` unpacks it into staging: the files peon writes itself (`config.json`, `.peon.json`)
    /// stay the manager's. On failure the copy is unchanged. Returns `fill`'s result.
    pub fn refresh_from_node<T>(
        &self,
        uid: &Uid,
        fill: impl FnOnce(&Path) -> io::Result<T>,
    ) -> Result<T> {
        let ours = self.dir.server_dir(uid).join(super::CONFIG_FILE);
        let (t, _rec, old) = self.replace_server(uid, |stage| {
            let t = fill(stage)?;
            match std::fs::read(&ours) {
                Ok(b) => atomic::write_atomic(&stage.join(super::CONFIG_FILE), &b)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(t)
        })?;
        self.remove_replaced(&old);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_directory_replaces_the_old_one_and_a_failed_one_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let data = DataDir::new(d.path());
        data.prepare().unwrap();
        let uid = Uid::parse("g.a").unwrap();
        let dir = data.server_dir(&uid);

        // A first transfer creates the directory.
        data.receive_server(&uid, |s| std::fs::write(s.join("world"), "one"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("world")).unwrap(), "one");

        let r = data.receive_server(&uid, |s| {
            std::fs::write(s.join("world"), "half")?;
            Err::<(), _>(io::Error::other("the transfer broke off"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(dir.join("world")).unwrap(), "one");
        assert_eq!(std::fs::read_dir(data.staging()).unwrap().count(), 0);

        data.receive_server(&uid, |s| std::fs::write(s.join("other"), "two"))
            .unwrap();
        assert!(!dir.join("world").exists(), "the tree is replaced whole");
        assert_eq!(std::fs::read_to_string(dir.join("other")).unwrap(), "two");
        assert_eq!(std::fs::read_dir(data.staging()).unwrap().count(), 0);

        assert!(data.remove_server_dir(&uid).unwrap());
        assert!(!dir.exists());
        assert!(!data.remove_server_dir(&uid).unwrap());
    }
}
