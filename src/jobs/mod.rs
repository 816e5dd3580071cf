//! Jobs: every mutating action on a server (create, start, stop, restart, kill, update, destroy,
//! eradicate, backup, scheduled firings, automatic restarts) is recorded as a job with who
//! asked, its steps, its state and its error.
//!
//! - [`model`]: the job record, its compact view for events, and the bounds of the history.
//! - [`store`]: [`Jobs`], the history in memory and in `<data>/jobs.json` (atomic rewrites).
//! - [`scope`]: the job a task runs for ([`Running`]), and [`step`], which records a step of it.
//!
//! The service creates and runs jobs; this module imports nothing above `fsio`.

pub mod model;
pub mod scope;
pub mod store;

pub use model::{Job, JobFilter, JobKind, JobState, JobView, Step};
pub use scope::{Running, as_requester, current, noting_job, requester, step, within};
pub use store::{JobError, Jobs};
