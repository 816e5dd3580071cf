//! peon: a game-server orchestrator compatible with PEON. See the README for an overview and
//! `docs/` for the API, configuration and operations.

pub mod access;
pub mod agent;
pub mod api;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod fsio;
pub mod hooks;
pub mod http;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod model;
pub mod names;
pub mod plans;
pub mod players;
pub mod rollout;
pub mod runtime;
pub mod schedule;
pub mod service;
pub mod store;
