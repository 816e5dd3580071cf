//! What clients see of a server: PEON's ServerObject, built from the store's index and one
//! container listing, plus stats and logs.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Result, ServerService, ServiceError};
use crate::docker::{ContainerInfo, labels};
use crate::names::Uid;
use crate::store::ServerRecord;

/// PEON's ServerObject, with a few additions (`uid`, `ports`, `plan_version`).
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
    /// server has no container (it is recreated on start).
    pub container_state: String,
    /// Same as `container_state` (PEON compatibility).
    pub server_state: String,
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
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsView>,
}

/// Resource use, added by `GET /server/stats`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_percent: f64,
    pub uptime_s: Option<i64>,
    /// The engine's raw stats document, or "Not available" (PEON's field).
    #[schema(value_type = Object)]
    pub stats: Value,
}

const MISSING: &str = "missing";

/// Names of `config/` files whose content is never shown.
fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password", "passwd", "secret", "token", "apikey", "api_key", "rcon",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Reads the small text files of a server's `config/` directory, masking secrets.
fn read_server_config(dir: &Path) -> Map<String, Value> {
    let mut out = Map::new();
    let Ok(entries) = std::fs::read_dir(dir.join("config")) else {
        return out;
    };
    let mut names: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains(".tmp-"))
        .collect();
    names.sort();
    for name in names.into_iter().take(64) {
        let value = if is_secret(&name) {
            "********".to_owned()
        } else {
            match std::fs::read(dir.join("config").join(&name)) {
                Ok(b) if b.len() <= 4096 => String::from_utf8_lossy(&b).trim().to_owned(),
                Ok(_) => "(too large to show)".to_owned(),
                Err(_) => continue,
            }
        };
        out.insert(name, Value::String(value));
    }
    out
}

impl ServerService {
    /// Builds the ServerObject of `rec` given its container (if any).
    pub(super) fn object(&self, rec: &ServerRecord, c: Option<&ContainerInfo>) -> ServerObject {
        let state = c.map_or(MISSING, |c| c.state.as_str()).to_owned();
        let label = |k: &str| {
            c.and_then(|c| c.label(k))
                .filter(|v| !v.is_empty())
                .unwrap_or("unknown")
                .to_owned()
        };
        let server_config = if state == "running" {
            read_server_config(&rec.dir)
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
        ServerObject {
            game_uid: rec.uid.game().to_owned(),
            servername: rec.uid.name().to_owned(),
            uid: rec.uid.to_string(),
            container_type: label(labels::CONTAINER_TYPE),
            build_version: label(labels::BUILD_VERSION),
            server_state: state.clone(),
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
            stats: None,
        }
    }

    /// peon's containers by uid, from one engine call.
    pub(super) async fn containers(&self) -> Result<HashMap<String, ContainerInfo>> {
        let list = self
            .engine
            .list_labelled(labels::INSTANCE, &self.settings.instance)
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| Some((c.label(labels::UID)?.to_owned(), c)))
            .collect())
    }

    /// The container of one server, if it exists.
    pub(super) async fn container(&self, uid: &Uid) -> Result<Option<ContainerInfo>> {
        Ok(self
            .engine
            .list_labelled(labels::UID, &uid.to_string())
            .await?
            .into_iter()
            .find(|c| c.label(labels::INSTANCE) == Some(self.settings.instance.as_str())))
    }

    /// All servers, sorted by game then name.
    pub async fn list(&self) -> Result<Vec<ServerObject>> {
        let containers = self.containers().await?;
        Ok(self
            .store
            .list()
            .iter()
            .map(|r| self.object(r, containers.get(&r.uid.to_string())))
            .collect())
    }

    /// One server.
    pub async fn get(&self, uid: &Uid) -> Result<ServerObject> {
        let rec = self.record(uid)?;
        let c = self.container(uid).await?;
        Ok(self.object(&rec, c.as_ref()))
    }

    /// One server with its resource use.
    pub async fn stats(&self, uid: &Uid) -> Result<ServerObject> {
        let mut obj = self.get(uid).await?;
        let name = uid.container_name();
        let view = if obj.container_state == "running" {
            let (stats, details) =
                tokio::join!(self.engine.stats(&name), self.engine.inspect(&name));
            let uptime_s = details?.and_then(|d| d.started_at).and_then(|s| {
                chrono::DateTime::parse_from_rfc3339(&s)
                    .ok()
                    .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
            });
            match stats? {
                Some(s) => StatsView {
                    cpu_percent: s.cpu_percent,
                    memory_bytes: s.memory_bytes,
                    memory_percent: s.memory_percent,
                    uptime_s,
                    stats: s.raw,
                },
                None => not_available(),
            }
        } else {
            not_available()
        };
        obj.stats = Some(view);
        Ok(obj)
    }

    /// The last `lines` lines of the server's console output.
    pub async fn logs(&self, uid: &Uid, lines: usize) -> Result<Vec<String>> {
        self.record(uid)?;
        match self.engine.logs(&uid.container_name(), lines).await {
            Ok(l) => Ok(l),
            Err(crate::docker::DockerError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(ServiceError::Docker(e)),
        }
    }
}

fn not_available() -> StatsView {
    StatsView {
        cpu_percent: 0.0,
        memory_bytes: 0,
        memory_percent: 0.0,
        uptime_s: None,
        stats: Value::String("Not available".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("config")).unwrap();
        std::fs::write(d.path().join("config/password"), "hunter2\n").unwrap();
        std::fs::write(d.path().join("config/ADMIN_PASSWORD"), "x").unwrap();
        std::fs::write(d.path().join("config/state"), "STARTED\n").unwrap();
        let m = read_server_config(d.path());
        assert_eq!(m["state"], "STARTED");
        assert_eq!(m["password"], "********");
        assert_eq!(m["ADMIN_PASSWORD"], "********");
    }
}
