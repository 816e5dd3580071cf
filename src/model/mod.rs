//! The domain model at the bottom of the layers: the plan format and what it describes. It
//! imports nothing of peon's; the store, the runtime, the plan loader and the service build on it.

pub mod exit;
pub mod lifecycle;
pub mod plan;
pub mod reconfig;
pub mod update;
