//! The `peon` client commands: they talk to a running daemon over its REST API.
//!
//! Exit codes (see `docs/cli.md`): 0 success, 1 the daemon answered with an error (its `info`
//! is printed), 2 usage error (clap's), 3 the daemon could not be reached or did not answer
//! like peon, 4 a local error (a file that cannot be written, an unreadable key file).

mod args;
mod backups;
mod client;
mod commands;
mod conn;
mod console;
mod events;
mod exits;
mod frames;
mod hooks;
mod jobs;
mod logs;
mod nodes;
mod output;
pub mod preflight;
mod sse;

use std::process::ExitCode;

pub use args::{ClientCommand, Common, PlanCmd, ScheduleCmd, ServerCmd};
pub use client::Client;
pub use conn::{Connection, resolve};

/// Errors of a client command; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// The daemon answered with an error.
    #[error("{info} (HTTP {status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Api {
        status: u16,
        info: String,
        code: Option<String>,
    },
    /// The daemon could not be reached, or what answered is not peon.
    #[error("{0}")]
    Connect(String),
    /// Something on this machine failed (a file, the key file).
    #[error("{0}")]
    Local(String),
}

/// Exit code: the daemon answered with an error.
pub const EXIT_API: u8 = 1;
/// Exit code: usage error (the same code clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the daemon could not be reached.
pub const EXIT_CONNECT: u8 = 3;
/// Exit code: a local error.
pub const EXIT_LOCAL: u8 = 4;

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } => EXIT_API,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Connect(_) => EXIT_CONNECT,
            CliError::Local(_) => EXIT_LOCAL,
        }
    }
}

/// Runs one client command and turns its outcome into an exit code, printing errors on stderr.
pub async fn run(cmd: ClientCommand) -> ExitCode {
    match commands::dispatch(cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("peon: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
