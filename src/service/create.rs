//! Creating a server from a plan. The server directory is assembled in staging and renamed into
//! place, its container is created, and any failure removes everything that was made: a failed
//! create leaves no directory, no container and no network.

use serde_json::{Map, Value};

use super::container::GAME_USER;
use super::{Result, ServerObject, ServerService, ServiceError};
use crate::fsio::atomic;
use crate::jobs::{JobKind, step};
use crate::model::lifecycle::RestartPolicy;
use crate::names::{self, Uid};
use crate::plans::LoadedPlan;
use crate::schedule::OneShot;
use crate::store::{self, NewServer, ServerState};

/// Everything a client may give when creating a server.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub game: String,
    /// `None`: a random PEON-style name.
    pub name: Option<String>,
    pub description: Option<String>,
    /// Plan settings (environment) given by the user.
    pub settings: Map<String, Value>,
    /// Files to write into the new server's `config/` (PEON 1.0 `json`/`txt` settings).
    pub config_files: Vec<(String, Vec<u8>)>,
    pub start_later: bool,
    /// Keep the files when the first start fails (PEON's `noclean`).
    pub noclean: bool,
    /// A stop timer for the first start.
    pub timer: Option<OneShot>,
    /// The server's restart policy (the plan's when `None`).
    pub restart_policy: Option<RestartPolicy>,
    /// The server's stop grace period (the plan's when `None`).
    pub stop_grace: Option<std::time::Duration>,
    /// Idle stop, its grace, wake on connect, backup before the idle stop.
    pub idle_stop: Option<std::time::Duration>,
    pub idle_grace: Option<std::time::Duration>,
    pub wake_on_connect: bool,
    pub backup_before_idle_stop: bool,
    /// The server's own limits over the plan's (`limits` in the body).
    pub limits: crate::model::lifecycle::LimitsPatch,
    /// Cluster mode: the node (id or hostname) to place the server on; else peon chooses.
    pub node: Option<String>,
    /// Cluster mode: the name of the key asking (private nodes take the servers of their own
    /// key or scope only; see `placement`), kept as the server's `placer`; `None`: every node.
    pub placer: Option<String>,
}

const PREFIXES: [&str; 33] = [
    "black",
    "castle",
    "chapel",
    "cliff",
    "cold",
    "crow",
    "crystal",
    "dark",
    "dragon",
    "eagle",
    "fire",
    "forest",
    "grey",
    "iron",
    "knights",
    "law",
    "mountain",
    "mystic",
    "night",
    "nighthaven",
    "orchid",
    "outlaw",
    "raven",
    "river",
    "sanctuary",
    "shadow",
    "silent",
    "summer",
    "thunder",
    "whiskey",
    "white",
    "winter",
    "wolf",
];
const SUFFIXES: [&str; 30] = [
    "brook", "crest", "dale", "edge", "flake", "ford", "glen", "grove", "haven", "hill", "hollow",
    "keep", "lake", "land", "mead", "meadow", "point", "pool", "port", "ridge", "rock", "springs",
    "stead", "stone", "town", "valley", "view", "ville", "wick", "woods",
];

fn random_index(n: usize) -> usize {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) % n as u64) as usize
}

/// A setting value as the container will see it.
fn setting_text(key: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(ServiceError::BadRequest(format!(
            "The setting {key} must be a string, a number or a boolean."
        ))),
    }
}

