//! The PEON plan format (`plan.json`, and a server's `config.json`, which is a plan with the
//! user's settings merged in and the port groups flattened to the chosen one), parsed and checked
//! into a [`Plan`] that can be run. Every problem is reported with the field it is in.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::lifecycle::parse_duration;
pub use super::lifecycle::{Lifecycle, PlanLimits, RestartPolicy};

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One named port of a port group. PEON's `tcp/udp` and `all` publish both protocols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    pub protocols: Vec<Protocol>,
    /// The protocol string as the plan wrote it (`tcp`, `udp`, `tcp/udp`, `all`).
    pub raw_protocol: String,
}

/// A bind mount from a path inside the server directory (`~!/<source>`) to a container path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Relative path inside the server directory, normalised, never empty for files.
    pub source: String,
    pub target: String,
}

/// A plan setting: `null` in the plan means the user must give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Setting {
    Required,
    Default(String),
}

/// A checked plan, ready to become a container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub game_uid: String,
    pub version: Option<String>,
    pub description: String,
    pub image: String,
    pub port_groups: Vec<Vec<PortSpec>>,
    pub environment: Vec<(String, Setting)>,
    pub volumes: Vec<Mount>,
    pub files: Vec<Mount>,
    /// The optional `lifecycle` object (stop, readiness, restart policy).
    #[serde(skip)]
    pub lifecycle: Lifecycle,
    /// The optional `limits` object.
    #[serde(skip)]
    pub limits: PlanLimits,
    /// The optional `backup` object.
    #[serde(skip)]
    pub backup: PlanBackup,
    /// The optional `query` object: how to ask the game who is playing.
    #[serde(skip)]
    pub query: Option<QuerySpec>,
}

/// How peon asks a game who is playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryProtocol {
    /// Steam's A2S_INFO over UDP.
    A2s,
    /// Minecraft's Server List Ping over TCP.
    Minecraft,
}

/// Where a game's query port is: a port of the plan by name (its number follows the chosen port
/// group), or a fixed container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryPort {
    Named(String),
    Number(u16),
}

/// The plan's optional `query` object (`protocol: none` leaves it `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySpec {
    pub protocol: QueryProtocol,
    pub port: QueryPort,
}

impl QuerySpec {
    /// The query port's number among `ports` (a server's port group).
    pub fn port_in(&self, ports: &[PortSpec]) -> Option<u16> {
        match &self.port {
            QueryPort::Number(n) => Some(*n),
            QueryPort::Named(name) => ports.iter().find(|p| p.name == *name).map(|p| p.port),
        }
    }
}

/// The optional `backup` object of a plan: how a running game is asked to save before a
/// backup, and what a backup leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanBackup {
    /// Console commands written, in order, to a running game before its files are archived.
    pub save_command: Vec<String>,
    /// A console line containing this text means the save finished (waited for up to
    /// [`SAVE_WAIT`]); without it the archive starts right after the commands.
    pub save_done: Option<String>,
    /// Globs of paths (relative to the server folder) left out of backups.
    pub exclude: Vec<String>,
}

/// How long a backup waits for a plan's `backup.save_done` line.
pub const SAVE_WAIT: Duration = Duration::from_secs(60);

