//! The scheduler: one-shot timers and cron schedules per server, fired through a [`Runner`].
//!
//! How firing works: every distinct due second has one one-shot job in tokio-cron-scheduler
//! (its tick runs every 500 ms, so a firing is at most about half a second late). When that
//! job runs, every schedule due by then is taken out (one-shots) or advanced to its next
//! occurrence (cron), and its action is carried out on its own task. A thousand timers due
//! in the same second are one job; a thousand timers due at different seconds are a thousand
//! idle entries in a list the ticker scans: nothing polls Docker.
//!
//! Cron occurrences are computed here, one at a time, in the configured time zone (with its
//! daylight-saving rules), rather than by tokio-cron-scheduler's cron jobs, which keep the
//! UTC offset of the moment the job was created.
//!
//! Every change is written to `schedules.json` (atomic write; concurrent writers coalesce into
//! one write of the newest state). At start, schedules that fell due while the daemon was down
//! fire once: stops always, starts and restarts only within the start grace (otherwise the
//! firing is recorded as skipped).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::cron::CronSpec;
use super::file::{self, FiringRecord, Loaded, Outcome, SchedulesFile, Source, StoredSchedule};
use super::{Action, OneShot, Ran, Runner, ScheduleError, WhenEmpty};
use crate::names::Uid;

/// Firing records kept per server.
pub const KEEP_RESULTS: usize = 20;
/// Schedules one server may have through the API.
pub const MAX_PER_SERVER: usize = 64;
/// Size of tokio-cron-scheduler's ten internal broadcast channels, whose slots are allocated
/// and written up front. Additions and removals go one at a time under the `jobs` lock, each
/// awaiting its confirmation, and at most one job fires per due second, so a channel holds a
/// message or two; 1024 slots cost 0.6 MiB of resident memory for nothing.
const CHANNEL_SIZE: usize = 128;

/// Where the scheduler keeps its file and how it reads times.
#[derive(Debug, Clone)]
pub struct Config {
    /// `<data>/schedules.json`.
    pub file: PathBuf,
    /// PEON's `<data>/servers/schedule.json`, imported when `file` does not exist.
    pub peon_file: PathBuf,
    /// Time zone of cron expressions.
    pub timezone: Tz,
    /// How late a missed start may still be carried out at daemon start.
    pub start_grace: Duration,
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum When {
    /// Once, at Unix second `at`.
    At(i64),
    /// On every occurrence of a cron expression.
    Cron(CronSpec),
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    uid: Uid,
    action: Action,
    when: When,
    source: Source,
    /// PEON timers: the ServerObject's `time`.
    shown: Option<Value>,
    created: i64,
    next: Option<i64>,
    when_empty: Option<WhenEmpty>,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    pub id: String,
    pub server_uid: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Value>,
    pub source: Source,
    pub created: i64,
    /// Unix seconds of the next firing.
    pub next: Option<i64>,
    /// `next` in the configured time zone, RFC 3339.
    pub next_time: Option<String>,
    /// Waits for an empty server first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_empty: Option<WhenEmpty>,
}

/// A server's schedules and its last firings (newest first).
#[derive(Debug, Clone, Serialize)]
pub struct ServerSchedules {
    pub server_uid: String,
    pub time_zone: String,
    pub schedules: Vec<ScheduleView>,
    pub results: Vec<FiringRecord>,
}

/// An armed due second: the tokio-cron-scheduler job that fires it.
struct Slot {
    token: u64,
    job: Option<Job>,
}

/// A schedule taken out for firing.
struct Firing {
    id: String,
    uid: Uid,
    action: Action,
    due: i64,
    /// Why it is not carried out, when it is skipped.
    skip: Option<String>,
    when_empty: Option<WhenEmpty>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// The PEON stop timer of each server.
    timers: HashMap<Uid, String>,
    /// (next due, id) of every schedule that will fire again.
    due: BTreeSet<(i64, String)>,
    slots: HashMap<i64, Slot>,
    results: HashMap<Uid, VecDeque<FiringRecord>>,
    /// Bumped on every change worth writing.
    generation: u64,
    next_token: u64,
    /// Schedules that fell due while the daemon was down, until they fire.
    missed: HashSet<String>,
    /// Unix second when the scheduler started.
    started_at: i64,
}

impl State {
    fn insert(&mut self, e: Entry) {
        if let Some(n) = e.next {
            self.due.insert((n, e.id.clone()));
        }
        if e.source == Source::Timer {
            self.timers.insert(e.uid.clone(), e.id.clone());
        }
        self.entries.insert(e.id.clone(), e);
    }

