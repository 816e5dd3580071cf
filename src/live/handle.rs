//! One server's handle: its power lock, its live state, its console and its event channel.
//!
//! The state is kept under a plain mutex that is never held across an await; readers take a
//! snapshot. Every change of `server_state` is published as an event and shown on the console.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{OwnedMutexGuard, broadcast, watch};
use tokio::task::JoinHandle;

use super::console::{Console, ConsoleConfig};
use super::events::{Event, EventKind};
use crate::model::exit::{ExitClass, ExitRecord, Expected};
use crate::names::Uid;

/// Where a server is in its life, as peon sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not running (see the container state for the engine's word).
    Stopped,
    /// Running, not yet ready.
    Starting,
    /// Running and ready.
    Running,
    /// Running, but it did not get ready in time.
    Unhealthy(String),
    /// Asked to stop, not yet stopped.
    Stopping,
}

/// What the engine has of the server's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSnap {
    pub id: String,
    /// created, running, paused, restarting, exited, dead.
    pub state: String,
    pub started_at: Option<String>,
    pub container_type: String,
    pub build_version: String,
}

/// The game's resource use, as the service's stats sampler last read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsSample {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub at: Instant,
}

/// The last measure of a server directory's disk use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUse {
    pub bytes: u64,
    /// The `data/` part of it.
    pub data_bytes: u64,
    pub at: Instant,
}

/// The live state of one server.
#[derive(Debug, Clone)]
pub struct LiveState {
    /// `None`: the server has no container.
    pub container: Option<ContainerSnap>,
    pub phase: Phase,
    /// What peon expects of the next exit.
    pub expected: Expected,
    /// Bumped by every stop and kill, so that work started before them can tell.
    pub intent: u64,
    /// Times of automatic restarts within the policy's window.
    pub restarts: VecDeque<Instant>,
    /// Why the server is stopped or unhealthy, when peon knows.
    pub note: Option<String>,
    /// The last exits, oldest first.
    pub exits: Vec<ExitRecord>,
    /// What the game wrote in `config/` (secrets masked), refreshed when the files change.
    pub config: Map<String, Value>,
    /// Names, sizes and modification times of the `config/` files read last.
    pub config_sig: Vec<(String, u64, i64)>,
    /// The start time of the last run whose exit was recorded.
    pub recorded_run: Option<String>,
    /// The engine reported an OOM kill in the current run.
    pub oom_seen: bool,
    /// An operator's start is under way: it reports a crash itself (no automatic restart).
    pub in_start: bool,
    /// The last stats sample of the running game (cleared when it stops).
    pub stats: Option<StatsSample>,
    /// Automatic restarts decided since the daemon started.
    pub restarts_total: u64,
    /// Exits recorded since the daemon started, by class (in the order of `ExitClass::ALL`).
    pub exits_total: [u64; 6],
    /// The last measure of the server directory's disk use.
    pub disk: Option<DiskUse>,
    /// The disk quota warning was published and the use has not gone back under 90 % since.
    pub quota_warned: bool,
    /// Players on the game, as it last answered a query; `None`: unknown (no query, no answer,
    /// not running).
    pub players: Option<u32>,
    pub max_players: Option<u32>,
    /// Since when the game has answered, every time, that nobody plays (for the idle stop).
    pub empty_since: Option<Instant>,
    /// When the game last started running (for the idle stop's grace).
    pub run_since: Option<Instant>,
}

/// One server's handle.
pub struct ServerHandle {
    pub uid: Uid,
    power: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<LiveState>,
    pub console: Arc<Console>,
    events: broadcast::Sender<Arc<Event>>,
    bus: broadcast::Sender<Arc<Event>>,
    running: watch::Sender<bool>,
    attach: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

/// How many events a slow reader of one server's channel may fall behind.
const SERVER_EVENTS: usize = 256;

impl ServerHandle {
    pub fn new(
        uid: Uid,
        exits: Vec<ExitRecord>,
        bus: broadcast::Sender<Arc<Event>>,
        console: ConsoleConfig,
    ) -> ServerHandle {
        let recorded_run = exits.last().and_then(|e| e.run_started.clone());
        ServerHandle {
            uid,
            power: Arc::new(tokio::sync::Mutex::new(())),
            state: Mutex::new(LiveState {
                container: None,
                phase: Phase::Stopped,
                expected: Expected::Nothing,
                intent: 0,
                restarts: VecDeque::new(),
                note: None,
                exits,
                config: Map::new(),
                config_sig: Vec::new(),
                recorded_run,
                oom_seen: false,
                in_start: false,
                stats: None,
                restarts_total: 0,
                exits_total: [0; 6],
                disk: None,
                quota_warned: false,
                players: None,
                max_players: None,
                empty_since: None,
                run_since: None,
            }),
            console: Arc::new(Console::new(console)),
            events: broadcast::channel(SERVER_EVENTS).0,
            bus,
            running: watch::channel(false).0,
            attach: Mutex::new(None),
            watcher: Mutex::new(None),
        }
    }

    /// Takes the power lock: actions on one server run one at a time.
    pub async fn lock_power(&self) -> OwnedMutexGuard<()> {
        self.power.clone().lock_owned().await
    }

    /// Whether an action holds the power lock now.
    pub fn busy(&self) -> bool {
        self.power.try_lock().is_err()
    }

