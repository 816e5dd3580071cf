//! `peon plan check <dir>`: a linter for plan authors. It reads a plans repository (`plans.json`
//! and `<game>/plan.json` folders) and reports, one line per problem with the plan and the
//! field: invalid JSON, the schema's structural faults, the model's problems (what would make a
//! create fail), registry entries without a folder, folders without a registry entry, and the
//! action scripts the images' convention expects (`actions/server_start`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::Value;

use super::{model, schema, update};
use crate::names;

/// How bad a finding is: errors make the check fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, in one plan (or `plans.json`), at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub plan: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}: {}: {}", self.plan, self.field, self.message)
    }
}

/// Everything found in a plans repository.
#[derive(Debug, Default)]
pub struct Report {
    pub plans: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// The closing line: counts of plans, errors and warnings.
    pub fn summary(&self) -> String {
        let failing: BTreeSet<&str> = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.plan.as_str())
            .collect();
        format!(
            "checked {} plans: {} errors in {} plans, {} warnings",
            self.plans,
            self.errors(),
            failing.len(),
            self.warnings()
        )
    }

    fn add(&mut self, severity: Severity, plan: &str, field: &str, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            plan: plan.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

/// Lints the plans repository at `dir`.
pub fn check_dir(dir: &Path) -> io::Result<Report> {
    let mut r = Report::default();
    let folders = update::plan_folders(dir)?;
    let registry = check_registry(dir, &mut r);
    for g in &folders {
        r.plans += 1;
        check_plan(dir, g, &mut r);
        if let Some(reg) = &registry
            && !reg.contains_key(g)
        {
            r.add(
                Severity::Warning,
                g,
                "plans.json",
                "the folder has no entry in plans.json, so GET /plans marks it unregistered",
            );
        }
    }
    if let Some(reg) = &registry {
        let have: BTreeSet<&String> = folders.iter().collect();
        for g in reg.keys().filter(|g| !have.contains(g)) {
            r.add(
                Severity::Error,
                g,
                "plans.json",
                format!("listed in plans.json but there is no {g}/plan.json"),
            );
        }
    }
    r.findings.sort_by(|a, b| {
        (a.plan.as_str(), a.severity, a.field.as_str()).cmp(&(
            b.plan.as_str(),
            b.severity,
            b.field.as_str(),
        ))
    });
    Ok(r)
}

/// Checks `plans.json`; returns its entries by game id when it can be read.
fn check_registry(dir: &Path, r: &mut Report) -> Option<BTreeMap<String, Value>> {
    const REG: &str = "plans.json";
    let bytes = match fs::read(dir.join(REG)) {
        Ok(b) => b,
        Err(e) => {
            r.add(
                Severity::Error,
                REG,
                "(file)",
                format!("cannot be read: {e}"),
            );
            return None;
        }
    };
    let list: Vec<Value> = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(l)) => l,
        Ok(_) => {
            r.add(
                Severity::Error,
                REG,
                "(root)",
                "must be a JSON list of plans",
            );
            return None;
        }
        Err(e) => {
            r.add(
                Severity::Error,
                REG,
                "(file)",
                format!("is not valid JSON: {e}"),
            );
            return None;
        }
    };
    let mut out = BTreeMap::new();
    for (i, entry) in list.iter().enumerate() {
        let at = |k: &str| format!("[{i}].{k}");
        let Some(obj) = entry.as_object() else {
            r.add(Severity::Error, REG, &format!("[{i}]"), "must be an object");
            continue;
        };
        for k in ["title", "game_uid", "plan_url"] {
            match obj.get(k) {
                Some(Value::String(s)) if !s.trim().is_empty() => {}
                Some(Value::String(_)) => r.add(Severity::Error, REG, &at(k), "is empty"),
                Some(_) => r.add(Severity::Error, REG, &at(k), "must be a string"),
                None => r.add(Severity::Error, REG, &at(k), "is missing"),
            }
        }
        let Some(g) = obj.get("game_uid").and_then(Value::as_str) else {
            continue;
        };
        if let Err(e) = names::game_id(g) {
            r.add(Severity::Error, REG, &at("game_uid"), e.to_string());
            continue;
        }
        if out.insert(g.to_owned(), entry.clone()).is_some() {
            r.add(
                Severity::Error,
                REG,
                &at("game_uid"),
                format!("{g} is listed twice"),
            );
        }
    }
    Some(out)
}