/// One thing wrong with a plan, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// `a; b; c` from a list of problems.
pub fn problems_text(p: &[Problem]) -> String {
    p.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Parses and checks a plan document. `game` is the plan's folder name, used when
/// `metadata.game_uid` is absent.
pub fn parse_plan(game: &str, doc: &Value) -> Result<Plan, Vec<Problem>> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let Some(root) = doc.as_object() else {
        return Err(vec![Problem {
            field: "(root)".into(),
            message: "a plan must be a JSON object".into(),
        }]);
    };
    let empty = Map::new();
    let metadata = match root.get("metadata") {
        Some(Value::Object(m)) => m,
        Some(_) => {
            c.bad("metadata", "must be an object");
            &empty
        }
        None => {
            c.bad("metadata", "is missing");
            &empty
        }
    };
    let str_field =
        |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let game_uid = str_field(metadata, "game_uid").unwrap_or_else(|| game.to_owned());
    let version = str_field(metadata, "version");
    let description = str_field(metadata, "description").unwrap_or_default();
    let image = match metadata.get("image") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) => {
            c.bad("metadata.image", "is empty");
            String::new()
        }
        Some(_) => {
            c.bad("metadata.image", "must be a string");
            String::new()
        }
        None => {
            if root.contains_key("metadata") {
                c.bad("metadata.image", "is missing");
            }
            String::new()
        }
    };

    let port_groups = parse_ports(&mut c, root.get("ports"));
    let environment = parse_environment(&mut c, root.get("environment"));
    let volumes = parse_mounts(&mut c, "volumes", root.get("volumes"), false);
    let files = parse_mounts(&mut c, "files", root.get("files"), true);
    let lifecycle = parse_lifecycle(&mut c, root.get("lifecycle"));
    let limits = parse_limits(&mut c, root.get("limits"));
    let query = parse_query(&mut c, root.get("query"), &port_groups);
    let backup = parse_backup(&mut c, root.get("backup"));

    let mut targets = BTreeSet::new();
    for (kind, m) in volumes
        .iter()
        .map(|m| ("volumes", m))
        .chain(files.iter().map(|m| ("files", m)))
    {
        let t = m.target.trim_end_matches('/');
        if !targets.insert(t.to_owned()) {
            c.bad(
                format!("{kind}[~!/{}]", m.source),
                format!("container path {} is mounted twice", m.target),
            );
        }
    }

    if c.problems.is_empty() {
        Ok(Plan {
            game_uid,
            version,
            description,
            image,
            port_groups,
            environment,
            volumes,
            files,
            lifecycle,
            limits,
            query,
            backup,
        })
    } else {
        Err(c.problems)
    }
}

/// The optional `lifecycle` object: `stop_command` (a string or a list), `stop_signal`,
/// `stop_grace`, `ready_pattern`, `ready_timeout`, `restart_policy`.
fn parse_lifecycle(c: &mut Checker, v: Option<&Value>) -> Lifecycle {
    let mut l = Lifecycle::default();
    let m = match v {
        None | Some(Value::Null) => return l,
        Some(Value::Object(m)) => m,
        Some(_) => {
            c.bad("lifecycle", "must be an object");
            return l;
        }
    };
    let duration = |c: &mut Checker, k: &str| -> Option<Duration> {
        let d = match m.get(k)? {
            Value::Number(n) => n.as_u64().map(Duration::from_secs),
            Value::String(s) => parse_duration(s),
            _ => None,
        };
        if d.is_none() {
            c.bad(
                format!("lifecycle.{k}"),
                "must be seconds or a duration like 30s, 5m, 1h",
            );
        }
        d
    };
    l.stop_grace = duration(c, "stop_grace");
    l.ready_timeout = duration(c, "ready_timeout");
    for (k, slot) in [
        ("stop_signal", &mut l.stop_signal),
        ("ready_pattern", &mut l.ready_pattern),
        ("say_command", &mut l.say_command),
    ] {
        match m.get(k) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => {
                *slot = Some(s.trim().to_owned());
            }
            Some(_) => c.bad(
                format!("lifecycle.{k}"),
                "must be a non-empty one-line string",
            ),
        }
    }
    if l.say_command
        .as_ref()
        .is_some_and(|s| !s.contains("{message}"))
    {
        c.bad(
            "lifecycle.say_command",
            "must contain {message}, like \"say {message}\"",
        );
    }
    if let Some(sig) = &l.stop_signal {
        let ok = sig
            .trim_start_matches("SIG")
            .chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
        if !ok {
            c.bad("lifecycle.stop_signal", "must be a signal name like SIGINT");
        }
    }
    let one_line = |s: &str| !s.is_empty() && !s.contains(['\n', '\r']) && s.len() <= 4096;
    match m.get("stop_command") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if one_line(s) => l.stop_command = vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(|v| v.as_str().is_some_and(one_line)) => {
            l.stop_command = a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        Some(_) => c.bad(
            "lifecycle.stop_command",
            "must be a console command or a list of them (one line each)",
        ),
    }
    match m.get("restart_policy") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_str().and_then(RestartPolicy::parse) {
            Some(p) => l.restart_policy = Some(p),
            None => c.bad(
                "lifecycle.restart_policy",
                "must be never, on-crash or always",
            ),
        },
    }
    l
}

