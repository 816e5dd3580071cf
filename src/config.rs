//! Daemon configuration. Precedence: command-line flags, then environment variables, then the
//! optional TOML file given with `--config`, then the defaults. `config/peon.example.toml`
//! documents every key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::fsio::atomic;

/// Errors while assembling the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("invalid config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot set up the API key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
}

/// `peon serve` flags. Every flag also reads an environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (lowest precedence after the defaults).
    #[arg(long, env = "PEON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the API listens on [default: 0.0.0.0:5000].
    #[arg(long, env = "PEON_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory: servers/, plans/, backups/, schedules, the key file [default: /home/peon].
    #[arg(long, env = "PEON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Plans directory in PEON's layout [default: <data dir>/plans].
    #[arg(long, env = "PEON_PLANS_DIR")]
    pub plans_dir: Option<PathBuf>,
    /// Where plans are fetched from: a .tar.gz URL, an HTTP base URL, a file:// URL or a path.
    #[arg(long, env = "PEON_PLANS_URL")]
    pub plans_url: Option<String>,
    /// Docker engine address [default: unix:///var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Path of the data dir on the Docker host, when peon itself runs in a container (also read
    /// from HOST_DIR) [default: the data dir].
    #[arg(long, env = "PEON_HOST_DIR")]
    pub host_dir: Option<PathBuf>,
    /// API key (also read from API_KEY). Without one, a key is generated into the data dir.
    #[arg(long, env = "PEON_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Name of this daemon instance; labels every container it creates [default: peon].
    #[arg(long, env = "PEON_INSTANCE")]
    pub instance: Option<String>,
    /// Host address game ports are published on [default: 0.0.0.0].
    #[arg(long, env = "PEON_PUBLISH_ADDRESS")]
    pub publish_address: Option<String>,
    /// Seconds a game server gets to exit after SIGTERM before it is killed [default: 30].
    #[arg(long, env = "PEON_STOP_TIMEOUT")]
    pub stop_timeout: Option<u64>,
    /// Time zone of cron schedules, e.g. Europe/Berlin [default: UTC].
    #[arg(long, env = "PEON_TIMEZONE")]
    pub timezone: Option<String>,
    /// A start timer that fell due while the daemon was down is skipped when it is older than
    /// this many seconds [default: 300].
    #[arg(long, env = "PEON_START_GRACE")]
    pub start_grace: Option<u64>,
    /// Backups kept per server by `save` [default: 10].
    #[arg(long, env = "PEON_BACKUPS_KEEP")]
    pub backups_keep: Option<usize>,
    /// Seconds an updated server must stay up after getting ready before the update is kept;
    /// a crash within them rolls the update back [default: 30].
    #[arg(long, env = "PEON_UPDATE_WATCH")]
    pub update_watch: Option<u64>,
    /// Where backups are kept, `<game>/<name>/<id>.tar.zst` [default: <data dir>/backups].
    #[arg(long, env = "PEON_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Where new backups go unless a server says otherwise: local or s3 [default: local].
    #[arg(long, env = "PEON_BACKUP_TARGET")]
    pub backup_target: Option<String>,
    /// S3-compatible endpoint for backups, e.g. http://127.0.0.1:9000 [default: AWS].
    #[arg(long, env = "PEON_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Bucket for backups; setting it enables the s3 target.
    #[arg(long, env = "PEON_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Region of the bucket [default: us-east-1].
    #[arg(long, env = "PEON_S3_REGION")]
    pub s3_region: Option<String>,
    /// Key prefix for backups inside the bucket [default: none].
    #[arg(long, env = "PEON_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// Access key id for the bucket (a secret: never logged).
    #[arg(long, env = "PEON_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    /// Secret access key for the bucket (a secret: never logged).
    #[arg(long, env = "PEON_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// Address pool (IPv4 CIDR) for per-server networks once the engine's default pools are
    /// used up [default: 10.213.0.0/16].
    #[arg(long, env = "PEON_NETWORK_POOL")]
    pub network_pool: Option<String>,
    /// Wrong API keys from one address within a minute after which each further one is
    /// answered more slowly [default: 5].
    #[arg(long, env = "PEON_AUTH_SLOW_AFTER")]
    pub auth_slow_after: Option<u32>,
    /// Wrong API keys from one address within a minute at which the address is locked out
    /// (429) [default: 20].
    #[arg(long, env = "PEON_AUTH_LOCK_AFTER")]
    pub auth_lock_after: Option<u32>,
    /// Seconds a locked-out address stays locked [default: 300].
    #[arg(long, env = "PEON_AUTH_LOCK_SECS")]
    pub auth_lock_secs: Option<u64>,
    /// A second address serving only `GET /metrics`, without the key (the API also serves
    /// `/metrics` behind the key) [default: none].
    #[arg(long, env = "PEON_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster mode: the Docker engine is a Swarm manager's, and every server is a Swarm
    /// service placed on one of its nodes (see docs/cluster.md) [default: off].
    /// `PEON_CLUSTER` accepts true/false, 1/0, yes/no, on/off (the stack file sets "1").
    #[arg(long, env = "PEON_CLUSTER", num_args = 0..=1, default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub cluster: Option<bool>,
    /// Cluster mode: the port of the peon agent on every node (`<node address>:<port>`)
    /// [default: 8470].
    #[arg(long, env = "PEON_AGENT_PORT")]
    pub agent_port: Option<u16>,
    /// Seconds between two CPU and memory samples of every running game [default: 15].
    #[arg(long, env = "PEON_STATS_INTERVAL")]
    pub stats_interval: Option<u64>,
    /// Delivery attempts of a webhook message before it goes to the dead letters [default: 8].
    #[arg(long, env = "PEON_HOOK_ATTEMPTS")]
    pub hook_attempts: Option<u32>,
    /// Milliseconds before the second attempt of a webhook delivery; doubled after each
    /// failure, at most 10 minutes [default: 2000].
    #[arg(long, env = "PEON_HOOK_BACKOFF_MS")]
    pub hook_backoff_ms: Option<u64>,
    /// Seconds a webhook receiver gets to answer one delivery [default: 10].
    #[arg(long, env = "PEON_HOOK_TIMEOUT")]
    pub hook_timeout: Option<u64>,
}

