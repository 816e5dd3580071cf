//! Writing the entries of a tar stream into an empty directory, the way `tar -x` does it and
//! about as fast: one open, write, `fchown`, `fchmod` and `futimens` per file, all on the open
//! file (no path is resolved twice), the parents made once. Only what [`super::pack`] writes is
//! accepted: directories, regular files and symlinks, with relative paths of plain names.
//!
//! Symlinks are made after every file and directory, and never inside another link of the
//! archive, so no entry is ever written through a link: an archive cannot reach outside `dest`.
//! Directories get their modes, owners and times last, deepest first, so a read-only directory
//! is still filled. Owners are kept only when running as root (like `tar`).

use std::collections::HashSet;
use std::fs::{File, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The size of the buffer between the tar stream and a file.
const COPY_BUF: usize = 256 << 10;

/// The owner, mode and modification time an entry asks for.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

impl Meta {
    fn of(h: &tar::Header) -> io::Result<Meta> {
        Ok(Meta {
            mode: h.mode()? & 0o7777,
            uid: u32::try_from(h.uid()?).map_err(|_| bad("an owner id out of range"))?,
            gid: u32::try_from(h.gid()?).map_err(|_| bad("a group id out of range"))?,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(h.mtime()?),
        })
    }

    fn times(&self) -> FileTimes {
        FileTimes::new()
            .set_accessed(self.mtime)
            .set_modified(self.mtime)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad archive: {what}"))
}

/// `p` as a relative path of plain names (`.` dropped), or an error for anything else.
fn safe_rel(p: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(bad(&format!("the entry {} leaves its folder", p.display()))),
        }
    }
    Ok(out)
}

/// Unpacks the tar stream `src` into `dest` (an existing, empty directory).
pub fn extract<R: Read>(src: R, dest: &Path) -> io::Result<()> {
    let root = running_as_root();
    let mut ar = tar::Archive::new(src);
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf, Meta)> = Vec::new();
    let mut made: HashSet<PathBuf> = HashSet::new();
    let mut buf = vec![0u8; COPY_BUF];
    for entry in ar.entries()? {
        let mut e = entry?;
        let rel = safe_rel(&e.path()?)?;
        let meta = Meta::of(e.header())?;
        let kind = e.header().entry_type();
        if rel.as_os_str().is_empty() {
            // The archive's root (`.`): `dest` itself.
            if kind.is_dir() {
                dirs.push((dest.to_owned(), meta));
            }
            continue;
        }
        let path = dest.join(&rel);
        if kind.is_dir() {
            make_dirs(&path, &mut made)?;
            dirs.push((path, meta));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if let Some(parent) = path.parent() {
                make_dirs(parent, &mut made)?;
            }
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)?;
            loop {
                let n = match e.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                };
                f.write_all(&buf[..n])?;
            }
            finish_file(&f, &meta, root)?;
        } else if kind.is_symlink() {
            let target = e
                .link_name()?
                .ok_or_else(|| bad("a symlink without a target"))?
                .into_owned();
            links.push((path, target, meta));
        } else {
            return Err(bad(&format!(
                "the entry {} is neither a file, a folder nor a symlink",
                rel.display()
            )));
        }
    }
    make_links(&links, &mut made, root)?;
    // Deepest first, so setting a folder's time is not undone by filling it.
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, meta) in &dirs {
        let d = File::open(path)?;
        finish_file(&d, meta, root)?;
    }
    Ok(())
}

/// Owner (as root), then mode (after `fchown`, which clears set-id bits), then times.
fn finish_file(f: &File, meta: &Meta, root: bool) -> io::Result<()> {
    if root {
        std::os::unix::fs::fchown(f, Some(meta.uid), Some(meta.gid))?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(meta.mode))?;
    f.set_times(meta.times())
}

/// Creates `dir` and its parents unless this extraction already did.
fn make_dirs(dir: &Path, made: &mut HashSet<PathBuf>) -> io::Result<()> {
    if made.contains(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mut d = Some(dir);
    while let Some(p) = d {
        if !made.insert(p.to_owned()) {
            break;
        }
        d = p.parent();
    }
    Ok(())
}

/// Makes the archive's symlinks, none inside another.
fn make_links(
    links: &[(PathBuf, PathBuf, Meta)],
    made: &mut HashSet<PathBuf>,
    root: bool,
) -> io::Result<()> {
    let paths: HashSet<&Path> = links.iter().map(|(p, _, _)| p.as_path()).collect();
    for (path, target, meta) in links {
        if path.ancestors().skip(1).any(|a| paths.contains(a)) {
            return Err(bad(&format!(
                "the symlink {} is inside another symlink",
                path.display()
            )));
        }
        if let Some(parent) = path.parent() {
            make_dirs(parent, made)?;
        }
        std::os::unix::fs::symlink(target, path)?;
        if root {
            std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))?;
        }
        set_link_time(path, meta.mtime)?;
    }
    Ok(())
}

/// Sets a symlink's own times (not its target's).
fn set_link_time(path: &Path, t: SystemTime) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    let ts = [libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }; 2];
    // SAFETY: `c` is a valid NUL-terminated path and `ts` two initialised timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<&mut Vec<u8>>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = tar::Builder::new(&mut out);
        build(&mut b);
        b.finish().unwrap();
        drop(b);
        out
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_000_000_000);
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h
    }

    #[test]
    fn files_folders_and_links_keep_their_modes_and_times() {
        let ar = archive(|b| {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0, 0o500),
                "ro",
                &[][..],
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 3, 0o640),
                "ro/f",
                &b"abc"[..],
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 2, 0o755),
                "deep/er/x",
                &b"hi"[..],
            )
            .unwrap();
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut h, "link", "ro/f").unwrap();
        });
        let d = tempfile::tempdir().unwrap();
        extract(&ar[..], d.path()).unwrap();
        let md = std::fs::metadata(d.path().join("ro/f")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            md.modified().unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
        );
        let ro = std::fs::metadata(d.path().join("ro")).unwrap();
        assert_eq!(ro.permissions().mode() & 0o7777, 0o500);
        assert_eq!(std::fs::read(d.path().join("deep/er/x")).unwrap(), b"hi");
        assert_eq!(std::fs::read(d.path().join("link")).unwrap(), b"abc");
        std::fs::set_permissions(d.path().join("ro"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
    }

    #[test]
    fn entries_that_would_leave_the_folder_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let through_a_link = archive(|b| {
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut h, "esc", outside.path()).unwrap();
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut h, "esc/planted", "/etc/passwd").unwrap();
        });
        let d = tempfile::tempdir().unwrap();
        assert!(extract(&through_a_link[..], d.path()).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // A file written "through" a link of the archive lands in a real folder: links come last.
        let file_then_link = archive(|b| {
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut h, "esc", outside.path()).unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 1, 0o644),
                "esc/f",
                &b"x"[..],
            )
            .unwrap();
        });
        let d = tempfile::tempdir().unwrap();
        assert!(
            extract(&file_then_link[..], d.path()).is_err(),
            "esc is a folder now"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        // `..` in a raw header (the builder refuses to write one).
        let mut h = header(tar::EntryType::Regular, 1, 0o644);
        h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"../evil\0");
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(&[0; 1024]);
        let d = tempfile::tempdir().unwrap();
        assert!(extract(&raw[..], d.path()).is_err());
        assert!(!d.path().parent().unwrap().join("evil").exists());
    }
}
