//! What clients see of a server: PEON's ServerObject, built from the store's index and the live
//! model (no engine call, no disk read), plus stats and logs.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Result, ServerService, ServiceError};
use crate::live::{ExitRecord, Phase, ServerHandle};
use crate::model::update::UpdateRecord;
use crate::names::Uid;
use crate::store::ServerRecord;

/// PEON's ServerObject, with peon's additions (`uid`, `ports`, `plan_version`, the restart
/// policy and the exits).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerObject {
    pub game_uid: String,
    pub servername: String,
    pub uid: String,
    /// The image's `CONTAINER_TYPE`, or `unknown`.
    pub container_type: String,
    /// The image's `VERSION`, or `unknown`.
    pub build_version: String,
    /// Docker's state: created, running, paused, restarting, exited, dead; `missing` when the
    /// server has no container (it is recreated on start); `unknown` until the engine first
    /// answered after peon started.
    pub container_state: String,
    /// `starting` (running, not yet ready), `running` (ready), `unhealthy` (not ready in time),
    /// `stopping`; `unreachable` in cluster mode while its node does not answer; otherwise the
    /// container state.
    pub server_state: String,
    /// Why the server is stopped or unhealthy, when peon knows (e.g. the restart policy gave up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Files the game container wrote into `config/` (only while running); secrets masked.
    #[schema(value_type = Object)]
    pub server_config: Map<String, Value>,
    pub description: String,
    /// The pending stop timer: Unix seconds, or the `epoch_time` string as given.
    #[schema(value_type = Option<Object>)]
    pub time: Option<Value>,
    /// Host ports the server publishes, `PORT/proto`.
    pub ports: Vec<String>,
    pub plan_version: Option<String>,
    /// `never`, `on-crash` or `always`.
    pub restart_policy: String,
    /// The stop grace period in seconds.
    pub stop_grace_s: u64,
    /// The server's resource limits (its own, else its plan's); absent ones are unlimited.
    pub limits: LimitsView,
    /// Players on the game as it last answered a query (every few seconds); `null` when
    /// unknown: no `query` in the plan, not running, or no answer.
    pub players: Option<u32>,
    pub max_players: Option<u32>,
    /// Seconds with nobody playing after which the game is stopped; `null`: never.
    pub idle_stop_s: Option<u64>,
    /// No idle stop within this many seconds of a start.
    pub idle_grace_s: u64,
    /// After an idle stop, peon holds the game's ports and starts it on the first connection.
    pub wake_on_connect: bool,
    /// A backup (`save`) is taken before an idle stop.
    pub backup_before_idle_stop: bool,
    /// Stopped for being idle, its ports held by peon: the first connection starts it.
    pub sleeping: bool,
    /// Disk used by the server directory, as last measured (every minute and after actions);
    /// `None` until first measured.
    pub disk_bytes: Option<u64>,
    /// The last exit of the game.
    pub last_exit: Option<ExitRecord>,
    /// The backup retention in force (the server's own, or the daemon's default).
    pub backup_policy: crate::backup::Policy,
    /// Where new backups of this server go: `local` or `s3`.
    pub backup_target: String,
    /// The last exits (up to 20, oldest first); in `GET /server/get`, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exits: Option<Vec<ExitRecord>>,
    /// The image id the server is pinned to (its last known good, kept by a rolled-back
    /// update) instead of its plan's image; absent when it follows its plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pin: Option<String>,
    /// The last update and how it ended (kept, or rolled back and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateRecord>,
    /// Cluster mode: actions asked for while the server's node was unreachable, queued (their
    /// jobs are `queued`) and applied in order when it answers again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<crate::store::PendingChange>,
    /// Cluster mode: the node the server is placed on; players reach it at `node.address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::store::NodePin>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsView>,
}

/// A server's resource limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// CPU cores, as a decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// The disk quota of the server directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<i64>,
}

impl From<crate::model::lifecycle::PlanLimits> for LimitsView {
    fn from(l: crate::model::lifecycle::PlanLimits) -> Self {
        LimitsView {
            memory_bytes: l.memory_bytes,
            cpus: l.nano_cpus.map(|n| n as f64 / 1e9),
            pids: l.pids,
            disk_bytes: l.disk_bytes,
        }
    }
}

/// Resource use, added by `GET /server/stats`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_percent: f64,
    /// Memory use as a percentage of the server's memory limit, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_percent: Option<f64>,
    /// CPU use as a percentage of the server's CPU limit (`cpus`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_limit_percent: Option<f64>,
    /// Processes and threads in the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Processes as a percentage of the server's process limit, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit_percent: Option<f64>,
    pub uptime_s: Option<i64>,
    /// The engine's raw stats document, or "Not available" (PEON's field).
    #[schema(value_type = Object)]
    pub stats: Value,
}

const MISSING: &str = "missing";
const UNKNOWN: &str = "unknown";
/// Cluster mode: the server's node does not answer.
const UNREACHABLE: &str = "unreachable";

