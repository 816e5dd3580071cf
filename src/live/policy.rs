//! The restart policy's decisions: whether an exit is restarted, after how long, and when peon
//! gives up (more than [`MAX_RESTARTS`] restarts within [`WINDOW`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::model::exit::ExitClass;
use crate::model::lifecycle::RestartPolicy;

/// At most this many automatic restarts within [`WINDOW`].
pub const MAX_RESTARTS: usize = 3;
pub const WINDOW: Duration = Duration::from_secs(600);

/// What to do after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it stopped (the policy does not restart this kind of exit).
    Stay,
    /// Restart after `delay`; this is restart number `attempt` within the window.
    Restart { attempt: u32, delay: Duration },
    /// Too many restarts: leave it stopped, saying why.
    GiveUp(String),
}

/// Whether `policy` restarts an exit of class `class`.
pub fn restarts(policy: RestartPolicy, class: ExitClass) -> bool {
    match (policy, class) {
        (_, ExitClass::OperatorStop | ExitClass::KilledAfterGrace | ExitClass::IdleStop) => false,
        (RestartPolicy::Never, _) => false,
        (RestartPolicy::OnCrash, ExitClass::Crash | ExitClass::OutOfMemory) => true,
        (RestartPolicy::OnCrash, ExitClass::InGameStop) => false,
        (RestartPolicy::Always, _) => true,
    }
}

/// Decides after an exit of class `class` at `now`; `recent` holds the times of earlier
/// automatic restarts and gains this one when the decision is to restart.
pub fn decide(
    policy: RestartPolicy,
    class: ExitClass,
    recent: &mut VecDeque<Instant>,
    now: Instant,
) -> Decision {
    if !restarts(policy, class) {
        return Decision::Stay;
    }
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) > WINDOW)
    {
        recent.pop_front();
    }
    if recent.len() >= MAX_RESTARTS {
        return Decision::GiveUp(format!(
            "gave up after {MAX_RESTARTS} restarts within {} minutes (last exit: {})",
            WINDOW.as_secs() / 60,
            class.as_str()
        ));
    }
    recent.push_back(now);
    let attempt = recent.len() as u32;
    // The first restart is immediate, then 2 s, 4 s, ...
    let delay = Duration::from_secs(if attempt <= 1 { 0 } else { 1 << (attempt - 1) });
    Decision::Restart { attempt, delay }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_crash_restarts_three_times_then_gives_up() {
        let mut r = VecDeque::new();
        let t = Instant::now();
        let p = RestartPolicy::OnCrash;
        assert_eq!(
            decide(p, ExitClass::Crash, &mut r, t),
            Decision::Restart {
                attempt: 1,
                delay: Duration::ZERO
            }
        );
        assert_eq!(
            decide(p, ExitClass::OutOfMemory, &mut r, t),
            Decision::Restart {
                attempt: 2,
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            decide(p, ExitClass::Crash, &mut r, t),
            Decision::Restart {
                attempt: 3,
                delay: Duration::from_secs(4)
            }
        );
        assert!(matches!(
            decide(p, ExitClass::Crash, &mut r, t),
            Decision::GiveUp(_)
        ));
        // Outside the window the count starts again.
        let later = t + WINDOW + Duration::from_secs(1);
        assert_eq!(
            decide(p, ExitClass::Crash, &mut r, later),
            Decision::Restart {
                attempt: 1,
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn what_each_policy_restarts() {
        let mut r = VecDeque::new();
        let t = Instant::now();
        assert_eq!(
            decide(RestartPolicy::OnCrash, ExitClass::InGameStop, &mut r, t),
            Decision::Stay
        );
        assert_eq!(
            decide(RestartPolicy::Never, ExitClass::Crash, &mut r, t),
            Decision::Stay
        );
        assert_eq!(
            decide(RestartPolicy::Always, ExitClass::OperatorStop, &mut r, t),
            Decision::Stay
        );
        assert!(matches!(
            decide(RestartPolicy::Always, ExitClass::InGameStop, &mut r, t),
            Decision::Restart { .. }
        ));
    }
}