/// The optional `limits` object: `memory`, `cpus`, `pids`, `disk` (see
/// [`super::lifecycle::parse_limits_patch`]); `null` leaves a limit unset.
fn parse_limits(c: &mut Checker, v: Option<&Value>) -> PlanLimits {
    let mut l = PlanLimits::default();
    let m = match v {
        None | Some(Value::Null) => return l,
        Some(Value::Object(m)) => m,
        Some(_) => {
            c.bad("limits", "must be an object");
            return l;
        }
    };
    match super::lifecycle::parse_limits_patch(m) {
        Ok(p) => p.apply(&mut l),
        Err(problems) => {
            for (k, msg) in problems {
                c.bad(format!("limits.{k}"), msg);
            }
        }
    }
    l
}

/// The optional `query` object: `protocol` (`a2s`, `minecraft` or `none`) and `port` (the name
/// of one of the plan's ports, in every group, or a container port number).
fn parse_query(c: &mut Checker, v: Option<&Value>, groups: &[Vec<PortSpec>]) -> Option<QuerySpec> {
    let m = match v {
        None | Some(Value::Null) => return None,
        Some(Value::Object(m)) => m,
        Some(_) => {
            c.bad("query", "must be an object");
            return None;
        }
    };
    let protocol = match m.get("protocol").and_then(Value::as_str) {
        Some("a2s") => QueryProtocol::A2s,
        Some("minecraft") => QueryProtocol::Minecraft,
        Some("none") => return None,
        _ => {
            c.bad("query.protocol", "must be a2s, minecraft or none");
            return None;
        }
    };
    let port = match m.get("port") {
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(p) if p > 0 => QueryPort::Number(p),
            _ => {
                c.bad("query.port", "must be a port number 1-65535 or a port name");
                return None;
            }
        },
        Some(Value::String(s)) if !s.is_empty() => {
            if groups.iter().any(|g| !g.iter().any(|p| p.name == *s)) || groups.is_empty() {
                c.bad(
                    "query.port",
                    format!("names no port of the plan ({s} must be in every port group)"),
                );
                return None;
            }
            QueryPort::Named(s.clone())
        }
        _ => {
            c.bad(
                "query.port",
                "must be a port number or the name of a port of the plan",
            );
            return None;
        }
    };
    Some(QuerySpec { protocol, port })
}

/// The optional `backup` object: `save_command` (a string or a list), `save_done`, `exclude`
/// (a list of globs).
fn parse_backup(c: &mut Checker, v: Option<&Value>) -> PlanBackup {
    let mut b = PlanBackup::default();
    let m = match v {
        None | Some(Value::Null) => return b,
        Some(Value::Object(m)) => m,
        Some(_) => {
            c.bad("backup", "must be an object");
            return b;
        }
    };
    let one_line = |s: &str| !s.is_empty() && !s.contains(['\n', '\r']) && s.len() <= 4096;
    match m.get("save_command") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if one_line(s) => b.save_command = vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(|v| v.as_str().is_some_and(one_line)) => {
            b.save_command = a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        Some(_) => c.bad(
            "backup.save_command",
            "must be a console command or a list of them (one line each)",
        ),
    }
    match m.get("save_done") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if one_line(s.trim()) => b.save_done = Some(s.trim().to_owned()),
        Some(_) => c.bad("backup.save_done", "must be a non-empty one-line string"),
    }
    match m.get("exclude") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a))
            if a.iter().all(|v| {
                v.as_str()
                    .is_some_and(|s| one_line(s) && !s.split('/').any(|p| p == ".."))
            }) =>
        {
            b.exclude = a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        Some(_) => c.bad(
            "backup.exclude",
            "must be a list of globs relative to the server folder (no ..)",
        ),
    }
    b
}

/// `ports` is a list of groups (a plan) or a flat list of entries (a server's config.json).
fn parse_ports(c: &mut Checker, v: Option<&Value>) -> Vec<Vec<PortSpec>> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(list) = v.as_array() else {
        c.bad("ports", "must be a list of port groups");
        return Vec::new();
    };
    let flat = list.iter().all(Value::is_object) && !list.is_empty();
    if flat {
        return vec![parse_group(c, "ports", list)];
    }
    list.iter()
        .enumerate()
        .map(|(i, g)| match g.as_array() {
            Some(entries) => parse_group(c, &format!("ports[{i}]"), entries),
            None => {
                c.bad(format!("ports[{i}]"), "a port group must be a list");
                Vec::new()
            }
        })
        .collect()
}