impl ServerService {
    /// Builds the ServerObject of `rec` from its live handle.
    pub(super) fn object(&self, rec: &ServerRecord, h: &ServerHandle, full: bool) -> ServerObject {
        let s = h.state();
        // Before the engine first answered, peon does not know the containers yet.
        let synced = *self.synced.borrow();
        let state = if synced {
            s.container
                .as_ref()
                .map_or(MISSING, |c| c.state.as_str())
                .to_owned()
        } else {
            UNKNOWN.to_owned()
        };
        let label = |v: Option<&str>| v.filter(|v| !v.is_empty()).unwrap_or(UNKNOWN).to_owned();
        let server_config = if state == "running" {
            s.config.clone()
        } else {
            Map::new()
        };
        let ports = rec
            .plan
            .port_groups
            .first()
            .map(|g| {
                g.iter()
                    .flat_map(|p| {
                        p.protocols
                            .iter()
                            .map(move |pr| format!("{}/{}", p.port, pr.as_str()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let state_reason = match &s.phase {
            Phase::Unhealthy(r) => Some(r.clone()),
            Phase::Stopped => s.note.clone(),
            _ => None,
        };
        ServerObject {
            game_uid: rec.uid.game().to_owned(),
            servername: rec.uid.name().to_owned(),
            uid: rec.uid.to_string(),
            container_type: label(s.container.as_ref().map(|c| c.container_type.as_str())),
            build_version: label(s.container.as_ref().map(|c| c.build_version.as_str())),
            server_state: if self.is_unreachable(&rec.uid) {
                UNREACHABLE.to_owned()
            } else if synced {
                crate::live::handle::server_state(&s)
            } else {
                UNKNOWN.to_owned()
            },
            state_reason,
            container_state: state,
            server_config,
            description: rec
                .description()
                .filter(|d| !d.is_empty())
                .unwrap_or("None - Please add a description")
                .to_owned(),
            time: self.scheduler.next_stop(&rec.uid),
            ports,
            plan_version: rec.state.plan_version.clone(),
            restart_policy: self.restart_policy(rec).to_string(),
            stop_grace_s: self.stop_grace(rec).as_secs(),
            limits: self.limits_of(rec).into(),
            disk_bytes: s.disk.map(|d| d.bytes),
            players: s.players,
            max_players: s.max_players,
            idle_stop_s: rec.state.idle_stop_s,
            idle_grace_s: rec
                .state
                .idle_grace_s
                .unwrap_or(super::players::IDLE_GRACE.as_secs()),
            wake_on_connect: rec.state.wake_on_connect,
            backup_before_idle_stop: rec.state.backup_before_idle_stop,
            sleeping: self.is_sleeping(&rec.uid),
            last_exit: s.exits.last().cloned(),
            backup_policy: self.backup_policy(rec),
            backup_target: self.backup_target(rec),
            exits: full.then(|| s.exits.clone()),
            image_pin: rec.state.image_pin.clone(),
            last_update: rec.state.last_update.clone(),
            pending: rec.state.pending.clone(),
            node: rec.state.node.clone(),
            stats: None,
        }
    }

    /// All servers, sorted by game then name, from memory.
    pub async fn list(&self) -> Result<Vec<ServerObject>> {
        Ok(self
            .store
            .list()
            .iter()
            .map(|r| self.object(r, &self.handle_of(&r.uid), false))
            .collect())
    }

    /// One server, from memory.
    pub async fn get(&self, uid: &Uid) -> Result<ServerObject> {
        let rec = self.record(uid)?;
        Ok(self.object(&rec, &self.handle_of(uid), true))
    }

    /// One server with its resource use.
    pub async fn stats(&self, uid: &Uid) -> Result<ServerObject> {
        let mut obj = self.get(uid).await?;
        let view = if obj.container_state == "running" {
            // The run's start time is in the live model: one engine call, for the stats.
            let started_at = self
                .handle_of(uid)
                .state()
                .container
                .as_ref()
                .and_then(|c| c.started_at.clone());
            let stats = self.runtime.stats(&uid.container_name()).await;
            let uptime_s = started_at.and_then(|s| {
                chrono::DateTime::parse_from_rfc3339(&s)
                    .ok()
                    .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
            });
            let limits = self.limits_of(&*self.record(uid)?);
            match stats? {
                Some(s) => {
                    let pids = s.raw.pointer("/pids_stats/current").and_then(Value::as_u64);
                    let pct = |use_: f64, limit: Option<f64>| {
                        limit
                            .filter(|l| *l > 0.0)
                            .map(|l| (use_ / l * 10_000.0).round() / 100.0)
                    };
                    StatsView {
                        cpu_percent: s.cpu_percent,
                        memory_bytes: s.memory_bytes,
                        memory_percent: s.memory_percent,
                        memory_limit_percent: pct(
                            s.memory_bytes as f64,
                            limits.memory_bytes.map(|m| m as f64),
                        ),
                        // `cpu_percent` counts 100 per busy core.
                        cpu_limit_percent: pct(
                            s.cpu_percent,
                            limits.nano_cpus.map(|n| n as f64 / 1e7),
                        ),
                        pids,
                        pids_limit_percent: pids
                            .and_then(|p| pct(p as f64, limits.pids.map(|l| l as f64))),
                        uptime_s,
                        stats: s.raw,
                    }
                }
                None => not_available(),
            }
        } else {
            not_available()
        };
        obj.stats = Some(view);
        Ok(obj)
    }

    /// The last `lines` lines of the server's console output, from the engine's log.
    pub async fn logs(&self, uid: &Uid, lines: usize) -> Result<Vec<String>> {
        self.record(uid)?;
        match self.runtime.logs(&uid.container_name(), lines).await {
            Ok(l) => Ok(l),
            Err(crate::runtime::RuntimeError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(ServiceError::Docker(e)),
        }
    }
}

fn not_available() -> StatsView {
    StatsView {
        cpu_percent: 0.0,
        memory_bytes: 0,
        memory_percent: 0.0,
        memory_limit_percent: None,
        cpu_limit_percent: None,
        pids: None,
        pids_limit_percent: None,
        uptime_s: None,
        stats: Value::String("Not available".into()),
    }
}
