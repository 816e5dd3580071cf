//! The `peon` binary: the daemon (`peon serve`), its client commands (`peon servers`, `peon
//! server ...`; see `docs/cli.md`) and its tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use peon::config::{ServeArgs, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "peon",
    version,
    about = "A game-server orchestrator compatible with PEON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(Box<ServeArgs>),
    /// Run a node's agent (cluster mode): node-local work for the manager, signed with the
    /// cluster secret.
    Agent(Box<peon::agent::server::AgentArgs>),
    /// Build the busybox stand-in game image used by the bundled demo plan and the tests.
    DemoImage {
        /// Image tag to build.
        #[arg(long, default_value = "peon/demo-game:latest")]
        tag: String,
        /// The static busybox binary to put in the image.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: std::path::PathBuf,
        /// Docker engine address.
        #[arg(
            long,
            env = "DOCKER_HOST",
            default_value = "unix:///var/run/docker.sock"
        )]
        docker_host: String,
    },
    /// Benchmarks that print numbers.
    #[command(subcommand)]
    Bench(Bench),
    /// Check that the daemon can run here: the Docker engine answers, the data dir is
    /// writable, the host path of the data dir is known (the container's entrypoint runs this).
    Preflight(peon::cli::preflight::PreflightArgs),
    /// Print the API's OpenAPI 3 document (what the daemon serves at /api/1.0/openapi.json).
    Openapi {
        /// Write it to this file instead (e.g. docs/openapi.json).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Client(peon::cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// API latency with 1, 10 and 100 servers against the engine's own list call, and memory.
    Api(peon::bench::api::ApiBench),
    /// The figures that matter in use, each beside its goal and the engine's own: list latency
    /// at 100 servers, requests/s under wrk, console round trip, a 20,000-line burst, memory.
    Live(peon::bench::live::LiveBench),
    /// The cost of one API key check with 1,000 named keys, beside the old single-key check.
    Keys(peon::bench::keys::KeysBench),
    /// `GET /metrics` with 100 running servers, beside `GET /servers` (goal: under 10 ms).
    Metrics(peon::bench::metrics::MetricsBench),
    /// Player queries of many servers beside GET /servers latency, with and without the poller.
    Players(peon::bench::players::PlayersBench),
    /// Wake on connect: the game's start time after a connection beside a plain start.
    Wake(peon::bench::players::WakeBench),
    /// Backup and restore of a 1 GiB world through the daemon beside `tar | zstd -3` on the
    /// same files, with the daemon's memory while it streams.
    Backup(peon::bench::backup::BackupBench),
    /// A server directory copied between two agents (a move's copy) beside `tar | zstd -3 |
    /// zstd -d | tar -x` on the same files.
    Agent(peon::bench::agent::AgentBench),
    /// Cluster mode (root): `GET /servers` across a 3-node swarm started on this machine with
    /// 60 running servers, and the time to place a new server, beside one host.
    Cluster(peon::bench::cluster::ClusterBench),
    /// The scheduler's firing delay (median, worst) for many timers due at the same second,
    /// with a runner that does nothing (no Docker).
    Schedule {
        /// How many timers (one per server).
        #[arg(long, default_value_t = 1000)]
        timers: usize,
        /// Seconds between setting the last timer and their due time.
        #[arg(long, default_value_t = 2)]
        lead: u64,
    },
}

/// Logs to stderr, filtered by `RUST_LOG` (`level` and `target=level` directives, e.g.
/// `info,peon=debug`). A [`Targets`](tracing_subscriber::filter::Targets) filter rather than
/// `EnvFilter`: the same directives without span and field matching, and without linking a
/// regex engine into the daemon.
fn init_logging(quiet: bool) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = if quiet {
        "warn"
    } else if std::env::var("DEV_MODE").is_ok_and(|v| v == "enabled") {
        "debug"
    } else {
        "info"
    };
    // tokio-cron-scheduler logs every job it adds at info.
    let default = format!("{default},tokio_cron_scheduler=warn");
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .or_else(|| default.parse::<Targets>().ok())
        .unwrap_or_default();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                // Plain text where stderr is not a terminal (a container's log, a file).
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