fn parse_group(c: &mut Checker, field: &str, entries: &[Value]) -> Vec<PortSpec> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (j, e) in entries.iter().enumerate() {
        let f = format!("{field}[{j}]");
        let Some(obj) = e.as_object() else {
            c.bad(f, "a port must be an object {NAME: [port, protocol]}");
            continue;
        };
        for (name, spec) in obj {
            let f = format!("{f}.{name}");
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                c.bad(&f, "a port name must be letters, digits and '_'");
                continue;
            }
            let Some(pair) = spec.as_array().filter(|a| a.len() == 2) else {
                c.bad(&f, "must be [port, protocol]");
                continue;
            };
            let port = match &pair[0] {
                Value::String(s) => s.trim().parse::<u16>().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                _ => None,
            }
            .filter(|p| *p > 0);
            let Some(port) = port else {
                c.bad(
                    &f,
                    format!("port {} is not a number from 1 to 65535", pair[0]),
                );
                continue;
            };
            let raw = pair[1]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let protocols = match raw.as_str() {
                "tcp" => vec![Protocol::Tcp],
                "udp" => vec![Protocol::Udp],
                "tcp/udp" | "udp/tcp" | "all" | "both" => vec![Protocol::Tcp, Protocol::Udp],
                _ => {
                    c.bad(
                        &f,
                        format!("unknown protocol {}: use tcp, udp, tcp/udp or all", pair[1]),
                    );
                    continue;
                }
            };
            for p in &protocols {
                if !seen.insert((port, *p)) {
                    c.bad(
                        &f,
                        format!("port {port}/{} appears twice in the group", p.as_str()),
                    );
                }
            }
            out.push(PortSpec {
                name: name.to_ascii_uppercase(),
                port,
                protocols,
                raw_protocol: raw,
            });
        }
    }
    out
}

fn parse_environment(c: &mut Checker, v: Option<&Value>) -> Vec<(String, Setting)> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(obj) = v.as_object() else {
        c.bad("environment", "must be an object of settings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, val) in obj {
        let f = format!("environment.{k}");
        if k.is_empty()
            || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || k.as_bytes()[0].is_ascii_digit()
        {
            c.bad(
                &f,
                "a setting name must be letters, digits and '_', not starting with a digit",
            );
            continue;
        }
        let s = match val {
            Value::Null => Setting::Required,
            Value::String(s) => Setting::Default(s.clone()),
            Value::Number(n) => Setting::Default(n.to_string()),
            Value::Bool(b) => Setting::Default(b.to_string()),
            _ => {
                c.bad(
                    &f,
                    "must be a string, a number, a boolean or null (required)",
                );
                continue;
            }
        };
        out.push((k.clone(), s));
    }
    out
}

