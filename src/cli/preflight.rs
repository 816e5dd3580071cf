//! `peon preflight`: the container entrypoint's checks before `peon serve` (PEON's
//! `init/peon.orc`): the Docker engine answers, the data dir is writable, and the data dir's
//! path on the host is known when peon runs in a container. The image has no docker CLI, so
//! the engine is asked through peon's own Docker client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::docker::Engine;

/// `peon preflight` options; the same environment variables as `peon serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct PreflightArgs {
    /// Docker engine address.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,
    /// The data dir.
    #[arg(long, env = "PEON_DATA_DIR", default_value = "/home/peon")]
    pub data_dir: PathBuf,
    /// The data dir's path on the Docker host (also read from HOST_DIR).
    #[arg(long, env = "PEON_HOST_DIR")]
    pub host_dir: Option<PathBuf>,
    /// peon runs in a container: game containers' bind mounts need the host path.
    #[arg(long)]
    pub in_container: bool,
    /// Seconds to wait for the engine to answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// Runs every check, printing one line each; fails when any fails.
pub async fn run(args: PreflightArgs) -> ExitCode {
    let mut failed = 0;
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(m) => println!("preflight: ok   {name}: {m}"),
        Err(m) => {
            failed += 1;
            eprintln!("preflight: FAIL {name}: {m}");
        }
    };
    report("docker", docker(&args.docker_host, args.timeout).await);
    report("data dir", data_dir(&args.data_dir));
    report("host dir", host_dir(&args));
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn socket_path(host: &str) -> Option<&str> {
    if let Some(p) = host.strip_prefix("unix://") {
        Some(p)
    } else if host.starts_with('/') {
        Some(host)
    } else {
        None
    }
}

async fn docker(host: &str, timeout: u64) -> Result<String, String> {
    if let Some(p) = socket_path(host)
        && !Path::new(p).exists()
    {
        return Err(format!(
            "the Docker socket {p} does not exist: mount the host's socket, e.g. \
             `-v /var/run/docker.sock:{p}` (compose: DOCKER_SOCKET_PATH)"
        ));
    }
    let engine = Engine::new(host);
    match tokio::time::timeout(Duration::from_secs(timeout.max(1)), engine.info()).await {
        Ok(Ok(i)) => Ok(format!(
            "engine {} (API {}) at {host}",
            i.version, i.api_version
        )),
        Ok(Err(e)) => Err(format!(
            "{e} (is the socket mounted, and may this user use it? run as root or add the \
             socket's group)"
        )),
        Err(_) => Err(format!(
            "the engine at {host} did not answer within {timeout}s"
        )),
    }
}

fn data_dir(dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".preflight-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| {
        format!(
            "{} is not writable by uid {}: {e} (mount a volume there, or fix its owner)",
            dir.display(),
            current_uid()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(format!("{} is writable", dir.display()))
}

fn current_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

fn host_dir(args: &PreflightArgs) -> Result<String, String> {
    let host = args.host_dir.clone().or_else(|| {
        std::env::var("HOST_DIR")
            .ok()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match host {
        Some(h) if h.is_absolute() => Ok(format!(
            "game servers' files are bind-mounted from {} on the host",
            h.display()
        )),
        Some(h) => Err(format!(
            "HOST_DIR/PEON_HOST_DIR {:?} must be an absolute path on the Docker host",
            h.display()
        )),
        None if args.in_container => Err(format!(
            "peon runs in a container, so game containers need the host path of {}: set \
             HOST_DIR (or PEON_HOST_DIR) to the host folder mounted there",
            args.data_dir.display()
        )),
        None => Ok(format!(
            "not in a container: the data dir {} is the host path",
            args.data_dir.display()
        )),
    }
}
