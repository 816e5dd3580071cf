//! The container-level part of the seam that only a container's own node can serve: inspect,
//! logs, stats, kill and attach. A local engine serves them through [`Local`]; in cluster mode the node's peon
//! agent does (`agent::client::AgentClient`), and the cluster runtime delegates these calls to
//! the agent of the node the server is pinned to.

use super::{Attached, ContainerDetails, RtFuture, Runtime, Stats};

/// What peon asks of the node a container runs on. `name` is the container name peon gives a
/// server (`peon.warcamp.<game>.<name>`).
pub trait NodeContainers: Send + Sync + 'static {
    /// One container; `None` when it does not exist.
    fn inspect<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<ContainerDetails>>;
    /// The last `tail` lines of its output.
    fn logs<'a>(&'a self, name: &'a str, tail: usize) -> RtFuture<'a, Vec<String>>;
    /// One stats sample; `None` when it is not running.
    fn stats<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<Stats>>;
    /// Sends `signal` to its main process.
    fn kill<'a>(&'a self, name: &'a str, signal: &'a str) -> RtFuture<'a, ()>;
    /// Its stdin, and its stdout and stderr (live output only).
    fn attach<'a>(&'a self, name: &'a str) -> RtFuture<'a, Attached>;
}

/// A local engine serves its own containers (single-host mode, or the agent itself).
pub struct Local<R: ?Sized>(pub std::sync::Arc<R>);

impl<R: Runtime + ?Sized> NodeContainers for Local<R> {
    fn inspect<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<ContainerDetails>> {
        self.0.inspect(name)
    }
    fn logs<'a>(&'a self, name: &'a str, tail: usize) -> RtFuture<'a, Vec<String>> {
        self.0.logs(name, tail)
    }
    fn stats<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<Stats>> {
        self.0.stats(name)
    }
    fn kill<'a>(&'a self, name: &'a str, signal: &'a str) -> RtFuture<'a, ()> {
        self.0.kill(name, signal)
    }
    fn attach<'a>(&'a self, name: &'a str) -> RtFuture<'a, Attached> {
        self.0.attach(name)
    }
}