/// Normalises a `~!/rel` source to a relative path inside the server dir, refusing escapes.
pub fn server_relative(source: &str) -> Result<String, String> {
    let Some(rest) = source.strip_prefix("~!") else {
        return Err(format!(
            "source {source} must start with ~!/ (the server directory)"
        ));
    };
    let rest = rest.trim_start_matches('/');
    let mut parts = Vec::new();
    for p in rest.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(format!("source {source} leaves the server directory")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn parse_mounts(c: &mut Checker, key: &str, v: Option<&Value>, is_file: bool) -> Vec<Mount> {
    let Some(v) = v else {
        return Vec::new();
    };
    let Some(obj) = v.as_object() else {
        c.bad(
            key,
            "must be an object {\"~!/<path>\": \"<container path>\"}",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (src, tgt) in obj {
        let f = format!("{key}[{src}]");
        let source = match server_relative(src) {
            Ok(s) if s.is_empty() && is_file => {
                c.bad(
                    &f,
                    "a file source must name a file inside the server directory",
                );
                continue;
            }
            Ok(s) => s,
            Err(e) => {
                c.bad(&f, e);
                continue;
            }
        };
        let Some(target) = tgt.as_str().map(str::trim) else {
            c.bad(&f, "the container path must be a string");
            continue;
        };
        if !target.starts_with('/') || target.split('/').any(|p| p == "..") {
            c.bad(
                &f,
                format!("container path {target:?} must be absolute, without '..'"),
            );
            continue;
        }
        if target.trim_end_matches('/').is_empty() {
            c.bad(&f, "cannot mount over the container's root /");
            continue;
        }
        // Docker's bind syntax is `source:target[:options]`.
        if target.contains(':') || source.contains(':') {
            c.bad(&f, "paths must not contain ':'");
            continue;
        }
        out.push(Mount {
            source,
            target: target.to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> Value {
        json!({
            "metadata": {"game_uid": "g", "warcamp": "default", "version": "1.0.0",
                         "description": "d", "image": "peon/game"},
            "ports": [[{"PORT": ["2456", "udp"]}, {"QUERY": ["2457", "tcp/udp"]}],
                      [{"PORT": ["2458", "udp"]}]],
            "environment": {"STEAM_ID": "1", "SERVER_NAME": null, "OPT": ""},
            "volumes": {"~!/actions": "/actions", "~!/data": "/data"},
            "files": {"~!/server.cfg": "/data/cfg/server.cfg"}
        })
    }

    #[test]
    fn lifecycle_and_limits_are_optional_and_checked() {
        let p = parse_plan("g", &plan()).unwrap();
        assert_eq!(p.lifecycle, Lifecycle::default());
        assert_eq!(p.limits, PlanLimits::default());
        let mut doc = plan();
        doc["lifecycle"] = json!({
            "stop_command": ["save", "quit"], "stop_signal": "SIGINT", "stop_grace": "90s",
            "ready_pattern": "Server started", "ready_timeout": 600, "restart_policy": "always"
        });
        doc["limits"] = json!({"memory": "512m"});
        let p = parse_plan("g", &doc).unwrap();
        assert_eq!(p.lifecycle.stop_command, ["save", "quit"]);
        assert_eq!(p.lifecycle.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(p.lifecycle.stop_grace, Some(Duration::from_secs(90)));
        assert_eq!(p.lifecycle.ready_timeout, Some(Duration::from_secs(600)));
        assert_eq!(p.lifecycle.ready_pattern.as_deref(), Some("Server started"));
        assert_eq!(p.lifecycle.restart_policy, Some(RestartPolicy::Always));
        assert_eq!(p.limits.memory_bytes, Some(512 << 20));
        doc["lifecycle"] = json!({
            "stop_command": "say\nquit", "stop_signal": "sig int", "stop_grace": "soon",
            "restart_policy": "sometimes", "ready_pattern": 3
        });
        doc["limits"] = json!({"memory": "1k"});
        let fields: Vec<String> = parse_plan("g", &doc)
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        for f in [
            "lifecycle.stop_command",
            "lifecycle.stop_signal",
            "lifecycle.stop_grace",
            "lifecycle.restart_policy",
            "lifecycle.ready_pattern",
            "limits.memory",
        ] {
            assert!(
                fields.iter().any(|x| x == f),
                "{f} not reported: {fields:?}"
            );
        }
    }

    #[test]
    fn query_and_say_command_are_optional_and_checked() {
        let mut doc = plan();
        assert_eq!(parse_plan("g", &doc).unwrap().query, None);
        doc["query"] = json!({"protocol": "a2s", "port": 27016});
        let q = parse_plan("g", &doc).unwrap().query.unwrap();
        assert_eq!(q.protocol, QueryProtocol::A2s);
        assert_eq!(q.port, QueryPort::Number(27016));
        doc["query"] = json!({"protocol": "none"});
        assert_eq!(parse_plan("g", &doc).unwrap().query, None);
        doc["query"] = json!({"protocol": "gopher", "port": 1});
        assert!(parse_plan("g", &doc).is_err());
        doc["query"] = json!({"protocol": "minecraft", "port": "NOPE"});
        let e = parse_plan("g", &doc).unwrap_err();
        assert_eq!(e[0].field, "query.port");
        // A name must be in every group (the second group has no QUERY).
        doc["query"] = json!({"protocol": "a2s", "port": "QUERY"});
        assert!(parse_plan("g", &doc).is_err());
        doc["ports"][1] = json!([{"PORT": ["2458", "udp"]}, {"QUERY": ["2459", "udp"]}]);
        let q = parse_plan("g", &doc).unwrap();
        assert_eq!(
            q.query.as_ref().unwrap().port_in(&q.port_groups[0]),
            Some(2457)
        );
        doc["query"] = Value::Null;
        doc["lifecycle"] = json!({"say_command": "say hi"});
        assert_eq!(
            parse_plan("g", &doc).unwrap_err()[0].field,
            "lifecycle.say_command"
        );
        doc["lifecycle"] = json!({"say_command": "say {message}"});
        assert_eq!(
            parse_plan("g", &doc)
                .unwrap()
                .lifecycle
                .say_command
                .as_deref(),
            Some("say {message}")
        );
    }

    #[test]
    fn parses_every_part() {
        let p = parse_plan("g", &plan()).unwrap();
        assert_eq!(p.image, "peon/game");
        assert_eq!(p.port_groups.len(), 2);
        assert_eq!(
            p.port_groups[0][1].protocols,
            vec![Protocol::Tcp, Protocol::Udp]
        );
        assert_eq!(p.environment[1], ("SERVER_NAME".into(), Setting::Required));
        assert_eq!(
            p.environment[2],
            ("OPT".into(), Setting::Default(String::new()))
        );
        assert_eq!(
            p.volumes[1],
            Mount {
                source: "data".into(),
                target: "/data".into()
            }
        );
        assert_eq!(p.files[0].source, "server.cfg");
    }

    #[test]
    fn flat_ports_of_a_config_json_are_one_group() {
        let mut d = plan();
        d["ports"] = json!([{"PORT": ["2456", "udp"]}]);
        let p = parse_plan("g", &d).unwrap();
        assert_eq!(p.port_groups.len(), 1);
        assert_eq!(p.port_groups[0][0].port, 2456);
    }

    #[test]
    fn reports_each_unrunnable_case_with_its_field() {
        let cases = [
            (
                json!({"volumes": {"~!/data": "/x", "~!/user": "/x/"}}),
                "volumes[~!/user]",
                "mounted twice",
            ),
            (
                json!({"ports": [[{"PORT": ["99999", "udp"]}]]}),
                "ports[0][0].PORT",
                "1 to 65535",
            ),
            (
                json!({"ports": [[{"PORT": ["abc", "udp"]}]]}),
                "ports[0][0].PORT",
                "1 to 65535",
            ),
            (
                json!({"ports": [[{"PORT": ["1", "sctp"]}]]}),
                "ports[0][0].PORT",
                "unknown protocol",
            ),
            (
                json!({"volumes": {"~!/../etc": "/etc"}}),
                "volumes[~!/../etc]",
                "leaves the server",
            ),
            (
                json!({"volumes": {"/etc": "/etc"}}),
                "volumes[/etc]",
                "must start with ~!/",
            ),
            (
                json!({"files": {"~!/../../x": "/x"}}),
                "files[~!/../../x]",
                "leaves the server",
            ),
            (
                json!({"metadata": {"image": ""}}),
                "metadata.image",
                "empty",
            ),
            (
                json!({"volumes": {"~!/data": "/"}}),
                "volumes[~!/data]",
                "root /",
            ),
            (
                json!({"volumes": {"~!/data": "/data:ro"}}),
                "volumes[~!/data]",
                "':'",
            ),
            (json!({"files": {"~!/a:b": "/x"}}), "files[~!/a:b]", "':'"),
        ];
        for (patch, field, msg) in cases {
            let mut d = plan();
            for (k, v) in patch.as_object().unwrap() {
                if k == "metadata" {
                    d["metadata"]["image"] = v["image"].clone();
                } else {
                    d[k] = v.clone();
                }
            }
            let errs = parse_plan("g", &d).unwrap_err();
            assert!(
                errs.iter()
                    .any(|p| p.field == field && p.message.contains(msg)),
                "{field} {msg}: got {errs:?}"
            );
        }
        let mut d = plan();
        d["metadata"].as_object_mut().unwrap().remove("image");
        let errs = parse_plan("g", &d).unwrap_err();
        assert!(
            errs.iter()
                .any(|p| p.field == "metadata.image" && p.message.contains("missing"))
        );
    }
}
