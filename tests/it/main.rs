//! Integration tests against the real Docker engine. One binary, one module per area.

mod cluster_harness;
mod support;

mod access;
mod agent;
mod api_basics;
mod backups;
mod cli;
mod cluster;
mod cluster_nodeloss;
mod cluster_ops;
mod cluster_stack;
mod compose;
mod create;
mod hooks;
mod jobs;
mod lifecycle;
mod live;
mod metrics;
mod plans;
mod planver;
mod players;
mod resilience;
mod resources;
mod rollouts;
mod schedules;
mod updates;
