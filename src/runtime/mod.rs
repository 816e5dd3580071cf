//! The runtime seam: what peon needs of a container engine, as a trait ([`Runtime`]) over peon's
//! own types. The Docker module implements it; nothing above this layer sees bollard's types,
//! and the service holds an `Arc<dyn Runtime>`.
//!
//! The seam covers containers (create, start, stop with a signal and grace, kill, remove,
//! inspect, list, logs, attach with stdin, stats, in-place limits), the engine's event stream,
//! and the images and networks a server needs.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::model::plan::Protocol;

pub mod node;
pub use node::NodeContainers;
pub mod cluster;

/// Label keys peon puts on everything it creates.
pub mod labels {
    /// Marks a container or network as peon's; the value is the daemon instance name.
    pub const INSTANCE: &str = "peon.instance";
    /// The server uid `<game>.<name>`.
    pub const UID: &str = "peon.uid";
    pub const GAME: &str = "peon.game";
    pub const SERVER: &str = "peon.server";
    /// `CONTAINER_TYPE` and `VERSION` of the image, read once at container creation.
    pub const CONTAINER_TYPE: &str = "peon.container_type";
    pub const BUILD_VERSION: &str = "peon.build_version";
    /// Cluster mode: the node id a server's service is pinned to (`node.id==<id>`).
    pub const NODE: &str = "peon.node";
    /// Cluster mode: the service reserves one `gameslot` of its node.
    pub const GAMESLOT: &str = "peon.gameslot";
}

/// Errors of the runtime layer (the engine behind the seam).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the Docker engine at {host} is unreachable: {reason}")]
    Unavailable { host: String, reason: String },
    #[error("{0} was not found on the Docker engine")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PortInUse(String),
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },
    #[error("the Docker engine refused the request: {0}")]
    Engine(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// A container to create.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub hostname: String,
    pub image: String,
    pub env: Vec<String>,
    /// `host_path:container_path` bind mounts.
    pub binds: Vec<String>,
    pub ports: Vec<(u16, Protocol)>,
    /// Host address the ports are published on (`0.0.0.0` for the world, `127.0.0.1` for tests).
    pub publish_ip: String,
    pub labels: HashMap<String, String>,
    pub network: String,
    pub user: Option<String>,
    pub stop_timeout: Duration,
    /// Resource limits applied at creation.
    pub limits: Limits,
}

/// A port a container publishes on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// A container as seen in the engine's list.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    /// created, running, paused, restarting, exited, dead, removing.
    pub state: String,
    pub status: String,
    pub labels: HashMap<String, String>,
    pub ports: Vec<PublishedPort>,
}

impl ContainerInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Details of one container from inspect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerDetails {
    pub id: String,
    pub name: String,
    /// The image as the container was created with (a reference or an id).
    pub image: String,
    /// The id of the image the container runs.
    pub image_id: String,
    pub state: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// How often the engine restarted the container (restart policy).
    pub restart_count: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub labels: HashMap<String, String>,
    /// Whether the container keeps stdin open (console commands need it).
    pub stdin_open: bool,
    /// The engine's restart policy (`no` or empty for none).
    pub restart_policy: String,
    /// The limits the container has now.
    pub limits: Limits,
}

/// What the engine says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub os: String,
}

/// Resource use of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub memory_percent: f64,
    /// The engine's own stats document, as PEON returned it.
    pub raw: serde_json::Value,
}

/// Resource limits of a container; `None` leaves a limit unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    /// CPU in billionths of a core (Docker's `NanoCpus`).
    pub nano_cpus: Option<i64>,
    pub pids: Option<i64>,
}

/// What happened to a container, from the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    Create,
    Start,
    /// The main process exited; the engine's exit code when it gave one.
    Die {
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer hit a process of the container.
    Oom,
    /// A signal was sent to the container (by anyone).
    Kill {
        signal: Option<String>,
    },
    Stop,
    Destroy,
    Other(String),
}