    /// Removes a schedule; returns the due second to disarm when nothing else is due then.
    fn remove(&mut self, id: &str) -> Option<(Entry, Option<Slot>)> {
        let e = self.entries.remove(id)?;
        self.missed.remove(id);
        if self.timers.get(&e.uid).is_some_and(|t| t == id) {
            self.timers.remove(&e.uid);
        }
        let mut slot = None;
        if let Some(n) = e.next {
            self.due.remove(&(n, e.id.clone()));
            if !self.due_at(n) {
                slot = self.slots.remove(&n);
            }
        }
        Some((e, slot))
    }

    fn due_at(&self, t: i64) -> bool {
        self.due
            .range((t, String::new())..)
            .next()
            .is_some_and(|(d, _)| *d == t)
    }

    /// Reserves a slot for `t` when none exists; returns its token to arm.
    /// The slots to arm for the next occurrences of the schedules that just fired.
    fn plan_next_arms(&mut self, fired: &[Firing]) -> Vec<(i64, u64)> {
        let next: BTreeSet<i64> = fired
            .iter()
            .filter_map(|f| self.entries.get(&f.id).and_then(|e| e.next))
            .collect();
        next.into_iter()
            .filter_map(|n| self.plan_arm(n, true))
            .collect()
    }

    fn plan_arm(&mut self, t: i64, armed: bool) -> Option<(i64, u64)> {
        if !armed || self.slots.contains_key(&t) {
            return None;
        }
        self.next_token += 1;
        let token = self.next_token;
        self.slots.insert(t, Slot { token, job: None });
        Some((t, token))
    }

    fn record(&mut self, uid: &Uid, r: FiringRecord) {
        let list = self.results.entry(uid.clone()).or_default();
        list.push_back(r);
        while list.len() > KEEP_RESULTS {
            list.pop_front();
        }
        self.generation += 1;
    }