/// Builds the server's `config.json` from the plan and the request: PEON's merge, with every
/// required setting checked and unknown settings refused.
fn build_config(
    uid: &Uid,
    loaded: &LoadedPlan,
    req: &CreateRequest,
    group: usize,
) -> Result<Value> {
    let mut doc = loaded.doc.clone();
    let env = doc
        .get_mut("environment")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let unknown: Vec<&String> = req
        .settings
        .keys()
        .filter(|k| !env.contains_key(*k))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&String> = env.keys().collect();
        return Err(ServiceError::BadRequest(format!(
            "Unknown settings for plan [{}]: {unknown:?}. The plan's settings are {known:?}.",
            uid.game()
        )));
    }
    let mut merged = Map::new();
    let mut missing = Vec::new();
    for (k, default) in env {
        let given = match req.settings.get(&k) {
            Some(v) => setting_text(&k, v)?,
            None => None,
        };
        let value = match (given, default) {
            (Some(v), Value::Null) if v.is_empty() => {
                missing.push(k.clone());
                Value::Null
            }
            (Some(v), _) => Value::String(v),
            (None, Value::Null) => {
                missing.push(k.clone());
                Value::Null
            }
            (None, d) => d,
        };
        merged.insert(k, value);
    }
    if !missing.is_empty() {
        return Err(ServiceError::BadRequest(format!(
            "Not all required server settings were provided. Namely: {missing:?}"
        )));
    }
    doc["environment"] = Value::Object(merged);
    if let Some(groups) = doc.get("ports").and_then(Value::as_array)
        && groups.iter().all(Value::is_array)
    {
        doc["ports"] = groups
            .get(group)
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
    }
    let container = uid.container_name();
    let meta = doc
        .as_object_mut()
        .and_then(|d| d.get_mut("metadata"))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            ServiceError::BadRequest(format!("Plan [{}] has no metadata.", uid.game()))
        })?;
    if let Some(d) = &req.description {
        meta.insert("description".into(), Value::String(d.clone()));
    }
    meta.insert("warcamp".into(), Value::String(uid.name().to_owned()));
    meta.insert("hostname".into(), Value::String(container.clone()));
    meta.insert("container_name".into(), Value::String(container));
    Ok(doc)
}

impl ServerService {
    /// A PEON-style random name (`winterglen`) not used by any server of the game.
    pub fn random_name(&self, game: &str) -> String {
        for attempt in 0..200 {
            let mut n = format!(
                "{}{}",
                PREFIXES[random_index(PREFIXES.len())],
                SUFFIXES[random_index(SUFFIXES.len())]
            );
            if attempt >= 100 {
                n.push_str(&random_index(1000).to_string());
            }
            if let Ok(uid) = Uid::new(game, &n)
                && !self.store.contains(&uid)
                && !self.store.data_dir().server_dir(&uid).exists()
            {
                return n;
            }
        }
        format!("server{}", atomic::random_suffix())
    }

    /// Creates a server and, unless `start_later`, starts it.
    pub async fn create(&self, req: CreateRequest) -> Result<ServerObject> {
        let game = names::game_id(&req.game)?.to_owned();
        let name = match &req.name {
            Some(n) => names::server_name(n)?.to_owned(),
            None => self.random_name(&game),
        };
        for (f, _) in &req.config_files {
            names::config_file(f)?;
        }
        let uid = Uid::new(&game, &name)?;
        self.action(&uid, JobKind::Create, self.create_uid(&uid, &game, &req))
            .await
    }

