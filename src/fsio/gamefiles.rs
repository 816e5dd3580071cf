//! What peon reads of a game's directory without the game's help: the files the game writes in
//! its `config/` folder (`state`, `port`, `server_name`, ..., secrets masked) and the
//! directory's disk use. Read here on one host, and by a node's agent in cluster mode (the
//! [`DirFacts`] it answers). These calls block.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Names, sizes and modification times (ns) of the files in `config/`, sorted.
pub type ConfigSig = Vec<(String, u64, i64)>;

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
pub fn signature(dir: &Path) -> ConfigSig {
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
pub fn read(dir: &Path, sig: &[(String, u64, i64)]) -> Map<String, Value> {
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

/// What a node's agent reports of a server's directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirFacts {
    /// Bytes of the whole directory.
    pub bytes: u64,
    /// Bytes of its `data/` folder (the game's install).
    pub data_bytes: u64,
    /// The signature of `config/` ([`signature`]).
    pub config_sig: ConfigSig,
    /// Its files' contents ([`read`]).
    pub config: Map<String, Value>,
}

/// The facts of the server directory `dir`.
pub fn facts(dir: &Path) -> DirFacts {
    let config_sig = signature(dir);
    DirFacts {
        bytes: super::fsutil::tree_size(dir),
        data_bytes: super::fsutil::tree_size(&dir.join("data")),
        config: read(dir, &config_sig),
        config_sig,
    }
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
