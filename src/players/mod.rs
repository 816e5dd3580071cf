//! Asking a game who is playing, and holding a stopped game's ports until someone connects.
//!
//! The protocol codecs are pure ([`a2s`]: Steam's A2S_INFO; [`slp`]: Minecraft's Server List
//! Ping); [`query`] sends them to a game with a timeout; [`hold`] binds a stopped server's ports
//! and reports the first connection or packet (wake on connect). This module imports nothing of
//! peon's.

pub mod a2s;
pub mod hold;
pub mod query;
pub mod slp;

/// What a game says about its players.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Players {
    pub online: u32,
    pub max: u32,
}

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed answer: {0}")]
    Malformed(String),
}
