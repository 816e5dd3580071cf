//! Whole-tree copies that keep everything a game left (symbolic links as links, modes, owners,
//! times), and an atomic exchange of two directories: what an update's undo point is made of.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;

/// Copies `from` to `to` (which must not exist): regular files, folders and symbolic links (as
/// links, never followed), with their modes, and their owners when the process may set them.
/// Other special files are skipped.
pub fn clone_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if ft.is_dir() {
            clone_tree(&src, &dst)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst)?;
            keep_owner(&dst, &fs::symlink_metadata(&src)?);
        } else if ft.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
            keep_owner(&dst, &fs::symlink_metadata(&src)?);
        }
    }
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    keep_owner(to, &meta);
    Ok(())
}

/// Gives `p` the owner in `meta`; without the right to (not root), the copy keeps peon's user.
fn keep_owner(p: &Path, meta: &fs::Metadata) {
    let _ = lchown(p, Some(meta.uid()), Some(meta.gid()));
}

/// Swaps two paths on the same filesystem in one step (`renameat2` with `RENAME_EXCHANGE`): at
/// every moment each name holds one of the two trees, so a crash leaves both readable.
pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_keeps_links_modes_and_content_and_exchange_swaps() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::create_dir_all(a.join("data/world")).unwrap();
        fs::write(a.join("data/world/level.dat"), b"level").unwrap();
        fs::set_permissions(
            a.join("data/world/level.dat"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        symlink("world/level.dat", a.join("data/current")).unwrap();
        let b = d.path().join("b");
        clone_tree(&a, &b).unwrap();
        assert_eq!(fs::read(b.join("data/world/level.dat")).unwrap(), b"level");
        assert_eq!(
            fs::read_link(b.join("data/current")).unwrap(),
            Path::new("world/level.dat")
        );
        let mode = fs::metadata(b.join("data/world/level.dat"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(clone_tree(&a, &b).is_err(), "the target must not exist");

        fs::write(b.join("only-in-b"), b"x").unwrap();
        exchange(&a, &b).unwrap();
        assert!(a.join("only-in-b").exists());
        assert!(!b.join("only-in-b").exists());
    }
}