    fn snapshot(&self) -> SchedulesFile {
        let mut schedules: Vec<StoredSchedule> = self.entries.values().map(stored).collect();
        schedules.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        SchedulesFile {
            version: file::FORMAT,
            schedules,
            results: self
                .results
                .iter()
                .map(|(u, l)| (u.to_string(), l.iter().cloned().collect()))
                .collect(),
        }
    }
}

fn stored(e: &Entry) -> StoredSchedule {
    let (cron, at) = match &e.when {
        When::At(t) => (None, Some(*t)),
        When::Cron(c) => (Some(c.as_str().to_owned()), None),
    };
    StoredSchedule {
        id: e.id.clone(),
        server_uid: e.uid.to_string(),
        action: e.action,
        cron,
        at,
        time: e.shown.clone(),
        source: e.source,
        created: e.created,
        next: e.next,
        when_empty: e.when_empty.clone(),
    }
}

/// The scheduler. See the module documentation.
pub struct Scheduler {
    config: Config,
    state: Mutex<State>,
    runner: Mutex<Option<Weak<dyn Runner>>>,
    /// tokio-cron-scheduler, once started. Its lock also serializes job additions.
    jobs: tokio::sync::Mutex<Option<JobScheduler>>,
    started: AtomicBool,
    closed: AtomicBool,
    /// The generation last written to disk; held while writing.
    written: tokio::sync::Mutex<u64>,
    me: Weak<Scheduler>,
}

fn now() -> i64 {
    Utc::now().timestamp()
}

impl Scheduler {
    /// Loads the schedules file (or imports PEON's). Nothing fires before [`Scheduler::start`].
    pub fn open(config: Config) -> Result<Arc<Scheduler>, ScheduleError> {
        let t = now();
        let (loaded, imported) = match file::load(&config.file, &config.peon_file, t)? {
            Loaded::Ours(f) => (f, false),
            Loaded::ImportedPeon(f) => (f, true),
            Loaded::Empty => (SchedulesFile::default(), false),
        };
        let mut state = State::default();
        for s in loaded.schedules {
            let Ok(uid) = Uid::parse(&s.server_uid) else {
                tracing::warn!(id = %s.id, "schedule for an invalid server uid {:?} dropped", s.server_uid);
                continue;
            };
            let when = match (&s.cron, s.at) {
                (Some(c), _) => match CronSpec::parse(c) {
                    Ok(c) => When::Cron(c),
                    Err(e) => {
                        tracing::warn!(id = %s.id, uid = %uid, "schedule dropped: {e}");
                        continue;
                    }
                },
                (None, Some(at)) => When::At(at),
                (None, None) => {
                    tracing::warn!(id = %s.id, uid = %uid, "schedule with neither cron nor at dropped");
                    continue;
                }
            };
            state.insert(Entry {
                id: s.id,
                uid,
                action: s.action,
                when,
                source: s.source,
                shown: s.time,
                created: s.created,
                next: s.next,
                when_empty: s.when_empty,
            });
        }
        for (u, list) in loaded.results {
            if let Ok(uid) = Uid::parse(&u) {
                let mut list: VecDeque<FiringRecord> = list.into();
                while list.len() > KEEP_RESULTS {
                    list.pop_front();
                }
                state.results.insert(uid, list);
            }
        }
        // An imported file is written at start; our own file only when something changes.
        state.generation = u64::from(imported);
        tracing::info!(
            schedules = state.entries.len(),
            file = %config.file.display(),
            "schedules loaded"
        );
        Ok(Arc::new_cyclic(|me| Scheduler {
            config,
            state: Mutex::new(state),
            runner: Mutex::new(None),
            jobs: tokio::sync::Mutex::new(None),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            written: tokio::sync::Mutex::new(0),
            me: me.clone(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects the scheduler to whatever carries out actions.
    pub fn attach(&self, runner: Weak<dyn Runner>) {
        *self.runner.lock().unwrap_or_else(|p| p.into_inner()) = Some(runner);
    }

    pub fn timezone(&self) -> Tz {
        self.config.timezone
    }

    /// Starts firing: arms every pending schedule and fires, once, those that fell due while
    /// the daemon was down.
    pub async fn start(&self) -> Result<(), ScheduleError> {
        let jobs = JobScheduler::new_with_channel_size(CHANNEL_SIZE)
            .await
            .map_err(|e| ScheduleError::Storage(format!("cannot create the job scheduler: {e}")))?;
        jobs.start()
            .await
            .map_err(|e| ScheduleError::Storage(format!("cannot start the job scheduler: {e}")))?;
        *self.jobs.lock().await = Some(jobs);
        self.started.store(true, Ordering::SeqCst);
        let t = now();
        let (count, arms) = {
            let mut st = self.state();
            // Missed schedules stay in the file until they fire (see `fire_missed`).
            let overdue: Vec<(i64, String)> = st.due.range(..(t, String::new())).cloned().collect();
            st.missed = overdue.iter().map(|(_, id)| id.clone()).collect();
            st.started_at = t;
            let dues: BTreeSet<i64> = st
                .due
                .range((t, String::new())..)
                .map(|(d, _)| *d)
                .collect();
            let arms: Vec<_> = dues
                .into_iter()
                .filter_map(|d| st.plan_arm(d, true))
                .collect();
            (overdue.len(), arms)
        };
        self.arm(arms).await;
        if count > 0 {
            tracing::info!(
                count,
                "schedules fell due while the daemon was down; they fire once the engine answers"
            );
        }
        self.persist().await
    }

    /// Fires, once, the schedules that fell due while the daemon was down: stops always,
    /// starts and restarts only when they fell due within the start grace (otherwise the
    /// firing is recorded as skipped). The daemon calls this after its reconcile pass, so
    /// that pass cannot undo a missed stop.
    pub async fn fire_missed(&self) {
        let grace = i64::try_from(self.config.start_grace.as_secs()).unwrap_or(i64::MAX);
        let t = now();
        let (late, arms) = {
            let mut st = self.state();
            let started_at = st.started_at;
            let ids = std::mem::take(&mut st.missed);
            let mut late = Vec::new();
            for id in ids {
                let Some(due) = st.entries.get(&id).and_then(|e| e.next) else {
                    continue;
                };
                let Some(mut f) = self.take_due(&mut st, &id, due, t) else {
                    continue;
                };
                if f.action != Action::Stop && started_at - due > grace {
                    f.skip = Some(format!(
                        "it fell due {}s before the daemon started, more than the start grace of {grace}s",
                        started_at - due
                    ));
                }
                late.push(f);
            }
            // Cron schedules moved on to their next occurrence: arm those.
            let arms = st.plan_next_arms(&late);
            (late, arms)
        };
        self.arm(arms).await;
        for f in late {
            self.spawn_firing(f);
        }
    }

    /// Stops firing and writes the last state. Firings still under way finish but write
    /// nothing more (their schedules are already out of the file or advanced in it).
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(mut jobs) = self.jobs.lock().await.take()
            && let Err(e) = jobs.shutdown().await
        {
            tracing::warn!("job scheduler shutdown: {e}");
        }
        if let Err(e) = self.write_newest().await {
            tracing::error!("{e}");
        }
    }

    /// The `time` field of a server's ServerObject: its pending stop timer, if any.
    pub fn next_stop(&self, uid: &Uid) -> Option<Value> {
        let st = self.state();
        let id = st.timers.get(uid)?;
        st.entries.get(id).and_then(|e| e.shown.clone())
    }

    /// Replaces the server's pending stop timer with `timer` (PEON's start or stop with
    /// `interval` / `epoch_time`).
    pub async fn set_stop(&self, uid: &Uid, timer: OneShot) -> Result<(), ScheduleError> {
        let armed = self.started.load(Ordering::SeqCst);
        let (old, arm) = {
            let mut st = self.state();
            let old = st.timers.get(uid).cloned().and_then(|id| st.remove(&id));
            st.insert(Entry {
                id: file::new_id(),
                uid: uid.clone(),
                action: Action::Stop,
                when: When::At(timer.due),
                source: Source::Timer,
                shown: Some(timer.shown),
                created: now(),
                next: Some(timer.due),
                when_empty: None,
            });
            st.generation += 1;
            (old, st.plan_arm(timer.due, armed))
        };
        self.disarm(old.and_then(|(_, s)| s)).await;
        self.arm(arm.into_iter().collect()).await;
        tracing::info!(uid = %uid, due = timer.due, "stop timer set");
        self.persist().await
    }

    /// Removes the server's pending stop timer (a manual stop).
    pub async fn cancel_stop(&self, uid: &Uid) -> Result<(), ScheduleError> {
        let old = {
            let mut st = self.state();
            let old = st.timers.get(uid).cloned().and_then(|id| st.remove(&id));
            if old.is_some() {
                st.generation += 1;
            }
            old
        };
        let Some((e, slot)) = old else { return Ok(()) };
        self.disarm(slot).await;
        tracing::info!(uid = %uid, id = %e.id, "stop timer cancelled");
        self.persist().await
    }

    /// Removes every schedule and firing record of a server (destroy, eradicate).
    pub async fn forget_server(&self, uid: &Uid) -> Result<(), ScheduleError> {
        let slots = {
            let mut st = self.state();
            let ids: Vec<String> = st
                .entries
                .values()
                .filter(|e| &e.uid == uid)
                .map(|e| e.id.clone())
                .collect();
            let mut slots = Vec::new();
            for id in &ids {
                if let Some((_, Some(s))) = st.remove(id) {
                    slots.push(s);
                }
            }
            let had_results = st.results.remove(uid).is_some();
            if ids.is_empty() && !had_results {
                return Ok(());
            }
            st.generation += 1;
            slots
        };
        for s in slots {
            self.disarm(Some(s)).await;
        }
        tracing::info!(uid = %uid, "schedules of the server removed");
        self.persist().await
    }

    /// Adds a schedule through the API.
    pub async fn add(
        &self,
        uid: &Uid,
        action: Action,
        when: When,
    ) -> Result<ScheduleView, ScheduleError> {
        self.add_with(uid, action, when, None).await
    }

    /// Adds a schedule through the API; a restart may wait for an empty server first.
    pub async fn add_with(
        &self,
        uid: &Uid,
        action: Action,
        when: When,
        when_empty: Option<WhenEmpty>,
    ) -> Result<ScheduleView, ScheduleError> {
        if when_empty.is_some() && action != Action::Restart {
            return Err(ScheduleError::Invalid(
                "when_empty is for restarts (a start or a stop does not wait for players)".into(),
            ));
        }
        let t = now();
        let next = match &when {
            When::At(at) if *at <= t => {
                return Err(ScheduleError::Invalid(format!(
                    "at {at} is in the past (now is {t}): give a future time"
                )));
            }
            When::At(at) => *at,
            When::Cron(c) => c.next_after(t, self.config.timezone).ok_or_else(|| {
                ScheduleError::Invalid(format!(
                    "cron {:?} never fires: give an expression with a future occurrence",
                    c.as_str()
                ))
            })?,
        };
        let armed = self.started.load(Ordering::SeqCst);
        let (view, arm) = {
            let mut st = self.state();
            let count = st.entries.values().filter(|e| &e.uid == uid).count();
            if count >= MAX_PER_SERVER {
                return Err(ScheduleError::Invalid(format!(
                    "server {uid} already has {count} schedules, the most it may have: delete one first"
                )));
            }
            let e = Entry {
                id: file::new_id(),
                uid: uid.clone(),
                action,
                when,
                source: Source::Api,
                shown: None,
                created: t,
                next: Some(next),
                when_empty,
            };
            let view = self.view(&e);
            st.insert(e);
            st.generation += 1;
            (view, st.plan_arm(next, armed))
        };
        self.arm(arm.into_iter().collect()).await;
        tracing::info!(uid = %uid, id = %view.id, action = action.as_str(), next, "schedule added");
        self.persist().await?;
        Ok(view)
    }

    /// Removes one schedule of a server.
    pub async fn remove(&self, uid: &Uid, id: &str) -> Result<(), ScheduleError> {
        let slot = {
            let mut st = self.state();
            if st.entries.get(id).is_none_or(|e| &e.uid != uid) {
                return Err(ScheduleError::NotFound(format!("{id} of server {uid}")));
            }
            let slot = st.remove(id).and_then(|(_, s)| s);
            st.generation += 1;
            slot
        };
        self.disarm(slot).await;
        tracing::info!(uid = %uid, id, "schedule removed");
        self.persist().await
    }

    /// A server's schedules (soonest first) and last firings (newest first).
    pub fn server(&self, uid: &Uid) -> ServerSchedules {
        let st = self.state();
        let mut schedules: Vec<ScheduleView> = st
            .entries
            .values()
            .filter(|e| &e.uid == uid)
            .map(|e| self.view(e))
            .collect();
        sort_views(&mut schedules);
        let results = st
            .results
            .get(uid)
            .map(|l| l.iter().rev().cloned().collect())
            .unwrap_or_default();
        ServerSchedules {
            server_uid: uid.to_string(),
            time_zone: self.config.timezone.name().to_owned(),
            schedules,
            results,
        }
    }

    /// Every schedule of every server, soonest first.
    pub fn all(&self) -> Vec<ScheduleView> {
        let st = self.state();
        let mut v: Vec<ScheduleView> = st.entries.values().map(|e| self.view(e)).collect();
        sort_views(&mut v);
        v
    }

    /// The number of pending schedules.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self, e: &Entry) -> ScheduleView {
        let s = stored(e);
        ScheduleView {
            id: s.id,
            server_uid: s.server_uid,
            action: s.action,
            cron: s.cron,
            at: s.at,
            time: s.time,
            source: s.source,
            created: s.created,
            next: s.next,
            when_empty: s.when_empty,
            next_time: e.next.and_then(|n| {
                Utc.timestamp_opt(n, 0)
                    .single()
                    .map(|t| t.with_timezone(&self.config.timezone).to_rfc3339())
            }),
        }
    }

    /// Takes schedule `id`, due at `due`, out for firing: a one-shot is removed, a cron
    /// schedule moves to its next occurrence after `t` (re-armed by the caller's plan).
    fn take_due(&self, st: &mut State, id: &str, due: i64, t: i64) -> Option<Firing> {
        let e = st.entries.get(id)?.clone();
        match &e.when {
            When::At(_) => {
                st.remove(id);
            }
            When::Cron(c) => {
                st.due.remove(&(due, id.to_owned()));
                let next = c.next_after(t.max(due), self.config.timezone);
                if let Some(n) = next {
                    st.due.insert((n, id.to_owned()));
                }
                if let Some(entry) = st.entries.get_mut(id) {
                    entry.next = next;
                }
            }
        }
        st.generation += 1;
        Some(Firing {
            id: e.id,
            uid: e.uid,
            action: e.action,
            due,
            skip: None,
            when_empty: e.when_empty,
        })
    }

    /// Called by tokio-cron-scheduler when the job of due second `due` runs.
    async fn fire_slot(self: Arc<Self>, due: i64, token: u64) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let t = now();
        let (firings, arms) = {
            let mut st = self.state();
            if st.slots.get(&due).is_none_or(|s| s.token != token) {
                return;
            }
            st.slots.remove(&due);
            let ready: Vec<(i64, String)> = st
                .due
                .range(..(due + 1, String::new()))
                .filter(|(_, id)| !st.missed.contains(id))
                .cloned()
                .collect();
            let firings: Vec<Firing> = ready
                .into_iter()
                .filter_map(|(d, id)| self.take_due(&mut st, &id, d, t))
                .collect();
            let arms = st.plan_next_arms(&firings);
            (firings, arms)
        };
        self.arm(arms).await;
        for f in firings {
            self.spawn_firing(f);
        }
    }

    fn spawn_firing(&self, f: Firing) {
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(me.run_firing(f));
        }
    }

    /// Carries out one firing, records it and writes the file. Never fails.
    async fn run_firing(self: Arc<Self>, f: Firing) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let fired = Utc::now();
        let runner = self
            .runner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade);
        let (outcome, error, state) = match (&f.skip, runner) {
            (Some(why), _) => (Outcome::Skipped, Some(why.clone()), None),
            (None, None) => (
                Outcome::Failed,
                Some("the server service is not running".to_owned()),
                None,
            ),
            (None, Some(r)) => match match f.when_empty.clone() {
                Some(w) => r.run_scheduled_when_empty(&f.uid, f.action, w).await,
                None => r.run_scheduled(&f.uid, f.action).await,
            } {
                Ok(Ran::Done(s)) => (Outcome::Done, None, Some(s)),
                Ok(Ran::Noop(s)) => (Outcome::Noop, None, Some(s)),
                Err(e) => (Outcome::Failed, Some(e), None),
            },
        };
        let delay_ms = fired.timestamp_millis() - f.due * 1000;
        match outcome {
            Outcome::Failed => tracing::warn!(
                uid = %f.uid, id = %f.id, action = f.action.as_str(), delay_ms,
                "scheduled action failed: {}", error.as_deref().unwrap_or_default()
            ),
            _ => tracing::info!(
                uid = %f.uid, id = %f.id, action = f.action.as_str(), delay_ms,
                outcome = ?outcome, "scheduled action"
            ),
        }
        let record = FiringRecord {
            schedule_id: f.id,
            action: f.action,
            due: f.due,
            fired_at: fired.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            delay_ms,
            outcome,
            error,
            state,
        };
        self.state().record(&f.uid, record);
        if let Err(e) = self.persist().await {
            tracing::error!("{e}");
        }
    }

