//! Game plans: the local plans directory in PEON's layout (`plans.json` and `<game>/plan.json`),
//! the plan model and its checks, and the plans bundled into the binary.

pub mod bundled;
pub mod model;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::names;
pub use model::{Plan, Problem};

/// Errors of the plans layer.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("there is no plan for game [{0}]")]
    NotFound(String),
    #[error(
        "plan [{game}] cannot be run: {}",
        crate::store::problems_text(problems)
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

/// The local plans directory.
#[derive(Debug, Clone)]
pub struct PlanStore {
    dir: PathBuf,
}

impl PlanStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PlanStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and checks `<plans>/<game>/plan.json`.
    pub fn load(&self, game: &str) -> Result<LoadedPlan, PlanError> {
        names::game_id(game)?;
        let dir = self.dir.join(game);
        let path = dir.join("plan.json");
        let bytes = match std::fs::read(&path) {
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