fn check_plan(dir: &Path, game: &str, r: &mut Report) {
    let folder = dir.join(game);
    if let Err(e) = names::game_id(game) {
        r.add(Severity::Error, game, "(folder)", e.to_string());
    }
    let doc: Value = match fs::read(folder.join("plan.json")) {
        Err(e) => {
            r.add(
                Severity::Error,
                game,
                "plan.json",
                format!("cannot be read: {e}"),
            );
            return;
        }
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => {
                r.add(
                    Severity::Error,
                    game,
                    "plan.json",
                    format!("is not valid JSON: {e}"),
                );
                return;
            }
        },
    };
    let schema_problems = schema::check(&doc);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for p in &schema_problems {
        reported.insert(p.field.clone());
        r.add(
            Severity::Error,
            game,
            &p.field,
            format!("{} (schema)", p.message),
        );
    }
    let plan = match model::parse_plan(game, &doc) {
        Ok(p) => Some(p),
        Err(problems) => {
            for p in problems {
                // The schema already explained this field (the model's message would repeat it).
                let overlaps = |f: &String| {
                    f == &p.field
                        || p.field.starts_with(&format!("{f}["))
                        || f.starts_with(&format!("{}[", p.field))
                };
                if reported.iter().any(overlaps) {
                    continue;
                }
                r.add(Severity::Error, game, &p.field, p.message);
            }
            None
        }
    };
    match doc.pointer("/metadata/game_uid").and_then(Value::as_str) {
        Some(g) if g != game => r.add(
            Severity::Error,
            game,
            "metadata.game_uid",
            format!("is {g:?} but the folder is {game:?}"),
        ),
        None => r.add(
            Severity::Warning,
            game,
            "metadata.game_uid",
            "is missing (the folder name is used)",
        ),
        _ => {}
    }
    if doc
        .pointer("/metadata/version")
        .and_then(Value::as_str)
        .is_none()
    {
        r.add(
            Severity::Warning,
            game,
            "metadata.version",
            "is missing: servers cannot record which plan version built them",
        );
    }
    let actions = folder.join("actions");
    if !actions.join("server_start").is_file() {
        let found: Vec<String> = fs::read_dir(&actions)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("server_start"))
                    .collect()
            })
            .unwrap_or_default();
        let hint = if found.is_empty() {
            String::new()
        } else {
            format!(
                " (found {}; the entrypoint runs exactly /actions/server_start)",
                found.join(", ")
            )
        };
        r.add(
            Severity::Error,
            game,
            "actions/server_start",
            format!("is missing: the images start the game with it{hint}"),
        );
    } else if let Ok(m) = fs::metadata(actions.join("server_start")) {
        use std::os::unix::fs::PermissionsExt;
        if m.permissions().mode() & 0o111 == 0 {
            r.add(
                Severity::Warning,
                game,
                "actions/server_start",
                "is not executable",
            );
        }
    }
    if let Some(plan) = plan {
        for (k, s) in &plan.environment {
            if k == "STEAM_ID" && matches!(s, model::Setting::Required) {
                r.add(
                    Severity::Warning,
                    game,
                    "environment.STEAM_ID",
                    "is null: every user must give the Steam app id; set it in the plan",
                );
            }
        }
        if plan.port_groups.is_empty() || plan.port_groups.iter().all(Vec::is_empty) {
            r.add(
                Severity::Warning,
                game,
                "ports",
                "the plan publishes no port",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        if rel.contains("actions/") {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn good(game: &str) -> String {
        json!({
            "metadata": {"game_uid": game, "version": "1.0.0", "image": "peon/game"},
            "ports": [[{"PORT": ["2456", "udp"]}]],
            "environment": {"STEAM_ID": "1", "SERVER_NAME": null},
            "volumes": {"~!/actions": "/actions", "~!/data": "/data"}
        })
        .to_string()
    }

    #[test]
    fn reports_each_kind_of_problem_once_with_plan_and_field() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(
            root,
            "plans.json",
            &json!([
                {"title": "Good", "game_uid": "good", "plan_url": "u"},
                {"title": "Ghost", "game_uid": "ghost", "plan_url": "u"},
                {"title": "Bad", "game_uid": "bad", "plan_url": "u"},
                {"title": "", "game_uid": "broken", "plan_url": "u"}
            ])
            .to_string(),
        );
        write(root, "good/plan.json", &good("good"));
        write(root, "good/actions/server_start", "#!/bin/sh\n");
        let mut bad: Value = serde_json::from_str(&good("bad")).unwrap();
        bad["volumes"] = json!({"~!/data": "/x", "~!/user": "/x"});
        bad["ports"] = json!([[{"PORT": ["70000", "udp"]}, {"Q": ["1", "sctp"]}]]);
        bad["metadata"].as_object_mut().unwrap().remove("image");
        write(root, "bad/plan.json", &bad.to_string());
        write(root, "bad/actions/server_start.sh", "#!/bin/sh\n");
        write(root, "broken/plan.json", "{ nope");
        write(root, "unlisted/plan.json", &good("unlisted"));
        write(root, "unlisted/actions/server_start", "#!/bin/sh\n");

        let r = check_dir(root).unwrap();
        let lines: Vec<String> = r.findings.iter().map(ToString::to_string).collect();
        let want = [
            "error: bad: actions/server_start: is missing: the images start the game with it (found server_start.sh",
            "error: bad: metadata.image: is missing (schema)",
            "error: bad: ports[0][0].PORT: port \"70000\" is not a number from 1 to 65535",
            "error: bad: ports[0][1].Q[1]: \"sctp\" is not one of",
            "error: bad: volumes[~!/user]: container path /x is mounted twice",
            "error: broken: plan.json: is not valid JSON",
            "error: ghost: plans.json: listed in plans.json but there is no ghost/plan.json",
            "error: plans.json: [3].title: is empty",
            "warning: unlisted: plans.json: the folder has no entry in plans.json",
        ];
        for w in want {
            assert!(lines.iter().any(|l| l.starts_with(w)), "{w}\n{lines:#?}");
        }
        assert!(!lines.iter().any(|l| l.contains(": good:")), "{lines:#?}");
        // The model's protocol complaint is not repeated after the schema's.
        assert_eq!(
            lines.iter().filter(|l| l.contains("ports[0][1].Q")).count(),
            1,
            "{lines:#?}"
        );
        assert_eq!(r.plans, 4);
        assert!(r.errors() >= 8);
        assert!(
            r.summary().starts_with("checked 4 plans: "),
            "{}",
            r.summary()
        );
    }
}
