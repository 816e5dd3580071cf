//! Live views of running servers: what flows between a game's console and the clients watching
//! it.
//!
//! - [`console`]: one server's console: its output split into lines, a ring of recent lines,
//!   bounded subscriber queues, a per-server rate limit, and the writer of the game's stdin.

pub mod console;
