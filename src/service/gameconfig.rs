//! What the game writes in its `config/` folder (`state`, `port`, `server_name`, ...), read into
//! the live model when the files change, so that requests never read the disk. Secrets are
//! masked.

use std::path::Path;

use serde_json::{Map, Value};

use crate::live::ServerHandle;

/// At most this many files are shown.
const MAX_FILES: usize = 64;
/// A file larger than this is not shown.
const MAX_BYTES: u64 = 4096;

/// Names of `config/` files whose content is never shown.
fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password", "passwd", "secret", "token", "apikey", "api_key", "rcon",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Names, sizes and modification times (ns) of the files in `config/`, sorted.
fn signature(dir: &Path) -> Vec<(String, u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir.join("config")) else {
        return Vec::new();
    };
    let mut sig: Vec<(String, u64, i64)> = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if !m.is_file() {
                return None;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") {
                return None;
            }
            Some((name, m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec()))
        })
        .collect();
    sig.sort();
    sig.truncate(MAX_FILES);
    sig
}

/// Reads the files named in `sig`, masking secrets.
fn read(dir: &Path, sig: &[(String, u64, i64)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, len, _) in sig {
        let value = if is_secret(name) {
            "********".to_owned()
        } else if *len > MAX_BYTES {
            "(too large to show)".to_owned()
        } else {
            match std::fs::read(dir.join("config").join(name)) {
                Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
                Err(_) => continue,
            }
        };
        out.insert(name.clone(), Value::String(value));
    }
    out
}

/// Refreshes the handle's copy of `config/` when the files changed (blocking: call it off the
/// async workers). Returns whether it changed.
pub fn refresh(h: &ServerHandle, dir: &Path) -> bool {
    let sig = signature(dir);
    if h.state().config_sig == sig {
        return false;
    }
    let config = read(dir, &sig);
    let mut s = h.state();
    s.config = config;
    s.config_sig = sig;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_changes_seen() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("config")).unwrap();
        std::fs::write(d.path().join("config/password"), "hunter2\n").unwrap();
        std::fs::write(d.path().join("config/ADMIN_PASSWORD"), "x").unwrap();
        std::fs::write(d.path().join("config/state"), "STARTED\n").unwrap();
        let sig = signature(d.path());
        let m = read(d.path(), &sig);
        assert_eq!(m["state"], "STARTED");
        assert_eq!(m["password"], "********");
        assert_eq!(m["ADMIN_PASSWORD"], "********");
        std::fs::write(d.path().join("config/state"), "OFFLINE\n").unwrap();
        assert_ne!(signature(d.path()), sig);
    }
}
