//! Webhooks: notifications of server events to HTTP receivers, signed, retried, persisted.
//!
//! - A hook is a URL, the event names it wants, an optional secret (the key of the
//!   `X-Peon-Signature` HMAC; never logged, never listed) and a format (peon's JSON, or
//!   Discord embeds for Discord's webhook URLs). Hooks come from the configuration file
//!   (`source: config`) and from the API (`source: api`, kept in `<data>/hooks/hooks.json`).
//! - [`Hooks::enqueue`] never waits: it hands the message to each interested hook's worker.
//!   One worker per hook sends its deliveries in order, so a slow or failing receiver delays
//!   only its own messages, never the daemon nor other hooks.
//! - A delivery is written to `<data>/hooks/queue/<id>.json` (atomically) before its first
//!   attempt and removed once delivered; failures are retried with a doubling back-off; after
//!   the last attempt it goes to `<data>/hooks/dead.jsonl`. At boot the queue is sent again.
//!
//! This module imports only `fsio` and `http`; the service turns live events into messages.

pub mod message;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fsio::atomic;
pub use message::{EVENTS, Format, Message};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How many dead letters `GET /hook/{id}` shows.
const DEAD_SHOWN: usize = 20;

/// Errors of the hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Invalid(String),
    #[error("There is no hook [{0}].")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot write {what}: {reason}")]
    Io { what: &'static str, reason: String },
}

/// Where a hook was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Config,
    Api,
}

/// A hook as it is defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSpec {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Set explicitly; else detected from the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    #[serde(skip, default = "api")]
    pub source: Source,
}

fn api() -> Source {
    Source::Api
}

impl HookSpec {
    /// Checks the id, URL and event names.
    pub fn validate(&self) -> Result<(), HookError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(HookError::Invalid(format!(
                "Invalid hook id [{}]: use 1 to 64 letters, digits, '-' and '_'.",
                self.id
            )));
        }
        let url_ok = reqwest::Url::parse(&self.url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !url_ok {
            return Err(HookError::Invalid(format!(
                "The hook [{}] needs an http:// or https:// URL.",
                self.id
            )));
        }
        if self.events.is_empty() {
            return Err(HookError::Invalid(format!(
                "The hook [{}] needs at least one event (or \"*\").",
                self.id
            )));
        }
        for e in &self.events {
            if e != "*" && !EVENTS.contains(&e.as_str()) {
                return Err(HookError::Invalid(format!(
                    "Unknown event [{e}]. Events: {}, or * for all.",
                    EVENTS.join(", ")
                )));
            }
        }
        Ok(())
    }

    pub fn format(&self) -> Format {
        self.format.unwrap_or_else(|| Format::detect(&self.url))
    }

    fn wants(&self, event: &str) -> bool {
        event == "test" || self.events.iter().any(|e| e == "*" || e == event)
    }
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct HooksConfig {
    /// `<data>/hooks`.
    pub dir: PathBuf,
    /// Attempts before a delivery is a dead letter.
    pub attempts: u32,
    /// The wait before the second attempt (doubled after each failure).
    pub backoff: Duration,
    /// How long a receiver gets to answer.
    pub timeout: Duration,
}

/// What a hook did since the daemon started.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct HookStatus {
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    pub dead: u64,
    /// Deliveries waiting or being retried.
    pub pending: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivered: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A hook as the API shows it: no secret, only whether it has one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HookInfo {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub format: Format,
    pub signed: bool,
    pub source: Source,
    pub status: HookStatus,
}

/// A delivery that ran out of attempts.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// When it was given up (RFC 3339).
    pub time: String,
    pub hook: String,
    pub delivery: String,
    pub event: String,
    pub uid: String,
    pub attempts: u32,
    pub error: String,
}

/// One message for one hook.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    id: String,
    hook: String,
    attempts: u32,
    message: Message,
}

struct Entry {
    spec: HookSpec,
    tx: Option<mpsc::UnboundedSender<Delivery>>,
    task: Option<JoinHandle<()>>,
    status: Arc<Mutex<HookStatus>>,
    pending: Arc<AtomicUsize>,
}