/// One container event.
#[derive(Debug, Clone)]
pub struct RuntimeEvent {
    pub action: EventAction,
    pub container_id: String,
    /// The container's name, without a leading `/`.
    pub container: String,
    /// The container's labels (peon's uid and instance among them).
    pub labels: HashMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
}

impl RuntimeEvent {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A live attachment to a container's console: its output (stdout and stderr, in order) and its
/// stdin. The output ends when the container stops.
pub struct Attached {
    pub output: BoxStream<'static, Result<Bytes>>,
    pub input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// A boxed future of the runtime.
pub type RtFuture<'a, T> = BoxFuture<'a, Result<T>>;

/// What peon needs of a container engine.
pub trait Runtime: Send + Sync + 'static {
    /// Where the engine is (for messages).
    fn host(&self) -> &str;
    /// The engine's version, proving it answers.
    fn info(&self) -> RtFuture<'_, EngineInfo>;

    /// All containers (running or not) carrying `label=value`.
    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, Vec<ContainerInfo>>;
    /// Every running container on the engine, peon's or not.
    fn list_running(&self) -> RtFuture<'_, Vec<ContainerInfo>>;
    /// One container by name; `None` when it does not exist.
    fn inspect<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<ContainerDetails>>;
    /// Creates a container (not started); returns its id.
    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> RtFuture<'a, String>;
    /// Starts a container; starting a running one is not an error.
    fn start<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()>;
    /// Stops a container: `signal` (the image's stop signal, SIGTERM, when `None`), then SIGKILL
    /// after `grace`. Returns once it has exited; a stopped container is not an error.
    fn stop<'a>(
        &'a self,
        name: &'a str,
        signal: Option<&'a str>,
        grace: Duration,
    ) -> RtFuture<'a, ()>;
    /// Sends `signal` to the container's main process.
    fn kill<'a>(&'a self, name: &'a str, signal: &'a str) -> RtFuture<'a, ()>;
    /// Removes a container (forcefully); a missing one is not an error.
    fn remove<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()>;
    /// The last `tail` lines of a container's output.
    fn logs<'a>(&'a self, name: &'a str, tail: usize) -> RtFuture<'a, Vec<String>>;
    /// Attaches to a container's stdin, stdout and stderr (live output only).
    fn attach<'a>(&'a self, name: &'a str) -> RtFuture<'a, Attached>;
    /// One stats sample; `None` when the container is not running.
    fn stats<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<Stats>>;
    /// Changes a running container's limits in place.
    fn update_limits<'a>(&'a self, name: &'a str, limits: Limits) -> RtFuture<'a, ()>;
    /// The engine's container events since `since` (Unix seconds; past events are replayed),
    /// for containers labelled `label=value`. The stream ends or fails when the engine goes away.
    fn events<'a>(
        &'a self,
        since: i64,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, BoxStream<'static, Result<RuntimeEvent>>>;

    /// The environment an image declares; `None` when the image is not present.
    fn image_env<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<Vec<String>>>;
    /// The image's size in bytes; `None` when it is not present.
    fn image_size<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<u64>>;
    /// Pulls an image.
    fn pull_image<'a>(&'a self, image: &'a str) -> RtFuture<'a, ()>;
    /// The id (`sha256:...`) of a local image; `None` when it is not present.
    fn image_id<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<String>>;
    /// Tags a local image (`source`: an id or a reference) as `target` (`repo:tag`).
    fn tag_image<'a>(&'a self, source: &'a str, target: &'a str) -> RtFuture<'a, ()>;
    /// Removes an image reference (a tag; the image goes with its last one); a missing one is
    /// not an error.
    fn remove_image<'a>(&'a self, image: &'a str) -> RtFuture<'a, ()>;
    /// Creates a bridge network unless it exists (a subnet from `fallback_pool` when the
    /// engine's pools are used up).
    fn ensure_network<'a>(
        &'a self,
        name: &'a str,
        labels: &'a HashMap<String, String>,
        fallback_pool: &'a str,
    ) -> RtFuture<'a, ()>;
    /// Removes a network; a missing one is not an error.
    fn remove_network<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()>;
}