/// A webhook from the configuration file (`[[hooks]]`); see `docs/configuration.md`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// A name for it (its id), unique among the hooks.
    pub id: String,
    pub url: String,
    /// Event names (`crashed`, `started`, ...); `*` for all.
    pub events: Vec<String>,
    /// HMAC-SHA256 key of the `X-Peon-Signature` header.
    #[serde(default)]
    pub secret: Option<String>,
    /// `generic` or `discord`; by default Discord webhook URLs get Discord embeds.
    #[serde(default)]
    pub format: Option<String>,
}

/// The TOML file: the same keys as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    plans_dir: Option<PathBuf>,
    plans_url: Option<String>,
    docker_host: Option<String>,
    host_dir: Option<PathBuf>,
    api_key: Option<String>,
    instance: Option<String>,
    publish_address: Option<String>,
    stop_timeout: Option<u64>,
    timezone: Option<String>,
    start_grace: Option<u64>,
    backups_keep: Option<usize>,
    update_watch: Option<u64>,
    backup_dir: Option<PathBuf>,
    backup_target: Option<String>,
    s3_endpoint: Option<String>,
    s3_bucket: Option<String>,
    s3_region: Option<String>,
    s3_prefix: Option<String>,
    s3_access_key: Option<String>,
    s3_secret_key: Option<String>,
    network_pool: Option<String>,
    auth_slow_after: Option<u32>,
    auth_lock_after: Option<u32>,
    auth_lock_secs: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    cluster: Option<bool>,
    agent_port: Option<u16>,
    stats_interval: Option<u64>,
    hook_attempts: Option<u32>,
    hook_backoff_ms: Option<u64>,
    hook_timeout: Option<u64>,
    #[serde(default)]
    hooks: Vec<HookConfig>,
}

/// Where the API key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    File(PathBuf),
    Generated(PathBuf),
}