/// Every hook and its worker.
pub struct Hooks {
    cfg: HooksConfig,
    client: reqwest::Client,
    hooks: Mutex<BTreeMap<String, Entry>>,
    started: AtomicBool,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> HookError {
    move |e| HookError::Io {
        what,
        reason: e.to_string(),
    }
}

impl Hooks {
    /// Reads the hooks made through the API and adds those of the configuration file. No
    /// delivery is made before [`Hooks::start`].
    pub fn open(cfg: HooksConfig, configured: Vec<HookSpec>) -> Result<Hooks, HookError> {
        std::fs::create_dir_all(cfg.dir.join("queue")).map_err(io_err("the hooks directory"))?;
        let mut hooks = BTreeMap::new();
        for mut spec in configured {
            spec.source = Source::Config;
            spec.validate()?;
            if hooks.contains_key(&spec.id) {
                return Err(HookError::Conflict(format!(
                    "The hook [{}] is configured twice.",
                    spec.id
                )));
            }
            hooks.insert(spec.id.clone(), Entry::new(spec));
        }
        for spec in read_saved(&cfg.dir.join("hooks.json")) {
            if hooks.contains_key(&spec.id) {
                tracing::warn!(hook = %spec.id, "a hook of the configuration file has the id of one made through the API; the configured one is used");
                continue;
            }
            hooks.insert(spec.id.clone(), Entry::new(spec));
        }
        let client = crate::http::client_builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| HookError::Io {
                what: "the webhook client",
                reason: e.to_string(),
            })?;
        Ok(Hooks {
            cfg,
            client,
            hooks: Mutex::new(hooks),
            started: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a worker per hook and sends the deliveries the queue kept (once; in a runtime).
    pub async fn start(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let queue = self.cfg.dir.join("queue");
        let pending = tokio::task::spawn_blocking(move || read_queue(&queue))
            .await
            .unwrap_or_default();
        let mut hooks = self.lock();
        for e in hooks.values_mut() {
            self.spawn_worker(e);
        }
        for d in pending {
            match hooks
                .get(&d.hook)
                .and_then(|e| e.tx.as_ref().map(|t| (t, e)))
            {
                Some((tx, e)) => {
                    e.pending.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(d);
                }
                None => {
                    tracing::warn!(hook = %d.hook, delivery = %d.id, "dropped a queued delivery of a hook that no longer exists");
                    let _ = std::fs::remove_file(self.queue_file(&d.id));
                }
            }
        }
        tracing::info!(hooks = hooks.len(), "webhooks ready");
    }

    fn spawn_worker(&self, e: &mut Entry) {
        let (tx, rx) = mpsc::unbounded_channel();
        let w = Worker {
            spec: e.spec.clone(),
            cfg: self.cfg.clone(),
            client: self.client.clone(),
            status: e.status.clone(),
            pending: e.pending.clone(),
        };
        e.tx = Some(tx);
        e.task = Some(tokio::spawn(w.run(rx)));
    }

    fn queue_file(&self, id: &str) -> PathBuf {
        self.cfg.dir.join("queue").join(format!("{id}.json"))
    }

    /// Hands `m` to every hook that wants its event. Never waits.
    pub fn enqueue(&self, m: &Message) {
        for e in self.lock().values() {
            if m.event == "test" || !e.spec.wants(&m.event) {
                continue;
            }
            e.send(m);
        }
    }

    /// Sends a `test` message to one hook.
    pub fn test(&self, id: &str, m: &Message) -> Result<(), HookError> {
        let hooks = self.lock();
        let e = hooks
            .get(id)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        e.send(m);
        Ok(())
    }

    /// Every hook, by id.
    pub fn list(&self) -> Vec<HookInfo> {
        self.lock().values().map(Entry::info).collect()
    }

    /// One hook and its latest dead letters (newest first; blocking file read).
    pub fn get(&self, id: &str) -> Result<(HookInfo, Vec<DeadLetter>), HookError> {
        let info = self
            .lock()
            .get(id)
            .map(Entry::info)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        let dead = read_dead(&self.cfg.dir.join("dead.jsonl"), id, DEAD_SHOWN);
        Ok((info, dead))
    }

    /// Adds a hook (made through the API) and saves the API's hooks (blocking file write).
    pub fn add(&self, mut spec: HookSpec) -> Result<HookInfo, HookError> {
        spec.source = Source::Api;
        spec.validate()?;
        let mut hooks = self.lock();
        if hooks.contains_key(&spec.id) {
            return Err(HookError::Conflict(format!(
                "There is already a hook [{}].",
                spec.id
            )));
        }
        let mut e = Entry::new(spec);
        let mut saved: Vec<HookSpec> = saved_specs(&hooks);
        saved.push(e.spec.clone());
        self.save(&saved)?;
        if self.started.load(Ordering::SeqCst) {
            self.spawn_worker(&mut e);
        }
        let info = e.info();
        hooks.insert(e.spec.id.clone(), e);
        tracing::info!(hook = %info.id, events = ?info.events, "webhook added");
        Ok(info)
    }

    /// Removes a hook made through the API, with its pending deliveries (blocking file work).
    pub fn remove(&self, id: &str) -> Result<(), HookError> {
        let mut hooks = self.lock();
        let e = hooks
            .get(id)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        if e.spec.source == Source::Config {
            return Err(HookError::Conflict(format!(
                "The hook [{id}] comes from the configuration file; remove it there."
            )));
        }
        let saved: Vec<HookSpec> = saved_specs(&hooks)
            .into_iter()
            .filter(|s| s.id != id)
            .collect();
        self.save(&saved)?;
        if let Some(e) = hooks.remove(id) {
            if let Some(t) = e.task {
                t.abort();
            }
        }
        drop(hooks);
        for d in read_queue(&self.cfg.dir.join("queue")) {
            if d.hook == id {
                let _ = std::fs::remove_file(self.queue_file(&d.id));
            }
        }
        tracing::info!(hook = %id, "webhook removed");
        Ok(())
    }

    fn save(&self, specs: &[HookSpec]) -> Result<(), HookError> {
        let bytes = serde_json::to_vec_pretty(specs).map_err(|e| HookError::Io {
            what: "the hooks file",
            reason: e.to_string(),
        })?;
        // It holds the hooks' secrets.
        atomic::write_atomic_mode(&self.cfg.dir.join("hooks.json"), &bytes, 0o600)
            .map_err(io_err("the hooks file"))
    }

    /// Stops the workers (the queue on disk stays).
    pub fn shutdown(&self) {
        for e in self.lock().values_mut() {
            e.tx = None;
            if let Some(t) = e.task.take() {
                t.abort();
            }
        }
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn saved_specs(hooks: &BTreeMap<String, Entry>) -> Vec<HookSpec> {
    hooks
        .values()
        .filter(|e| e.spec.source == Source::Api)
        .map(|e| e.spec.clone())
        .collect()
}

impl Entry {
    fn new(spec: HookSpec) -> Entry {
        Entry {
            spec,
            tx: None,
            task: None,
            status: Arc::default(),
            pending: Arc::default(),
        }
    }

    fn send(&self, m: &Message) {
        let Some(tx) = &self.tx else { return };
        let d = Delivery {
            id: format!(
                "{}-{}",
                chrono::Utc::now().format("%Y%m%d-%H%M%S%6f"),
                atomic::random_suffix()
            ),
            hook: self.spec.id.clone(),
            attempts: 0,
            message: m.clone(),
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        if tx.send(d).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn info(&self) -> HookInfo {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        status.pending = self.pending.load(Ordering::SeqCst);
        HookInfo {
            id: self.spec.id.clone(),
            url: self.spec.url.clone(),
            events: self.spec.events.clone(),
            format: self.spec.format(),
            signed: self.spec.secret.is_some(),
            source: self.spec.source,
            status,
        }
    }
}

/// Sends one hook's deliveries, one at a time, in order.
struct Worker {
    spec: HookSpec,
    cfg: HooksConfig,
    client: reqwest::Client,
    status: Arc<Mutex<HookStatus>>,
    pending: Arc<AtomicUsize>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Delivery>) {
        while let Some(d) = rx.recv().await {
            self.deliver(d).await;
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, HookStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn blocking(&self, f: impl FnOnce(&Path) -> std::io::Result<()> + Send + 'static) {
        let dir = self.cfg.dir.clone();
        let r = tokio::task::spawn_blocking(move || f(&dir)).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(hook = %self.spec.id, "webhook queue: {e}");
        }
    }

    async fn deliver(&self, mut d: Delivery) {
        let file = format!("queue/{}.json", d.id);
        let snapshot = d.clone();
        let f = file.clone();
        self.blocking(move |dir| atomic::write_json_atomic(&dir.join(f), &snapshot))
            .await;
        loop {
            match self.attempt(&d).await {
                Ok(()) => {
                    let f = file.clone();
                    self.blocking(move |dir| std::fs::remove_file(dir.join(f)))
                        .await;
                    let mut s = self.status();
                    s.delivered += 1;
                    s.last_delivered = Some(now());
                    tracing::info!(hook = %self.spec.id, delivery = %d.id, event = %d.message.event, uid = %d.message.uid, attempts = d.attempts + 1, "webhook delivered");
                    return;
                }
                Err(e) => {
                    d.attempts += 1;
                    {
                        let mut s = self.status();
                        s.failed_attempts += 1;
                        s.last_error = Some(e.clone());
                    }
                    if d.attempts >= self.cfg.attempts {
                        tracing::warn!(hook = %self.spec.id, delivery = %d.id, attempts = d.attempts, "webhook delivery given up: {e}");
                        let dead = DeadLetter {
                            time: now(),
                            hook: d.hook.clone(),
                            delivery: d.id.clone(),
                            event: d.message.event.clone(),
                            uid: d.message.uid.clone(),
                            attempts: d.attempts,
                            error: e,
                        };
                        let f = file.clone();
                        self.blocking(move |dir| {
                            append_dead(&dir.join("dead.jsonl"), &dead)?;
                            std::fs::remove_file(dir.join(f))
                        })
                        .await;
                        self.status().dead += 1;
                        return;
                    }
                    let wait = backoff(self.cfg.backoff, d.attempts);
                    tracing::info!(hook = %self.spec.id, delivery = %d.id, attempt = d.attempts, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed: {e}");
                    let (snapshot, f) = (d.clone(), file.clone());
                    self.blocking(move |dir| atomic::write_json_atomic(&dir.join(f), &snapshot))
                        .await;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, d: &Delivery) -> Result<(), String> {
        let body = message::body(&d.message, self.spec.format(), &d.id);
        let mut req = self
            .client
            .post(&self.spec.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Peon-Event", &d.message.event)
            .header("X-Peon-Delivery", &d.id);
        if let Some(secret) = &self.spec.secret {
            req = req.header("X-Peon-Signature", message::signature(secret, &body));
        }
        match req.body(body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the receiver answered {}", r.status())),
            // Without the URL: it may carry a token (Discord's do).
            Err(e) => Err(describe(e)),
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the receiver did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the receiver".into()
    } else {
        format!("the request failed: {}", e.without_url())
    }
}

/// The wait after `attempts` failures: `first`, doubled each time, at most [`MAX_BACKOFF`].
fn backoff(first: Duration, attempts: u32) -> Duration {
    first
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF)
}

fn read_saved(path: &Path) -> Vec<HookSpec> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), "unreadable hooks file: {e}");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// The queued deliveries, oldest first (ids start with their time).
fn read_queue(dir: &Path) -> Vec<Delivery> {
    let mut out: Vec<Delivery> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn append_dead(path: &Path, d: &DeadLetter) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut line = serde_json::to_vec(d).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// The last `n` dead letters of `hook`, newest first.
fn read_dead(path: &Path, hook: &str, n: usize) -> Vec<DeadLetter> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<DeadLetter>(l).ok())
        .filter(|d| d.hook == hook)
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, url: &str, events: &[&str]) -> HookSpec {
        HookSpec {
            id: id.into(),
            url: url.into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secret: Some("s3cret".into()),
            format: None,
            source: Source::Api,
        }
    }

    #[test]
    fn specs_are_checked() {
        assert!(
            spec("a", "http://127.0.0.1:1/x", &["crashed"])
                .validate()
                .is_ok()
        );
        assert!(spec("a", "http://127.0.0.1:1/x", &["*"]).validate().is_ok());
        assert!(
            spec("a b", "http://127.0.0.1:1/x", &["crashed"])
                .validate()
                .is_err()
        );
        assert!(spec("a", "ftp://x/y", &["crashed"]).validate().is_err());
        assert!(spec("a", "http://127.0.0.1:1/x", &[]).validate().is_err());
        assert!(
            spec("a", "http://127.0.0.1:1/x", &["exploded"])
                .validate()
                .is_err()
        );
        let s = spec("a", "http://127.0.0.1:1/x", &["crashed", "stopped"]);
        assert!(s.wants("crashed") && s.wants("test") && !s.wants("started"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let f = Duration::from_millis(100);
        assert_eq!(backoff(f, 1), Duration::from_millis(100));
        assert_eq!(backoff(f, 2), Duration::from_millis(200));
        assert_eq!(backoff(f, 4), Duration::from_millis(800));
        assert_eq!(backoff(f, 40), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn api_hooks_are_saved_without_showing_secrets_and_config_hooks_stay() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HooksConfig {
            dir: dir.path().join("hooks"),
            attempts: 2,
            backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        };
        let configured = vec![spec("conf", "http://127.0.0.1:1/c", &["*"])];
        let hooks = Hooks::open(cfg.clone(), configured.clone()).unwrap();
        hooks
            .add(spec(
                "made",
                "https://discord.com/api/webhooks/1/t",
                &["crashed"],
            ))
            .unwrap();
        assert!(matches!(
            hooks.add(spec("made", "http://127.0.0.1:1/x", &["crashed"])),
            Err(HookError::Conflict(_))
        ));
        assert!(matches!(hooks.remove("conf"), Err(HookError::Conflict(_))));
        let list = hooks.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].format, Format::Discord);
        assert!(list[1].signed);
        assert!(!serde_json::to_string(&list).unwrap().contains("s3cret"));
        drop(hooks);
        let again = Hooks::open(cfg.clone(), configured.clone()).unwrap();
        let ids: Vec<String> = again.list().into_iter().map(|h| h.id).collect();
        assert_eq!(ids, ["conf", "made"]);
        again.remove("made").unwrap();
        drop(again);
        assert_eq!(Hooks::open(cfg, configured).unwrap().list().len(), 1);
    }
}
