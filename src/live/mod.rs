//! The live model of every server: a registry of server handles, each owning its power lock,
//! its current state, its console and a channel of its events. The service feeds it from the
//! engine's event stream and answers reads from it without asking the engine.
//!
//! - [`registry`]: the handles by uid, and the event bus every handle publishes to.
//! - [`handle`]: one server's handle and its live state.
//! - [`console`]: one server's console: lines, a ring of recent lines, bounded subscriber
//!   queues, a per-server rate limit, and the writer of the game's stdin.
//! - [`policy`]: the restart policy's decisions (limits and back-off).
//! - [`events`]: the events clients can follow.

pub mod console;
pub mod events;
pub mod handle;
pub mod policy;
pub mod registry;

pub use crate::model::exit::{ExitClass, ExitRecord};
pub use events::{Event, EventKind};
pub use handle::{Phase, ServerHandle};
pub use registry::Registry;