    /// Creates the jobs of planned slots in tokio-cron-scheduler.
    async fn arm(&self, plan: Vec<(i64, u64)>) {
        if plan.is_empty() {
            return;
        }
        let guard = self.jobs.lock().await;
        let Some(jobs) = guard.as_ref() else { return };
        for (due, token) in plan {
            let job = match self.make_job(due, token) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(due, "cannot create the timer job: {e}");
                    continue;
                }
            };
            if let Err(e) = jobs.add(job.clone()).await {
                tracing::error!(due, "cannot add the timer job: {e}");
                continue;
            }
            let stale = {
                let mut st = self.state();
                match st.slots.get_mut(&due) {
                    Some(s) if s.token == token => {
                        s.job = Some(job.clone());
                        false
                    }
                    _ => true,
                }
            };
            if stale {
                let _ = jobs.remove(&job.guid()).await;
            }
        }
    }

    /// Removes a slot's job from tokio-cron-scheduler.
    async fn disarm(&self, slot: Option<Slot>) {
        let Some(job) = slot.and_then(|s| s.job) else {
            return;
        };
        if let Some(jobs) = self.jobs.lock().await.as_ref()
            && let Err(e) = jobs.remove(&job.guid()).await
        {
            tracing::debug!("cannot remove a timer job: {e}");
        }
    }

    /// A one-shot job due at Unix second `due` (tokio-cron-scheduler fires it on the first
    /// tick at or after that second).
    fn make_job(&self, due: i64, token: u64) -> Result<Job, ScheduleError> {
        let me = self.me.clone();
        let err = |e: tokio_cron_scheduler::JobSchedulerError| {
            ScheduleError::Storage(format!("timer job: {e}"))
        };
        let mut job = Job::new_one_shot_async(Duration::ZERO, move |_id, _jobs| {
            let me = me.clone();
            Box::pin(async move {
                if let Some(s) = me.upgrade() {
                    s.fire_slot(due, token).await;
                }
            })
        })
        .map_err(err)?;
        let mut data = job.job_data().map_err(err)?;
        data.next_tick = u64::try_from(due).unwrap_or(0).max(1);
        job.set_job_data(data).map_err(err)?;
        Ok(job)
    }

    /// Writes the newest state to the file. Concurrent callers coalesce: whoever finds their
    /// change already written returns at once.
    async fn persist(&self) -> Result<(), ScheduleError> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.write_newest().await
    }

    async fn write_newest(&self) -> Result<(), ScheduleError> {
        if !self.started.load(Ordering::SeqCst) {
            return Ok(());
        }
        let wanted = self.state().generation;
        let mut written = self.written.lock().await;
        if *written >= wanted {
            return Ok(());
        }
        let (snapshot, generation) = {
            let st = self.state();
            (st.snapshot(), st.generation)
        };
        let path = self.config.file.clone();
        tokio::task::spawn_blocking(move || {
            crate::fsio::atomic::write_json_atomic(&path, &snapshot)
        })
        .await
        .map_err(|e| ScheduleError::Storage(e.to_string()))?
        .map_err(|e| ScheduleError::Storage(format!("{}: {e}", self.config.file.display())))?;
        *written = generation;
        Ok(())
    }
}

