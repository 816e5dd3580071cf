//! File primitives at the bottom of the layers: crash-safe writes and tree helpers. The store and
//! the plan loader build on them; they import nothing of peon's.

pub mod atomic;
pub mod fsutil;
pub mod gamefiles;
pub mod snapshot;