/// The daemon's settings, fully resolved.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub plans_dir: PathBuf,
    pub plans_url: Option<String>,
    pub docker_host: String,
    pub host_dir: PathBuf,
    pub api_key: String,
    pub key_source: KeySource,
    pub instance: String,
    pub publish_address: String,
    pub stop_timeout: Duration,
    pub timezone: chrono_tz::Tz,
    pub start_grace: Duration,
    pub backups_keep: usize,
    pub update_watch: Duration,
    /// Where backups are kept.
    pub backup_dir: PathBuf,
    /// `local` or `s3`: where new backups go unless a server says otherwise.
    pub backup_target: String,
    /// The S3-compatible store, when a bucket is configured.
    pub s3: Option<crate::backup::S3Config>,
    pub network_pool: String,
    /// Wrong keys per address and minute before answers slow down.
    pub auth_slow_after: u32,
    /// Wrong keys per address and minute that lock the address out.
    pub auth_lock_after: u32,
    /// How long a lockout lasts.
    pub auth_lock: Duration,
    /// Where `GET /metrics` is also served without the key.
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster mode: servers are Swarm services on the nodes of the manager's swarm.
    pub cluster: bool,
    /// Cluster mode: the port of every node's peon agent.
    pub agent_port: u16,
    /// Between two stats samples of the running games.
    pub stats_interval: Duration,
    /// Delivery attempts of a webhook message.
    pub hook_attempts: u32,
    /// The wait before the second attempt (doubled after each failure).
    pub hook_backoff: Duration,
    /// How long a receiver gets to answer.
    pub hook_timeout: Duration,
    /// Webhooks of the configuration file (secrets inside: never logged).
    pub hooks: Vec<HookConfig>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("plans_dir", &self.plans_dir)
            .field("plans_url", &self.plans_url)
            .field("docker_host", &self.docker_host)
            .field("host_dir", &self.host_dir)
            .field("api_key", &"<redacted>")
            .field("key_source", &self.key_source)
            .field("instance", &self.instance)
            .field("publish_address", &self.publish_address)
            .field("stop_timeout", &self.stop_timeout)
            .field("timezone", &self.timezone)
            .field("start_grace", &self.start_grace)
            .field("backups_keep", &self.backups_keep)
            .field("update_watch", &self.update_watch)
            .field("backup_dir", &self.backup_dir)
            .field("backup_target", &self.backup_target)
            .field("s3", &self.s3)
            .field("network_pool", &self.network_pool)
            .field("metrics_listen", &self.metrics_listen)
            .field("cluster", &self.cluster)
            .field("agent_port", &self.agent_port)
            .field("stats_interval", &self.stats_interval)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// The name of the generated key file in the data dir.