    async fn create_uid(&self, uid: &Uid, game: &str, req: &CreateRequest) -> Result<ServerObject> {
        if req.wake_on_connect {
            self.refuse_wake_in_cluster()?;
        }
        let uid = uid.clone();
        let _guard = self.lock(&uid).await;
        let final_dir = self.store.data_dir().server_dir(&uid);
        if self.store.contains(&uid) || final_dir.exists() {
            return Err(ServiceError::Conflict(format!(
                "There is already a server [{uid}]. Use update on it, or destroy it first."
            )));
        }
        let (loaded, allocation, config, node) = step("plan", async {
            // A newer plan on the source is fetched first (best effort; the local plan
            // otherwise).
            self.plans.refresh_before_create(game).await;
            let loaded = self.plans.load(game)?;
            // Settings are checked before any port or Docker work.
            build_config(&uid, &loaded, req, 0)?;
            let allocation = self.allocation.lock().await;
            // Cluster mode: a node and the port group free on it; else a group free here.
            let (node, group) = if self.cluster.get().is_some() {
                let (n, g) = self
                    .place(
                        &uid,
                        &loaded.plan.port_groups,
                        req.node.as_deref(),
                        &self.placer(req.placer.as_deref()),
                    )
                    .await?;
                (Some(n), g)
            } else if req.node.is_some() {
                return Err(ServiceError::BadRequest(
                    "node is for cluster mode; this peon runs on one host.".into(),
                ));
            } else {
                let g = self
                    .choose_port_group(&uid, &loaded.plan.port_groups)
                    .await?;
                (None, g)
            };
            let config = build_config(&uid, &loaded, req, group)?;
            // The node's agent will hold the directory: it must answer, and say where.
            let node = match node {
                Some(n) => Some(self.with_home(n).await?),
                None => None,
            };
            Ok::<_, ServiceError>((loaded, allocation, config, node))
        })
        .await?;
        let mut state = ServerState {
            wanted_running: false,
            plan_version: loaded.plan.version.clone(),
            created: chrono::Utc::now().timestamp(),
            restart_policy: req.restart_policy,
            stop_grace_s: req.stop_grace.map(|d| d.as_secs()),
            idle_stop_s: req.idle_stop.map(|d| d.as_secs()),
            idle_grace_s: req.idle_grace.map(|d| d.as_secs()),
            wake_on_connect: req.wake_on_connect,
            backup_before_idle_stop: req.backup_before_idle_stop,
            node,
            placer: req.placer.clone(),
            ..ServerState::default()
        };
        req.limits.apply(&mut state.limits);
        let (svc, files, plan_dir, u) = (
            self.me.upgrade(),
            req.config_files.clone(),
            loaded.dir.clone(),
            uid.clone(),
        );
        let svc = svc.ok_or_else(|| ServiceError::Failed("the service is shutting down".into()))?;
        let rec = step("files", async move {
            let rec = tokio::task::spawn_blocking(move || {
                svc.store.create_server(
                    &u,
                    &NewServer {
                        plan_dir: &plan_dir,
                        config: &config,
                        state: &state,
                        config_files: &files,
                        owner: GAME_USER,
                    },
                )
            })
            .await
            .map_err(|e| ServiceError::Failed(format!("create task failed: {e}")))??;
            Ok::<_, ServiceError>(rec)
        })
        .await?;
        drop(allocation);
        tracing::info!(uid = %uid, "server files created");
        if let Err(e) = self.send_to_node(&uid).await {
            self.rollback_create(&rec).await;
            return Err(e);
        }
        if let Err(e) = step("container", self.ensure_container(&rec)).await {
            self.rollback_create(&rec).await;
            return Err(e);
        }
        if req.start_later {
            let h = self.handle_of(&uid);
            self.refresh_container(&h).await?;
            return Ok(self.object(&rec, &h, true));
        }
        match step("start", self.start_locked(&uid, req.timer.clone())).await {
            Ok(o) => Ok(o),
            Err(e) => {
                if req.noclean {
                    tracing::warn!(uid = %uid, "first start failed, files kept (noclean): {e}");
                } else {
                    self.rollback_create(&rec).await;
                }
                Err(e)
            }
        }
    }

    /// Undoes a create: container, network, files, index entry.
    async fn rollback_create(&self, rec: &store::ServerRecord) {
        if let Err(e) = self.remove_container(rec).await {
            tracing::warn!(uid = %rec.uid, "rollback: cannot remove container: {e}");
        }
        let _ = self.scheduler.forget_server(&rec.uid).await;
        if let Err(e) = self.remove_on_node(&rec.uid).await {
            tracing::warn!(uid = %rec.uid, "rollback: cannot remove the files on the node: {e}");
        }
        if let Err(e) = self.remove_local_files(&rec.uid).await {
            tracing::warn!(uid = %rec.uid, "rollback: cannot remove files: {e}");
        }
        tracing::info!(uid = %rec.uid, "create rolled back");
    }
}
