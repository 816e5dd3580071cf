//! Game plans: the local plans directory in PEON's layout (`plans.json` and `<game>/plan.json`),
//! the plan model and its checks, the plans bundled into the binary, updating from a plan source
//! (`source`, `fetch`, `unpack`, `update`) and the linter for plan authors (`check`, `schema`).

pub mod bundled;
pub mod check;
pub mod fetch;
pub use crate::model::plan as model;
pub mod schema;
pub mod source;
pub mod unpack;
pub mod update;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde_json::Value;

use crate::names;
pub use model::{Plan, Problem};
pub use source::PlanSource;
pub use update::UpdateReport;

/// Errors of the plans layer.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("there is no plan for game [{0}]")]
    NotFound(String),
    #[error(
        "plan [{game}] cannot be run: {}",
        crate::model::plan::problems_text(problems)
    )]
    Invalid {
        game: String,
        problems: Vec<Problem>,
    },
    #[error("cannot read plan [{game}] at {path}: {reason}")]
    Io {
        game: String,
        path: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Name(#[from] names::InvalidName),
    /// The plan source could not be reached or answered an error.
    #[error("plan source {url}: {reason}")]
    Source { url: String, reason: String },
    /// The plan source answered, but what it sent was refused (unsafe or invalid).
    #[error("plans from {url} were refused: {reason}")]
    Rejected { url: String, reason: String },
    /// Writing the plans dir failed during an update.
    #[error("cannot update the plans in {path}: {reason}")]
    Update { path: PathBuf, reason: String },
    /// There is no plans list to show.
    #[error("{0}")]
    NoList(String),
}

/// A plan read from the plans directory.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    /// The plan folder (copied into a new server's directory).
    pub dir: PathBuf,
    /// `plan.json` as written.
    pub doc: Value,
    pub plan: Plan,
}

/// State shared by the clones of a [`PlanStore`]: the source and the locks of updating.
#[derive(Debug, Default)]
struct SyncState {
    source: Option<PlanSource>,
    /// Readers of plan files take it shared; swapping new plans in takes it exclusively.
    swap: RwLock<()>,
    /// One update (or refresh) at a time.
    update: tokio::sync::Mutex<()>,
    /// When each plan (or `*`: the whole archive) was last refreshed before a create.
    refreshed: Mutex<HashMap<String, Instant>>,
}

/// The local plans directory.
#[derive(Debug, Clone)]
pub struct PlanStore {
    dir: PathBuf,
    sync: Arc<SyncState>,
}

