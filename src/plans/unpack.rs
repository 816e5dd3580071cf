//! Safe unpacking of a gzipped plans archive. Only regular files and folders are written, each
//! at a checked relative path inside the destination: absolute paths, `..`, symlinks, hard links
//! and device files are refused, and the total size and entry count are bounded.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Unpacked bytes allowed (against decompression bombs).
pub const MAX_UNPACKED: u64 = 512 * 1024 * 1024;
/// Entries allowed.
pub const MAX_ENTRIES: usize = 100_000;

/// Unpacks `gz` into `dest` (which must exist and be empty) and returns the plans root: the
/// archive's single top folder when it has one (GitHub archives do), else `dest`.
/// The error says which entry was refused and why.
pub fn unpack_tar_gz(gz: &[u8], dest: &Path) -> Result<PathBuf, String> {
    unpack_with_limits(gz, dest, MAX_UNPACKED, MAX_ENTRIES)
}

pub(crate) fn unpack_with_limits(
    gz: &[u8],
    dest: &Path,
    max_bytes: u64,
    max_entries: usize,
) -> Result<PathBuf, String> {
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    let mut total: u64 = 0;
    let mut count = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the archive is damaged: {e}"))?;
        count += 1;
        if count > max_entries {
            return Err(format!("the archive has more than {max_entries} entries"));
        }
        let kind = entry.header().entry_type();
        // Metadata records (pax headers, GNU long names) carry no file.
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| format!("an entry has an unreadable path: {e}"))?
            .into_owned();
        let shown = raw.display().to_string();
        let rel = safe_relative(&raw).map_err(|why| format!("entry {shown:?} {why}: refused"))?;
        let Some(rel) = rel else { continue };
        let target = dest.join(&rel);
        match kind {
            EntryType::Directory => {
                fs::create_dir_all(&target).map_err(|e| format!("cannot create {shown}: {e}"))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().unwrap_or(0);
                total = total.saturating_add(size);
                if total > max_bytes {
                    return Err(format!(
                        "the archive unpacks to more than {max_bytes} bytes"
                    ));
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create the folder of {shown}: {e}"))?;
                }
                let exec = entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false);
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if exec { 0o755 } else { 0o644 })
                    .open(&target)
                    .map_err(|e| format!("cannot write {shown}: {e}"))?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut f)
                    .map_err(|e| format!("cannot unpack {shown}: {e}"))?;
                if copied != size {
                    return Err(format!("entry {shown:?} is truncated"));
                }
            }
            EntryType::Symlink => {
                return Err(format!("entry {shown:?} is a symbolic link: refused"));
            }
            EntryType::Link => return Err(format!("entry {shown:?} is a hard link: refused")),
            other => {
                return Err(format!(
                    "entry {shown:?} is a special file ({other:?}): refused"
                ));
            }
        }
    }
    single_top_folder(dest).map_err(|e| format!("cannot read the unpacked archive: {e}"))
}

/// A path made only of normal components (`.` skipped). `None` for the archive root itself.
fn safe_relative(p: &Path) -> Result<Option<PathBuf>, &'static str> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("leaves the archive with '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// The plans root of an unpacked archive: its only entry when that is a folder.
fn single_top_folder(dest: &Path) -> io::Result<PathBuf> {
    let mut entries = fs::read_dir(dest)?.collect::<io::Result<Vec<_>>>()?;
    if entries.len() == 1 && entries[0].file_type()?.is_dir() {
        if let Some(e) = entries.pop() {
            return Ok(e.path());
        }
    }
    Ok(dest.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a .tar.gz from (path, kind, content) with raw header paths, so that tests can
    /// produce archives `tar::Builder` would refuse to write.
    /// An archive entry: path, kind, content.
    pub type Entry<'a> = (&'a str, EntryType, &'a [u8]);

    pub fn targz(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut tar = Vec::new();
        for (path, kind, content) in entries {
            let mut h = tar::Header::new_old();
            {
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
            }
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(if *kind == EntryType::Regular {
                content.len() as u64
            } else {
                0
            });
            if matches!(kind, EntryType::Symlink | EntryType::Link) {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            tar.extend_from_slice(h.as_bytes());
            if *kind == EntryType::Regular {
                tar.extend_from_slice(content);
                let pad = (512 - content.len() % 512) % 512;
                tar.extend(std::iter::repeat_n(0u8, pad));
            }
        }
        tar.extend(std::iter::repeat_n(0u8, 1024));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn strips_the_single_top_folder() {
        let d = tempfile::tempdir().unwrap();
        let gz = targz(&[
            ("repo-main/", EntryType::Directory, b""),
            ("repo-main/plans.json", EntryType::Regular, b"[]"),
            ("repo-main/g/plan.json", EntryType::Regular, b"{}"),
        ]);
        let root = unpack_tar_gz(&gz, d.path()).unwrap();
        assert_eq!(root, d.path().join("repo-main"));
        assert_eq!(fs::read(root.join("g/plan.json")).unwrap(), b"{}");
    }

    #[test]
    fn refuses_escapes_links_and_bombs() {
        let cases: [(&[Entry<'_>], &str); 5] = [
            (&[("../evil", EntryType::Regular, b"x")], "'..'"),
            (&[("a/../../evil", EntryType::Regular, b"x")], "'..'"),
            (&[("/tmp/evil", EntryType::Regular, b"x")], "absolute"),
            (&[("r/link", EntryType::Symlink, b"")], "symbolic link"),
            (&[("r/hard", EntryType::Link, b"")], "hard link"),
        ];
        for (entries, why) in cases {
            let d = tempfile::tempdir().unwrap();
            let err = unpack_tar_gz(&targz(entries), d.path()).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        let d = tempfile::tempdir().unwrap();
        let gz = targz(&[("r/big", EntryType::Regular, &[7u8; 2048])]);
        let err = unpack_with_limits(&gz, d.path(), 1024, 10).unwrap_err();
        assert!(err.contains("more than 1024 bytes"), "{err}");
        assert!(unpack_tar_gz(b"not gzip", d.path()).is_err());
    }
}
