//! Exits of a game: each is classified (who or what ended it) and recorded with its exit code
//! and last lines of output. The last [`KEEP`] are kept per server.

use serde::{Deserialize, Serialize};

/// How many exits are kept per server.
pub const KEEP: usize = 20;
/// How many output lines an exit record keeps.
pub const LAST_LINES: usize = 20;

/// Why a game exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitClass {
    /// peon was asked to stop or kill it.
    OperatorStop,
    /// It exited with code 0 and nobody asked (a `/stop` in the game).
    InGameStop,
    /// A non-zero exit, or killed from outside.
    Crash,
    /// The kernel's OOM killer ended it.
    OutOfMemory,
    /// peon asked it to stop and it had to be killed after the grace period.
    KilledAfterGrace,
    /// peon stopped it after it had no players for the server's `idle_stop` time.
    IdleStop,
}

impl ExitClass {
    pub const ALL: [ExitClass; 6] = [
        ExitClass::OperatorStop,
        ExitClass::InGameStop,
        ExitClass::Crash,
        ExitClass::OutOfMemory,
        ExitClass::KilledAfterGrace,
        ExitClass::IdleStop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExitClass::OperatorStop => "operator_stop",
            ExitClass::InGameStop => "in_game_stop",
            ExitClass::Crash => "crash",
            ExitClass::OutOfMemory => "out_of_memory",
            ExitClass::KilledAfterGrace => "killed_after_grace",
            ExitClass::IdleStop => "idle_stop",
        }
    }
}

/// What peon expected when the game exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Nothing: the exit came by itself.
    Nothing,
    /// An operator's stop (commands, signal, then kill after the grace period).
    Stop,
    /// An operator's kill.
    Kill,
    /// peon's stop of an idle server (a stop in every other way).
    IdleStop,
}

/// One exit of a game.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExitRecord {
    /// When it exited (RFC 3339).
    pub time: String,
    pub exit_code: i64,
    pub class: ExitClass,
    /// The last lines of output before the exit.
    pub last_lines: Vec<String>,
    /// When the run that ended had started (RFC 3339), to record each run once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_started: Option<String>,
}

/// SIGKILL's exit status (128 + 9).
const KILLED: i64 = 137;

/// Classifies an exit from its code, the engine's OOM flag and what peon expected.
pub fn classify(exit_code: i64, oom_killed: bool, expected: Expected) -> ExitClass {
    if oom_killed {
        return ExitClass::OutOfMemory;
    }
    match expected {
        Expected::Kill => ExitClass::OperatorStop,
        Expected::IdleStop => ExitClass::IdleStop,
        Expected::Stop if exit_code == KILLED => ExitClass::KilledAfterGrace,
        Expected::Stop => ExitClass::OperatorStop,
        Expected::Nothing if exit_code == 0 => ExitClass::InGameStop,
        Expected::Nothing => ExitClass::Crash,
    }
}

/// Adds `rec` to `history`, keeping the last [`KEEP`].
pub fn push(history: &mut Vec<ExitRecord>, rec: ExitRecord) {
    history.push(rec);
    if history.len() > KEEP {
        let extra = history.len() - KEEP;
        history.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(0, false, Expected::Nothing), ExitClass::InGameStop);
        assert_eq!(classify(3, false, Expected::Nothing), ExitClass::Crash);
        assert_eq!(classify(137, false, Expected::Nothing), ExitClass::Crash);
        assert_eq!(classify(137, true, Expected::Stop), ExitClass::OutOfMemory);
        assert_eq!(classify(0, false, Expected::Stop), ExitClass::OperatorStop);
        assert_eq!(
            classify(143, false, Expected::Stop),
            ExitClass::OperatorStop
        );
        assert_eq!(
            classify(137, false, Expected::Stop),
            ExitClass::KilledAfterGrace
        );
        assert_eq!(
            classify(137, false, Expected::Kill),
            ExitClass::OperatorStop
        );
        assert_eq!(classify(0, false, Expected::IdleStop), ExitClass::IdleStop);
    }

    #[test]
    fn history_is_bounded() {
        let mut h = Vec::new();
        for i in 0..30 {
            push(
                &mut h,
                ExitRecord {
                    time: i.to_string(),
                    exit_code: i,
                    class: ExitClass::Crash,
                    last_lines: vec![],
                    run_started: None,
                },
            );
        }
        assert_eq!(h.len(), KEEP);
        assert_eq!(h[0].exit_code, 10);
        assert_eq!(h[KEEP - 1].exit_code, 29);
    }
}