/// At most two glibc malloc arenas. By default glibc gives every thread that allocates its own
/// arena (up to 8 per core), and each keeps the memory it once held: after a burst of requests
/// the daemon with 16 worker threads stayed at 36 MB RSS, with two arenas at 22 MB.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; it runs first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The async runtime: 2 to 4 worker threads whatever the core count (the daemon waits on the
/// engine and the network; every worker costs a stack and, under load, retained heap) and a
/// bounded blocking pool (file I/O, archives).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(2, 4))
        .max_blocking_threads(64)
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    // Client commands and preflight print their own output; benchmarks print numbers and log
    // only warnings; the daemon and demo-image log.
    match cli.command {
        Command::Serve(_) | Command::Agent(_) | Command::DemoImage { .. } => init_logging(false),
        Command::Bench(_) => init_logging(true),
        _ => {}
    }
    peon::http::init_tls();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Client(c) => return rt.block_on(peon::cli::run(c)),
        Command::Preflight(a) => return rt.block_on(peon::cli::preflight::run(a)),
        Command::Openapi { output } => {
            let doc = peon::api::openapi::document() + "\n";
            return match output {
                None => {
                    print!("{doc}");
                    ExitCode::SUCCESS
                }
                Some(p) => match peon::fsio::atomic::write_atomic(&p, doc.as_bytes()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("peon: cannot write {}: {e}", p.display());
                        ExitCode::from(peon::cli::EXIT_LOCAL)
                    }
                },
            };
        }
        other => other,
    };
    let result: Result<(), String> = rt.block_on(async {
        match command {
            Command::Serve(args) => {
                let settings = Settings::resolve(&args).map_err(|e| e.to_string())?;
                let listener = tokio::net::TcpListener::bind(settings.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
                peon::daemon::launch(settings, listener, peon::daemon::shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Agent(args) => {
                let secret = args.secret()?;
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
                let config = peon::agent::server::AgentConfig {
                    engine: std::sync::Arc::new(peon::docker::Engine::new(&args.docker_host)),
                    data: peon::store::DataDir::new(&args.data_dir),
                    secret,
                    instance: args.instance.clone(),
                };
                peon::agent::server::launch(config, listener, peon::daemon::shutdown_signal())
                    .await
                    .map_err(|e| format!("the agent failed: {e}"))
            }
            Command::Bench(Bench::Api(opts)) => peon::bench::api::run(opts).await,
            Command::Bench(Bench::Live(opts)) => peon::bench::live::run(opts).await,
            Command::Bench(Bench::Keys(opts)) => peon::bench::keys::run(opts),
            Command::Bench(Bench::Metrics(opts)) => peon::bench::metrics::run(opts).await,
            Command::Bench(Bench::Players(opts)) => peon::bench::players::run(opts).await,
            Command::Bench(Bench::Wake(opts)) => peon::bench::players::run_wake(opts).await,
            Command::Bench(Bench::Backup(opts)) => peon::bench::backup::run(opts).await,
            Command::Bench(Bench::Agent(opts)) => peon::bench::agent::run(opts).await,
            Command::Bench(Bench::Cluster(opts)) => peon::bench::cluster::run(opts).await,
            Command::DemoImage {
                tag,
                busybox,
                docker_host,
            } => {
                let bin = std::fs::read(&busybox).map_err(|e| {
                    format!(
                        "cannot read {}: {e} (install Debian's busybox-static)",
                        busybox.display()
                    )
                })?;
                let ctx = peon::docker::busybox_game_context(&bin).map_err(|e| e.to_string())?;
                let engine = peon::docker::Engine::new(&docker_host);
                engine
                    .build_image(&tag, ctx)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("built {tag}");
                Ok(())
            }
            Command::Bench(Bench::Schedule { timers, lead }) => {
                let report =
                    peon::schedule::bench::schedule(timers, std::time::Duration::from_secs(lead))
                        .await
                        .map_err(|e| e.to_string())?;
                println!("{report}");
                Ok(())
            }
            Command::Preflight(_) | Command::Client(_) | Command::Openapi { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peon: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks: no two subcommands or options share a name (the client
    /// commands are flattened beside `serve`).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