impl PlanStore {
    /// A plans directory without a source (updates are refused).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PlanStore {
            dir: dir.into(),
            sync: Arc::new(SyncState::default()),
        }
    }

    /// A plans directory updated from `source`.
    pub fn with_source(dir: impl Into<PathBuf>, source: Option<PlanSource>) -> Self {
        PlanStore {
            dir: dir.into(),
            sync: Arc::new(SyncState {
                source,
                ..Default::default()
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and checks `<plans>/<game>/plan.json`.
    pub fn load(&self, game: &str) -> Result<LoadedPlan, PlanError> {
        names::game_id(game)?;
        let dir = self.dir.join(game);
        let path = dir.join("plan.json");
        let read = {
            let _r = self.sync.swap.read().unwrap_or_else(|p| p.into_inner());
            std::fs::read(&path)
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PlanError::NotFound(game.to_owned()));
            }
            Err(e) => {
                return Err(PlanError::Io {
                    game: game.to_owned(),
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let doc: Value = serde_json::from_slice(&bytes).map_err(|e| PlanError::Invalid {
            game: game.to_owned(),
            problems: vec![Problem {
                field: "plan.json".into(),
                message: format!("is not valid JSON: {e}"),
            }],
        })?;
        let plan = model::parse_plan(game, &doc).map_err(|problems| PlanError::Invalid {
            game: game.to_owned(),
            problems,
        })?;
        Ok(LoadedPlan { dir, doc, plan })
    }
}

/// PEON's `GET /plan/<game>` answer: required settings (null or `""`) with `""`, then optional
/// ones with their default, then `description`. `STEAM_ID` is listed only when required.
pub fn settings_summary(game: &str, plan: &Plan) -> serde_json::Map<String, Value> {
    use model::Setting;
    let mut out = serde_json::Map::new();
    let required = |s: &Setting| matches!(s, Setting::Required);
    for (k, s) in plan.environment.iter().filter(|(_, s)| required(s)) {
        let _ = s;
        out.insert(k.clone(), Value::String(String::new()));
    }
    for (k, s) in &plan.environment {
        if let Setting::Default(v) = s
            && k != "STEAM_ID"
        {
            out.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let description = if plan.description.trim().is_empty() {
        format!("A PEON game server for {game}.")
    } else {
        plan.description.clone()
    };
    out.insert("description".into(), Value::String(description));
    out
}

impl PlanStore {
    /// `GET /plans`: the registry sorted by title without regard to case, each entry marked
    /// `in_registry: true`, plus the plan folders missing from `plans.json` (`in_registry: false`).
    pub fn listing(&self) -> Result<Vec<Value>, PlanError> {
        let _r = self.sync.swap.read().unwrap_or_else(|p| p.into_inner());
        let folders = update::plan_folders(&self.dir).unwrap_or_default();
        let mut list: Vec<Value> = match std::fs::read(self.dir.join("plans.json")) {
            Ok(bytes) => serde_json::from_slice::<Vec<Value>>(&bytes).map_err(|e| {
                PlanError::NoList(format!("The local plans list is not valid: {e}"))
            })?,
            Err(_) if !folders.is_empty() => Vec::new(),
            Err(_) => {
                return Err(PlanError::NoList(
                    "There is no local plans list; run PUT /plans.".into(),
                ));
            }
        };
        let mut listed = std::collections::BTreeSet::new();
        for entry in &mut list {
            if let Some(obj) = entry.as_object_mut() {
                if let Some(g) = obj.get("game_uid").and_then(Value::as_str) {
                    listed.insert(g.to_owned());
                }
                obj.insert("in_registry".into(), Value::Bool(true));
            }
        }
        for g in folders.iter().filter(|g| !listed.contains(*g)) {
            list.push(serde_json::json!({
                "title": g, "game_uid": g, "plan_url": null, "in_registry": false
            }));
        }
        let key = |p: &Value, k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase()
        };
        list.sort_by(|a, b| {
            key(a, "title")
                .cmp(&key(b, "title"))
                .then_with(|| key(a, "game_uid").cmp(&key(b, "game_uid")))
        });
        Ok(list)
    }
}

/// `GET /plan/<game>?full=true`: the whole plan as peon reads it, with the settings summary.
pub fn full_view(game: &str, loaded: &LoadedPlan) -> Value {
    use model::Setting;
    let p = &loaded.plan;
    let mounts = |ms: &[model::Mount]| -> Vec<Value> {
        ms.iter()
            .map(|m| serde_json::json!({"source": format!("~!/{}", m.source), "target": m.target}))
            .collect()
    };
    let environment: serde_json::Map<String, Value> = p
        .environment
        .iter()
        .map(|(k, s)| {
            let v = match s {
                Setting::Required => Value::Null,
                Setting::Default(d) => Value::String(d.clone()),
            };
            (k.clone(), v)
        })
        .collect();
    let required: Vec<&String> = p
        .environment
        .iter()
        .filter(|(_, s)| matches!(s, Setting::Required))
        .map(|(k, _)| k)
        .collect();
    let ports: Vec<Vec<Value>> = p
        .port_groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|ps| {
                    serde_json::json!({
                        "name": ps.name, "port": ps.port,
                        "protocol": ps.raw_protocol, "protocols": ps.protocols,
                    })
                })
                .collect()
        })
        .collect();
    let mut actions: Vec<String> = std::fs::read_dir(loaded.dir.join("actions"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    actions.sort();
    serde_json::json!({
        "game_uid": p.game_uid,
        "version": p.version,
        "description": p.description,
        "image": p.image,
        "ports": ports,
        "environment": environment,
        "required": required,
        "volumes": mounts(&p.volumes),
        "files": mounts(&p.files),
        "actions": actions,
        "settings": settings_summary(game, p),
    })
}
