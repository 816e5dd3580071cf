//! Where the daemon is and which key to send. In order: `--url`/`--api-key` (or `PEON_URL`/
//! `PEON_API_KEY`), then the daemon's own settings as it would read them — `API_KEY`,
//! `PEON_LISTEN`, the TOML file named by `PEON_CONFIG`, and the key file `<data dir>/api.key`
//! with the data dir from `PEON_DATA_DIR` (default `/home/peon`) — so `docker exec peon peon
//! servers` works inside the daemon's container without any option.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CliError, Common};
use crate::config::KEY_FILE;

/// The resolved daemon address and key.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `http(s)://host:port`, without a trailing slash or API base path.
    pub url: String,
    pub key: Option<String>,
    /// Why there is no key, to explain a 401.
    pub key_note: Option<String>,
}

/// The part of the daemon's TOML file the client reads; other keys are ignored.
#[derive(Debug, Default, Deserialize)]
struct DaemonFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    api_key: Option<String>,
}

/// Reads one environment variable, treating an empty value as unset.
fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

/// Resolves the connection from the options and the environment.
pub fn resolve(common: &Common) -> Result<Connection, CliError> {
    let file = match env("PEON_CONFIG") {
        Some(p) => read_daemon_file(Path::new(&p))?,
        None => DaemonFile::default(),
    };
    let url = match common.url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(u) => normalize_url(u)?,
        None => {
            let listen = match env("PEON_LISTEN") {
                Some(l) => Some(l.parse::<SocketAddr>().map_err(|e| {
                    CliError::Usage(format!("PEON_LISTEN={l:?} is not an address: {e}"))
                })?),
                None => file.listen,
            };
            listen.map_or_else(|| "http://127.0.0.1:5000".to_owned(), url_for_listen)
        }
    };
    let mut key_note = None;
    let key = match common
        .api_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| env("API_KEY"))
        .or(file.api_key.filter(|k| !k.is_empty()))
    {
        Some(k) => Some(k),
        None => {
            let dir = env("PEON_DATA_DIR")
                .map(PathBuf::from)
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("/home/peon"));
            let path = dir.join(KEY_FILE);
            match std::fs::read_to_string(&path) {
                Ok(k) if !k.trim().is_empty() => Some(k.trim().to_owned()),
                Ok(_) => {
                    key_note = Some(format!("{} is empty", path.display()));
                    None
                }
                Err(e) => {
                    key_note = Some(format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
    };
    Ok(Connection { url, key, key_note })
}

fn read_daemon_file(p: &Path) -> Result<DaemonFile, CliError> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        CliError::Local(format!(
            "cannot read the config file {} (PEON_CONFIG): {e}",
            p.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        CliError::Local(format!(
            "invalid config file {} (PEON_CONFIG): {e}",
            p.display()
        ))
    })
}

/// The URL a local client uses to reach a daemon listening on `addr`.
fn url_for_listen(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Checks the scheme and strips a trailing slash or API base path.
fn normalize_url(u: &str) -> Result<String, CliError> {
    let u = u.trim();
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(CliError::Usage(format!(
            "--url {u:?} must start with http:// or https://"
        )));
    }
    let mut s = u.trim_end_matches('/').to_owned();
    for base in crate::api::BASES {
        if let Some(stripped) = s.strip_suffix(base) {
            s = stripped.to_owned();
            break;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_become_local_urls() {
        assert_eq!(
            url_for_listen("0.0.0.0:5000".parse().unwrap()),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            url_for_listen("[::]:5001".parse().unwrap()),
            "http://[::1]:5001"
        );
        assert_eq!(
            url_for_listen("127.0.0.2:7000".parse().unwrap()),
            "http://127.0.0.2:7000"
        );
    }

    #[test]
    fn urls_are_normalized_and_checked() {
        assert_eq!(
            normalize_url("http://h:5000/api/v1/").unwrap(),
            "http://h:5000"
        );
        assert_eq!(normalize_url("https://h/api/1.0").unwrap(), "https://h");
        assert_eq!(normalize_url("http://h:5000").unwrap(), "http://h:5000");
        assert!(matches!(normalize_url("h:5000"), Err(CliError::Usage(_))));
    }
}
