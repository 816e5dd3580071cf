//! What the game writes in its `config/` folder (`state`, `port`, `server_name`, ...), read into
//! the live model when the files change, so that requests never read the disk. Secrets are
//! masked.

use std::path::Path;

use serde_json::Map;
use serde_json::Value;

use crate::fsio::gamefiles::{ConfigSig, read, signature};
use crate::live::ServerHandle;

/// Refreshes the handle's copy of `config/` when the files changed (blocking: call it off the
/// async workers). Returns whether it changed.
pub fn refresh(h: &ServerHandle, dir: &Path) -> bool {
    let sig = signature(dir);
    if h.state().config_sig == sig {
        return false;
    }
    let config = read(dir, &sig);
    apply(h, sig, config)
}

/// Puts a read of `config/` (made here or by the node's agent) into the handle. Returns whether
/// it changed.
pub fn apply(h: &ServerHandle, sig: ConfigSig, config: Map<String, Value>) -> bool {
    let mut s = h.state();
    if s.config_sig == sig {
        return false;
    }
    s.config = config;
    s.config_sig = sig;
    true
}
