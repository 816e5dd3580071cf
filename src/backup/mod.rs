//! Backups of a whole server directory: a streamed `tar.zst` hashed while it is written
//! ([`archive`]), the catalog of a server's backups beside their metadata ([`catalog`]), the
//! retention policy ([`retention`]), exclude globs ([`glob`]), the unpacking of a tar stream
//! ([`extract`]) and the free-space check ([`space`]). This layer imports only `fsio` and `names`; the service decides when and what.

pub mod archive;
pub mod catalog;
pub mod extract;
pub mod glob;
pub mod retention;
pub mod s3;
pub mod space;

pub use archive::{PackStats, pack, unpack};
pub use catalog::{BackupInfo, Catalog, Reason, valid_id};
pub use retention::Policy;
pub use s3::{S3Catalog, S3Config};