    /// The state, locked; do not hold it across an await.
    pub fn state(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the state.
    pub fn snapshot(&self) -> LiveState {
        self.state().clone()
    }

    /// PEON's `server_state`: the phase while running or stopping, else the container state.
    pub fn server_state(&self) -> String {
        server_state(&self.state())
    }

    /// The class of the exit recorded after the run `since` (a `recorded_run` read earlier);
    /// `None` when no exit was recorded since.
    pub fn exit_since(&self, since: &Option<String>) -> Option<ExitClass> {
        let s = self.state();
        if s.recorded_run == *since {
            return None;
        }
        s.exits.last().map(|e| e.class)
    }

    /// Changes the phase (and the note), publishing the new `server_state` when it changed.
    pub fn set_phase(&self, phase: Phase, note: Option<String>) {
        let (before, after) = {
            let mut s = self.state();
            let before = server_state(&s);
            s.phase = phase;
            if note.is_some() || matches!(s.phase, Phase::Starting | Phase::Running) {
                s.note = note;
            }
            (before, server_state(&s))
        };
        if before != after {
            self.console.status(&after);
            self.publish(EventKind::State { state: after });
        }
    }

    /// Records what the engine has of the container, publishing a change of `server_state`.
    /// The phase is left alone (an exit is observed, and the phase changed, by the service; a
    /// snapshot taken while a start is under way must not undo it), except when the container
    /// is gone.
    pub fn set_container(&self, c: Option<ContainerSnap>) {
        let running = c.as_ref().is_some_and(|c| c.state == "running");
        let (before, after) = {
            let mut s = self.state();
            let before = server_state(&s);
            if c.is_none() {
                s.phase = Phase::Stopped;
            }
            s.container = c;
            (before, server_state(&s))
        };
        self.running.send_replace(running);
        if before != after {
            self.console.status(&after);
            self.publish(EventKind::State { state: after });
        }
    }

    /// Whether the container runs, as last seen.
    pub fn is_running(&self) -> bool {
        *self.running.borrow()
    }

    /// Waits until the container is seen not running, at most `within`; true when it stopped.
    pub async fn wait_stopped(&self, within: Duration) -> bool {
        let mut rx = self.running.subscribe();
        tokio::time::timeout(within, rx.wait_for(|r| !*r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes an event on this server's channel and the bus.
    pub fn publish(&self, kind: EventKind) {
        let e = Arc::new(Event::now(&self.uid.to_string(), kind));
        tracing::debug!(uid = %self.uid, event = %e.to_json(), "event");
        let _ = self.events.send(e.clone());
        let _ = self.bus.send(e);
    }

    /// Follows this server's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Replaces the task that reads the console (the old one is stopped).
    pub fn set_attach_task(&self, task: JoinHandle<()>) {
        let mut slot = self.attach.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
    }

    /// Whether a console reader is running.
    pub fn attached(&self) -> bool {
        self.attach
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Replaces the readiness watcher (the old one is stopped); `None` just stops it.
    pub fn set_watcher(&self, task: Option<JoinHandle<()>>) {
        let mut slot = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = std::mem::replace(&mut *slot, task) {
            old.abort();
        }
    }

    /// Stops the handle's tasks and disconnects its console's clients (the server is gone).
    pub fn close(&self) {
        self.set_watcher(None);
        if let Some(t) = self.attach.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
        self.console.close_subscribers();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.close();
    }
}

/// PEON's `server_state` of a live state.
pub fn server_state(s: &LiveState) -> String {
    match (&s.phase, &s.container) {
        (Phase::Starting, _) => "starting".into(),
        (Phase::Running, _) => "running".into(),
        (Phase::Unhealthy(_), _) => "unhealthy".into(),
        (Phase::Stopping, _) => "stopping".into(),
        (Phase::Stopped, Some(c)) if c.state == "running" => "starting".into(),
        (Phase::Stopped, Some(c)) => c.state.clone(),
        (Phase::Stopped, None) => "missing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (ServerHandle, broadcast::Receiver<Arc<Event>>) {
        let bus = broadcast::channel(16).0;
        let rx = bus.subscribe();
        let uid = Uid::parse("g.n").unwrap();
        (
            ServerHandle::new(uid, Vec::new(), bus, ConsoleConfig::default()),
            rx,
        )
    }

    fn snap(state: &str) -> ContainerSnap {
        ContainerSnap {
            id: "id".into(),
            state: state.into(),
            started_at: None,
            container_type: String::new(),
            build_version: String::new(),
        }
    }

    #[test]
    fn a_snapshot_never_undoes_a_start_and_changes_are_published() {
        let (h, mut rx) = handle();
        assert_eq!(h.server_state(), "missing");
        h.set_container(Some(snap("created")));
        h.set_phase(Phase::Starting, None);
        // A late snapshot of the not-yet-started container leaves the phase as it is.
        h.set_container(Some(snap("exited")));
        assert_eq!(h.server_state(), "starting");
        h.set_container(Some(snap("running")));
        assert!(h.is_running());
        h.set_phase(Phase::Running, None);
        assert_eq!(h.server_state(), "running");
        h.set_container(Some(snap("exited")));
        h.set_phase(Phase::Stopped, Some("gave up".into()));
        assert_eq!(h.server_state(), "exited");
        assert_eq!(h.state().note.as_deref(), Some("gave up"));
        // The container going away stops the server whatever the phase said.
        h.set_phase(Phase::Running, None);
        h.set_container(None);
        assert_eq!(h.server_state(), "missing");
        let states: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| match &e.kind {
                EventKind::State { state } => Some(state.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            states,
            [
                "created", "starting", "running", "exited", "running", "missing"
            ]
        );
    }

    #[tokio::test]
    async fn the_power_lock_is_one_slot() {
        let (h, _) = handle();
        assert!(!h.busy());
        let g = h.lock_power().await;
        assert!(h.busy());
        drop(g);
        assert!(!h.busy());
    }
}
