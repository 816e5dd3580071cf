//! The `peon` binary: the daemon (`peon serve`) and its tools.

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
    /// Tools for plan authors.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
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
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// API latency with 1, 10 and 100 servers against the engine's own list call, and memory.
    Api(peon::bench::api::ApiBench),
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

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Lint a plans repository (plans.json and <game>/plan.json folders): one line per problem
    /// with the plan and the field, then a summary. Exits with 1 when there are errors.
    Check {
        /// The plans repository.
        dir: std::path::PathBuf,
    },
}

/// `peon plan check <dir>`.
fn plan_check(dir: &std::path::Path) -> ExitCode {
    let started = std::time::Instant::now();
    match peon::plans::check::check_dir(dir) {
        Ok(report) => {
            for f in &report.findings {
                println!("{f}");
            }
            println!(
                "{} ({} ms)",
                report.summary(),
                started.elapsed().as_millis()
            );
            if report.errors() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("peon: cannot read the plans in {}: {e}", dir.display());
            ExitCode::from(2)
        }
    }
}

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "warn"
    } else if std::env::var("DEV_MODE").is_ok_and(|v| v == "enabled") {
        "debug"
    } else {
        "info"
    };
    // tokio-cron-scheduler logs every job it adds at info.
    let default = format!("{default},tokio_cron_scheduler=warn");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Plan {
        command: PlanCommand::Check { dir },
    } = &cli.command
    {
        return plan_check(dir);
    }
    // Benchmarks print numbers; their log would drown them.
    init_logging(matches!(cli.command, Command::Bench(_)));
    peon::http::init_tls();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let settings = Settings::resolve(&args).map_err(|e| e.to_string())?;
                let listener = tokio::net::TcpListener::bind(settings.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
                peon::daemon::launch(settings, listener, peon::daemon::shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())
            }
            Command::Bench(Bench::Api(opts)) => peon::bench::api::run(opts).await,
            Command::Plan { .. } => Ok(()),
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
