//! Free space of a filesystem and the size of a tree, for the check before a backup or restore.

use std::io;
use std::path::Path;

use super::glob::Globs;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The total size of the regular files under `dir`, leaving out what `exclude` names.
pub fn tree_bytes(dir: &Path, exclude: &Globs) -> io::Result<u64> {
    let mut total = 0;
    walk(dir, "", exclude, &mut |_, _, md| {
        if md.is_file() {
            total += md.len();
        }
        Ok(())
    })?;
    Ok(total)
}

/// Calls `f(path, rel, metadata)` for every entry under `dir` (sorted, depth first, not
/// following symlinks), skipping excluded entries and what is under them. An entry that
/// vanishes while the walk runs (a temporary file renamed away) is skipped.
pub fn walk(
    dir: &Path,
    prefix: &str,
    exclude: &Globs,
    f: &mut dyn FnMut(&Path, &str, &std::fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !prefix.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if exclude.excludes(&rel) {
            continue;
        }
        let path = e.path();
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        f(&path, &rel, &md)?;
        if md.is_dir() {
            walk(&path, &rel, exclude, f)?;
        }
    }
    Ok(())
}
