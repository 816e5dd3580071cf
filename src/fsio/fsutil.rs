//! File tree helpers for server directories: copying a plan folder, ownership, removal.

use std::fs;
use std::io;
use std::os::unix::fs::chown;
use std::path::Path;

/// Copies the regular files and folders of `from` into `to` (created). Symlinks and special
/// files are skipped: a plan must not smuggle a link to elsewhere on the host into a server.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let target = to.join(entry.file_name());
        if ft.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if ft.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Gives a tree to `uid:gid` (game containers run as 1000:1000). When peon does not run as
/// root it cannot chown; the files then keep peon's own user, which is logged once per call.
pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    fn walk(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
        chown(p, Some(uid), Some(gid))?;
        if fs::symlink_metadata(p)?.is_dir() {
            for e in fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    match walk(root, uid, gid) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::debug!("not root: {} keeps its owner ({e})", root.display());
            Ok(())
        }
        r => r,
    }
}

/// What a path inside a server directory is, looked at without following symbolic links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Within {
    Missing,
    File,
    Dir,
    Other,
    /// The path is, or passes through, a symbolic link (here): mounting it would let whoever
    /// made the link (a game container writes into its volumes) reach any host path.
    Link(std::path::PathBuf),
}

/// Walks `rel` (a normalised relative path, as the plan model makes them) from `root`
/// component by component without following links.
pub fn within(root: &Path, rel: &str) -> io::Result<Within> {
    let mut p = root.to_owned();
    let mut kind = Within::Dir;
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        p.push(part);
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Within::Missing),
            Err(e) => return Err(e),
        };
        let ft = m.file_type();
        kind = if ft.is_symlink() {
            return Ok(Within::Link(p));
        } else if ft.is_dir() {
            Within::Dir
        } else if ft.is_file() {
            Within::File
        } else {
            Within::Other
        };
    }
    Ok(kind)
}

/// Removes everything inside `dir` (dotfiles included), keeping `dir` itself.
pub fn empty_dir(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    fs::remove_dir_all(e.path())?;
                } else {
                    fs::remove_file(e.path())?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir),
        Err(e) => Err(e),
    }
}

/// Bytes used by the regular files under `root` (symlinks are not followed; unreadable entries
/// are skipped). A missing `root` uses 0 bytes.
pub fn tree_size(root: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_skips_symlinks_and_empty_keeps_dir() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("actions")).unwrap();
        fs::write(src.join("plan.json"), "{}").unwrap();
        fs::write(src.join("actions/server_start"), "echo").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("evil")).unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert!(dst.join("actions/server_start").is_file());
        assert!(!dst.join("evil").exists());
        assert_eq!(within(&dst, "actions/server_start").unwrap(), Within::File);
        assert_eq!(within(&dst, "actions").unwrap(), Within::Dir);
        assert_eq!(within(&dst, "nothing/here").unwrap(), Within::Missing);
        fs::write(dst.join(".hidden"), "x").unwrap();
        empty_dir(&dst).unwrap();
        assert!(dst.is_dir());
        assert_eq!(fs::read_dir(&dst).unwrap().count(), 0);
    }

    #[test]
    fn within_never_follows_links() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("user/saves")).unwrap();
        fs::write(root.join("server.cfg"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("admins.txt")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("config")).unwrap();
        assert_eq!(within(root, "server.cfg").unwrap(), Within::File);
        assert_eq!(within(root, "user/saves").unwrap(), Within::Dir);
        assert_eq!(within(root, "").unwrap(), Within::Dir);
        assert_eq!(within(root, "user/none").unwrap(), Within::Missing);
        assert_eq!(
            within(root, "admins.txt").unwrap(),
            Within::Link(root.join("admins.txt"))
        );
        assert_eq!(
            within(root, "config/hostname").unwrap(),
            Within::Link(root.join("config"))
        );
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn tree_size_adds_files_and_ignores_missing_roots() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/x"), [0u8; 10]).unwrap();
        std::fs::write(d.path().join("a/b/y"), [0u8; 32]).unwrap();
        assert_eq!(super::tree_size(d.path()), 42);
        assert_eq!(super::tree_size(&d.path().join("a/x")), 10);
        assert_eq!(super::tree_size(&d.path().join("nope")), 0);
    }
}

/// Swaps two paths on one filesystem in one step (`renameat2` with `RENAME_EXCHANGE`): each
/// name then holds what the other held; no moment exists where either is missing.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them as given.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