fn sort_views(v: &mut [ScheduleView]) {
    v.sort_by(|a, b| (a.next.unwrap_or(i64::MAX), &a.id).cmp(&(b.next.unwrap_or(i64::MAX), &b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Instant;

    /// Records calls; fails for servers named `bad`, reports a no-op for `idle`.
    #[derive(Default)]
    struct FakeRunner {
        calls: Mutex<Vec<(String, Action)>>,
    }

    impl Runner for FakeRunner {
        fn run_scheduled<'a>(
            &'a self,
            uid: &'a Uid,
            action: Action,
        ) -> Pin<Box<dyn Future<Output = Result<Ran, String>> + Send + 'a>> {
            Box::pin(async move {
                self.calls.lock().unwrap().push((uid.to_string(), action));
                match uid.name() {
                    "bad" => Err("the engine said no".to_owned()),
                    "idle" => Ok(Ran::Noop("exited".to_owned())),
                    _ => Ok(Ran::Done("exited".to_owned())),
                }
            })
        }
    }

    fn config(dir: &std::path::Path, grace: u64) -> Config {
        Config {
            file: dir.join("schedules.json"),
            peon_file: dir.join("servers/schedule.json"),
            timezone: chrono_tz::UTC,
            start_grace: Duration::from_secs(grace),
        }
    }

    async fn started(dir: &std::path::Path, grace: u64) -> (Arc<Scheduler>, Arc<FakeRunner>) {
        let s = Scheduler::open(config(dir, grace)).unwrap();
        let r = Arc::new(FakeRunner::default());
        let dyn_r: Arc<dyn Runner> = r.clone();
        s.attach(Arc::downgrade(&dyn_r));
        s.start().await.unwrap();
        s.fire_missed().await;
        (s, r)
    }

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    async fn wait_results(s: &Scheduler, u: &Uid, n: usize, within: Duration) -> Vec<FiringRecord> {
        let deadline = Instant::now() + within;
        loop {
            let r = s.server(u).results;
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "only {} firings of {u}: {r:?}",
                r.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn stop_timer_fires_once_on_time_and_a_cancelled_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r) = started(dir.path(), 300).await;
        let (a, b) = (uid("g.a"), uid("g.b"));
        let t = now();
        let shown = |d: i64| OneShot {
            due: d,
            shown: Value::from(d.to_string()),
        };
        s.set_stop(&a, shown(t + 1)).await.unwrap();
        s.set_stop(&b, shown(t + 2)).await.unwrap();
        assert_eq!(s.next_stop(&a), Some(Value::from((t + 1).to_string())));
        s.cancel_stop(&a).await.unwrap();
        assert_eq!(s.next_stop(&a), None);
        let rec = wait_results(&s, &b, 1, Duration::from_secs(10)).await;
        assert_eq!(rec[0].outcome, Outcome::Done);
        assert_eq!(rec[0].due, t + 2);
        // Never before it is due; how late depends on the machine (recorded, not asserted).
        assert!(rec[0].delay_ms >= 0, "fired {} ms early", -rec[0].delay_ms);
        assert_eq!(s.next_stop(&b), None, "a fired timer is gone");
        assert_eq!(*r.calls.lock().unwrap(), vec![("g.b".into(), Action::Stop)]);
        assert!(s.server(&a).results.is_empty(), "cancelled timer fired");
        // The file agrees (it is written just after the firing is recorded in memory): no
        // schedules left, one result.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let f: SchedulesFile =
                serde_json::from_slice(&std::fs::read(dir.path().join("schedules.json")).unwrap())
                    .unwrap();
            if f.schedules.is_empty() && f.results.get("g.b").is_some_and(|r| r.len() == 1) {
                break;
            }
            assert!(Instant::now() < deadline, "the file never agreed: {f:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.shutdown().await;
    }

    #[tokio::test]
    async fn cron_keeps_firing_through_failures_and_noops() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _r) = started(dir.path(), 300).await;
        let (bad, idle) = (uid("g.bad"), uid("g.idle"));
        let every = || When::Cron(CronSpec::parse("* * * * * *").unwrap());
        let v = s.add(&bad, Action::Restart, every()).await.unwrap();
        s.add(&idle, Action::Start, every()).await.unwrap();
        let rec = wait_results(&s, &bad, 3, Duration::from_secs(10)).await;
        assert!(
            rec.iter().all(|r| r.outcome == Outcome::Failed
                && r.error.as_deref() == Some("the engine said no"))
        );
        let rec = wait_results(&s, &idle, 3, Duration::from_secs(10)).await;
        assert!(rec.iter().all(|r| r.outcome == Outcome::Noop), "{rec:?}");
        // Distinct occurrences, each fired once.
        let mut dues: Vec<i64> = rec.iter().map(|r| r.due).collect();
        dues.dedup();
        assert_eq!(dues.len(), rec.len(), "{rec:?}");
        let still = s.server(&bad).schedules;
        assert_eq!(still.len(), 1);
        assert_eq!(still[0].id, v.id);
        s.remove(&bad, &v.id).await.unwrap();
        assert!(matches!(
            s.remove(&bad, &v.id).await,
            Err(ScheduleError::NotFound(_))
        ));
        s.forget_server(&idle).await.unwrap();
        assert!(s.is_empty());
        assert!(s.server(&idle).results.is_empty());
        s.shutdown().await;
    }

    #[tokio::test]
    async fn missed_while_down_stop_fires_once_late_start_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let t = now();
        let sched = |id: &str, server: &str, action, at: i64| StoredSchedule {
            id: id.into(),
            server_uid: server.into(),
            action,
            cron: None,
            at: Some(at),
            time: Some(Value::from(at)),
            source: Source::Api,
            created: t - 1000,
            next: Some(at),
            when_empty: None,
        };
        let f = SchedulesFile {
            version: file::FORMAT,
            schedules: vec![
                sched("s1", "g.a", Action::Stop, t - 600),
                sched("s2", "g.b", Action::Start, t - 600),
                sched("s3", "g.c", Action::Start, t - 5),
                sched("s4", "g.d", Action::Stop, t + 3600),
            ],
            results: Default::default(),
        };
        crate::fsio::atomic::write_json_atomic(&dir.path().join("schedules.json"), &f).unwrap();
        let (s, r) = started(dir.path(), 60).await;
        let a = wait_results(&s, &uid("g.a"), 1, Duration::from_secs(5)).await;
        assert_eq!(a[0].outcome, Outcome::Done);
        let b = wait_results(&s, &uid("g.b"), 1, Duration::from_secs(5)).await;
        assert_eq!(b[0].outcome, Outcome::Skipped);
        assert!(
            b[0].error.as_deref().unwrap().contains("start grace"),
            "{b:?}"
        );
        let c = wait_results(&s, &uid("g.c"), 1, Duration::from_secs(5)).await;
        assert_eq!(c[0].outcome, Outcome::Done);
        s.shutdown().await;
        let mut calls = r.calls.lock().unwrap().clone();
        calls.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            calls,
            vec![("g.a".into(), Action::Stop), ("g.c".into(), Action::Start)]
        );
        // Reopened: only the future timer is left, and nothing fires twice.
        let (s2, r2) = started(dir.path(), 60).await;
        let left: Vec<String> = s2.all().into_iter().map(|v| v.id).collect();
        assert_eq!(left, vec!["s4".to_owned()]);
        assert_eq!(s2.server(&uid("g.a")).results.len(), 1);
        s2.shutdown().await;
        assert!(r2.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn imports_peon_file_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("servers")).unwrap();
        let at = now() + 3600;
        std::fs::write(
            dir.path().join("servers/schedule.json"),
            format!(r#"[{{"server_uid": "g.a", "time": "{at}", "action": "stop"}}]"#),
        )
        .unwrap();
        let (s, _r) = started(dir.path(), 60).await;
        assert_eq!(s.next_stop(&uid("g.a")), Some(Value::from(at.to_string())));
        s.shutdown().await;
        assert!(dir.path().join("schedules.json").is_file());
    }
}