pub const KEY_FILE: &str = "api.key";
/// The community plans repository's main-branch archive.
pub const DEFAULT_PLANS_URL: &str =
    "https://github.com/the-peon-project/peon-warplans/archive/refs/heads/main.tar.gz";

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Resolves flags (which clap already merged with their environment variables), the PEON
    /// compatibility variables (`API_KEY`, `HOST_DIR`), the config file and the defaults, then
    /// makes sure an API key exists.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("/home/peon"));
        let data_dir = absolute(&data_dir);
        let plans_dir = args
            .plans_dir
            .clone()
            .or(file.plans_dir)
            .map(|p| absolute(&p))
            .unwrap_or_else(|| data_dir.join("plans"));
        let host_dir = args
            .host_dir
            .clone()
            .or_else(|| env_nonempty("HOST_DIR").map(PathBuf::from))
            .or(file.host_dir)
            .unwrap_or_else(|| data_dir.clone());
        let instance = args
            .instance
            .clone()
            .or(file.instance)
            .unwrap_or_else(|| "peon".into());
        if crate::names::game_id(&instance).is_err() {
            return Err(ConfigError::Invalid {
                key: "instance",
                reason: format!("{instance:?}: use lowercase letters, digits, '_' and '-'"),
            });
        }
        let tz_name = args
            .timezone
            .clone()
            .or(file.timezone)
            .unwrap_or_else(|| "UTC".into());
        let timezone = tz_name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| ConfigError::Invalid {
                key: "timezone",
                reason: format!("{tz_name:?} is not an IANA time zone name such as Europe/Berlin"),
            })?;
        let publish_address = args
            .publish_address
            .clone()
            .or(file.publish_address)
            .unwrap_or_else(|| "0.0.0.0".into());
        if publish_address.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "publish_address",
                reason: format!("{publish_address:?} is not an IP address"),
            });
        }
        let network_pool = args
            .network_pool
            .clone()
            .or(file.network_pool)
            .unwrap_or_else(|| "10.213.0.0/16".into());
        let pool_ok = network_pool.split_once('/').is_some_and(|(ip, len)| {
            ip.parse::<std::net::Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 28)
        });
        if !pool_ok {
            return Err(ConfigError::Invalid {
                key: "network_pool",
                reason: format!("{network_pool:?} is not an IPv4 CIDR of /28 or larger"),
            });
        }
        let configured_key = args
            .api_key
            .clone()
            .or_else(|| env_nonempty("API_KEY"))
            .or(file.api_key)
            .filter(|k| !k.is_empty());
        let auth_lock_after = args.auth_lock_after.or(file.auth_lock_after).unwrap_or(20);
        if auth_lock_after == 0 {
            return Err(ConfigError::Invalid {
                key: "auth_lock_after",
                reason: "must be at least 1".into(),
            });
        }
        let s3 = args
            .s3_bucket
            .clone()
            .or(file.s3_bucket)
            .filter(|b| !b.is_empty())
            .map(|bucket| crate::backup::S3Config {
                endpoint: args
                    .s3_endpoint
                    .clone()
                    .or(file.s3_endpoint)
                    .unwrap_or_default(),
                bucket,
                region: args
                    .s3_region
                    .clone()
                    .or(file.s3_region)
                    .unwrap_or_default(),
                access_key: args
                    .s3_access_key
                    .clone()
                    .or(file.s3_access_key)
                    .unwrap_or_default(),
                secret_key: args
                    .s3_secret_key
                    .clone()
                    .or(file.s3_secret_key)
                    .unwrap_or_default(),
                prefix: args
                    .s3_prefix
                    .clone()
                    .or(file.s3_prefix)
                    .unwrap_or_default(),
            });
        let backup_target = args
            .backup_target
            .clone()
            .or(file.backup_target)
            .unwrap_or_else(|| "local".into());
        match backup_target.as_str() {
            "local" => {}
            "s3" if s3.is_some() => {}
            "s3" => {
                return Err(ConfigError::Invalid {
                    key: "backup_target",
                    reason: "s3 needs s3_bucket (and its endpoint and keys)".into(),
                });
            }
            other => {
                return Err(ConfigError::Invalid {
                    key: "backup_target",
                    reason: format!("{other:?}: use local or s3"),
                });
            }
        }
        let (api_key, key_source) = match configured_key {
            Some(k) => (k, KeySource::Configured),
            None => load_or_generate_key(&data_dir)?,
        };
        Ok(Settings {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5000))),
            plans_dir,
            plans_url: args.plans_url.clone().or(file.plans_url),
            docker_host: args
                .docker_host
                .clone()
                .or(file.docker_host)
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            host_dir: absolute(&host_dir),
            api_key,
            key_source,
            instance,
            publish_address,
            stop_timeout: Duration::from_secs(
                args.stop_timeout.or(file.stop_timeout).unwrap_or(30),
            ),
            timezone,
            start_grace: Duration::from_secs(args.start_grace.or(file.start_grace).unwrap_or(300)),
            backups_keep: args.backups_keep.or(file.backups_keep).unwrap_or(10),
            update_watch: Duration::from_secs(
                args.update_watch.or(file.update_watch).unwrap_or(30),
            ),
            backup_target,
            s3,
            backup_dir: absolute(
                &args
                    .backup_dir
                    .clone()
                    .or(file.backup_dir)
                    .unwrap_or_else(|| data_dir.join("backups")),
            ),
            network_pool,
            auth_slow_after: args.auth_slow_after.or(file.auth_slow_after).unwrap_or(5),
            auth_lock_after,
            auth_lock: Duration::from_secs(
                args.auth_lock_secs.or(file.auth_lock_secs).unwrap_or(300),
            ),
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            cluster: args.cluster.or(file.cluster).unwrap_or(false),
            // The agent's default port (`agent::DEFAULT_PORT`; config sits below `agent`).
            agent_port: args.agent_port.or(file.agent_port).unwrap_or(8470),
            stats_interval: Duration::from_secs(
                args.stats_interval
                    .or(file.stats_interval)
                    .unwrap_or(15)
                    .max(1),
            ),
            hook_attempts: args
                .hook_attempts
                .or(file.hook_attempts)
                .unwrap_or(8)
                .max(1),
            hook_backoff: Duration::from_millis(
                args.hook_backoff_ms
                    .or(file.hook_backoff_ms)
                    .unwrap_or(2000),
            ),
            hook_timeout: Duration::from_secs(
                args.hook_timeout.or(file.hook_timeout).unwrap_or(10).max(1),
            ),
            hooks: file.hooks,
            data_dir,
        })
    }
}

