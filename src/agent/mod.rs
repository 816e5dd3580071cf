//! The peon agent (cluster mode, issue 12): the same binary on every node of a Swarm, `peon
//! agent`, doing the work only a node can do for its own servers: their containers' inspect,
//! logs, stats, kill and console (attach), and their directories (streamed out and in with a
//! checksum, deleted). It talks to its node's local engine socket and holds the node's data
//! dir; it answers only requests signed with the cluster secret ([`auth`]).
//!
//! - [`server`]: the agent's HTTP server (`peon agent`).
//! - [`client`]: [`client::AgentClient`], the manager's HTTP and WebSocket client to one agent,
//!   which also serves the container-level part of the runtime seam
//!   ([`crate::runtime::NodeContainers`]) for the cluster runtime.
//! - [`delegate`]: [`delegate::AgentDelegate`], a node id to its agent (the cluster runtime's
//!   per-node delegate, wired by the daemon).
//! - [`framing`]: a directory on the wire (`tar.zst` and a sha256 trailer).
//!
//! The client half imports only the layers below the runtime seam (`runtime`, `names`,
//! `backup`), so the Docker module's cluster runtime may use it; the server half sits at the
//! top, beside the daemon.

pub mod auth;
pub mod client;
pub mod delegate;
pub mod framing;
pub mod server;

/// The port an agent listens on by default (`peon agent --listen 0.0.0.0:8470`, the stack
/// file's host-mode port): the manager reaches a node's agent at `<node address>:8470`.
pub const DEFAULT_PORT: u16 = 8470;

/// The prefix of every agent route.
pub const PREFIX: &str = "/agent/v1";