fn read_file(p: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
        path: p.to_owned(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: p.to_owned(),
        reason: e.to_string(),
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Reads `<data dir>/api.key`, or creates it (mode 0600) with 32 random bytes in hex.
pub fn load_or_generate_key(data_dir: &Path) -> Result<(String, KeySource), ConfigError> {
    let path = data_dir.join(KEY_FILE);
    let err = |e: std::io::Error| ConfigError::KeyFile {
        path: path.clone(),
        reason: e.to_string(),
    };
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => return Ok((k.trim().to_owned(), KeySource::File(path))),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| err(std::io::Error::other(e.to_string())))?;
    let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    atomic::write_atomic_mode(&path, format!("{key}\n").as_bytes(), 0o600).map_err(err)?;
    Ok((key, KeySource::Generated(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_is_off_unless_asked() {
        let d = tempfile::tempdir().unwrap();
        let base = ServeArgs {
            data_dir: Some(d.path().to_owned()),
            api_key: Some("k".into()),
            ..Default::default()
        };
        assert!(!Settings::resolve(&base).unwrap().cluster);
        let cfg = d.path().join("peon.toml");
        std::fs::write(&cfg, "cluster = true\n").unwrap();
        let from_file = ServeArgs {
            config: Some(cfg),
            ..base.clone()
        };
        assert!(Settings::resolve(&from_file).unwrap().cluster);
        let flag_off = ServeArgs {
            cluster: Some(false),
            ..from_file
        };
        assert!(!Settings::resolve(&flag_off).unwrap().cluster);
        let s = Settings::resolve(&base).unwrap();
        assert_eq!(s.agent_port, crate::agent::DEFAULT_PORT);
    }

    #[test]
    fn peon_cluster_takes_1_as_the_stack_file_sets_it() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        for (v, want) in [("1", true), ("true", true), ("0", false), ("false", false)] {
            let c = Cli::try_parse_from(["peon", &format!("--cluster={v}")]).unwrap();
            assert_eq!(c.serve.cluster, Some(want), "{v}");
        }
        let c = Cli::try_parse_from(["peon", "--cluster"]).unwrap();
        assert_eq!(c.serve.cluster, Some(true));
        let c = Cli::try_parse_from(["peon", "--agent-port", "9000"]).unwrap();
        assert_eq!(c.serve.agent_port, Some(9000));
    }

    #[test]
    fn generated_key_is_stored_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (k1, s1) = load_or_generate_key(d.path()).unwrap();
        assert!(matches!(s1, KeySource::Generated(_)));
        assert_eq!(k1.len(), 64);
        let mode = std::fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (k2, s2) = load_or_generate_key(d.path()).unwrap();
        assert_eq!(k1, k2);
        assert!(matches!(s2, KeySource::File(_)));
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("peon.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {:?}\nlisten = \"127.0.0.1:7000\"\napi_key = \"from-file\"\nstop_timeout = 5\n",
                d.path()
            ),
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(cfg.clone()),
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 7001);
        assert_eq!(s.api_key, "from-file");
        assert_eq!(s.stop_timeout, Duration::from_secs(5));
        assert_eq!(s.plans_dir, d.path().join("plans"));
        assert!(!format!("{s:?}").contains("from-file"));

        std::fs::write(&cfg, "nonsense_key = 1\n").unwrap();
        let err = Settings::resolve(&args).unwrap_err().to_string();
        assert!(err.contains("nonsense_key"), "{err}");
    }

    #[test]
    fn hooks_and_metrics_settings_come_from_the_file() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("peon.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = {:?}\napi_key = \"k\"\nmetrics_listen = \"127.0.0.1:9105\"\nhook_attempts = 3\n\n[[hooks]]\nid = \"ops\"\nurl = \"https://ops.example.net/x\"\nevents = [\"crashed\"]\nsecret = \"hush\"\n",
                d.path()
            ),
        )
        .unwrap();
        let s = Settings::resolve(&ServeArgs {
            config: Some(cfg),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9105".parse().unwrap()));
        assert_eq!(s.hook_attempts, 3);
        assert_eq!(s.stats_interval, Duration::from_secs(15));
        assert_eq!(s.hooks.len(), 1);
        assert_eq!(s.hooks[0].secret.as_deref(), Some("hush"));
        assert!(!format!("{s:?}").contains("hush"));
        // The example file parses.
        let example = include_str!("../config/peon.example.toml");
        toml::from_str::<FileConfig>(example).unwrap();
    }
}
