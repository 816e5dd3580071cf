//! What each client command does: one or a few API calls, then a table or the raw JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{
    ClientCommand, Common, KeysCmd, PlanCmd, PlansCmd, RolloutsCmd, ScheduleCmd, ServerCmd, Timer,
};
use super::backups::{self, BackupCmd};
use super::client::{Client, LONG, QUICK};
use super::output::{self, Progress, s};
use super::{CliError, console, events, exits, jobs, logs, resolve};
use crate::names::{self, Uid};

type Result<T> = std::result::Result<T, CliError>;

fn connect(common: &Common) -> Result<Client> {
    Client::new(resolve(common)?)
}

/// Runs a client command.
pub async fn dispatch(cmd: ClientCommand) -> Result<ExitCode> {
    match cmd {
        ClientCommand::Servers { common } => servers(&connect(&common)?, common.json).await,
        ClientCommand::Server { common, cmd } => server(&connect(&common)?, common.json, cmd).await,
        ClientCommand::Plans { common, cmd } => plans(&connect(&common)?, common.json, cmd).await,
        // `peon plan show <game>`, or `peon plan <game>`. Local plan subcommands (such as a
        // lint) go here too, before anything connects.
        ClientCommand::Plan { common, cmd, game } => match (cmd, game) {
            (Some(PlanCmd::Check { dir }), _) => Ok(plan_check(&dir)),
            (Some(PlanCmd::Show { game, full }), _) => {
                plan(&connect(&common)?, common.json, &game, full).await
            }
            (None, Some(game)) => plan(&connect(&common)?, common.json, &game, false).await,
            (None, None) => Err(CliError::Usage(
                "name a game: `peon plan show <game>` or `peon plan <game>`".into(),
            )),
        },
        ClientCommand::Schedules { common, cmd } => {
            schedules(&connect(&common)?, common.json, cmd).await
        }
        ClientCommand::Status { common, quiet } => {
            status(&connect(&common)?, common.json, quiet).await
        }
        ClientCommand::Health { common } => health(&connect(&common)?, common.json).await,
        ClientCommand::Metrics {
            common,
            prometheus: true,
        } => super::hooks::metrics(&connect(&common)?, common.json).await,
        ClientCommand::Metrics { common, .. } => metrics(&connect(&common)?, common.json).await,
        ClientCommand::Capacity { common } => capacity(&connect(&common)?, common.json).await,
        ClientCommand::Jobs {
            common,
            uid: u,
            state,
            kind,
            limit,
        } => {
            let f = jobs::Filter {
                uid: u.as_deref().map(uid).transpose()?,
                state,
                kind,
                limit,
            };
            jobs::list(&connect(&common)?, common.json, &f).await
        }
        ClientCommand::Job { common, id, follow } => {
            jobs::show(&connect(&common)?, common.json, &segment(&id), follow).await
        }
        ClientCommand::Events { common, uid: u } => {
            let u = u.as_deref().map(uid).transpose()?;
            events::run(&connect(&common)?, common.json, u.as_deref()).await
        }
        ClientCommand::Keys { common, cmd } => keys(&connect(&common)?, common.json, cmd).await,
        ClientCommand::Nodes { common, cmd } => {
            super::nodes::run(&connect(&common)?, common.json, cmd).await
        }
        ClientCommand::Rollouts { common, cmd } => {
            rollouts(&connect(&common)?, common.json, cmd).await
        }
        ClientCommand::Hooks { common, cmd } => {
            super::hooks::hooks(&connect(&common)?, common.json, cmd).await
        }
        ClientCommand::Audit {
            common,
            since,
            uid: u,
            key,
            limit,
        } => {
            let mut q = vec![format!("limit={limit}")];
            for (k, v) in [("since", since), ("uid", u), ("key", key)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", segment(&v)));
                }
            }
            let v = connect(&common)?
                .get(&format!("/audit?{}", q.join("&")))
                .await?;
            print_or_json(&v, common.json, audit_table);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A key's scope for a table: `all`, or its games and uids.
fn scope_text(v: &Value) -> String {
    if v.is_null() {
        return "all".into();
    }
    let list = |k: &str| -> Vec<String> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let mut parts: Vec<String> = list("games")
        .into_iter()
        .map(|g| format!("{g}.*"))
        .collect();
    parts.extend(list("uids"));
    parts.join(",")
}

fn keys_table(v: &Value) {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            vec![
                s(k, "name"),
                s(k, "role"),
                scope_text(&k["scope"]),
                if k["configured"].as_bool() == Some(true) {
                    "configured".into()
                } else {
                    output::utc_time(&s(k, "created"))
                },
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["NAME", "ROLE", "SCOPE", "CREATED"], &rows)
    );
}

fn audit_table(v: &Value) {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                output::utc_time(&s(e, "time")),
                s(e, "key"),
                s(e, "addr"),
                s(e, "method"),
                s(e, "route"),
                s(e, "uid"),
                s(e, "status"),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["TIME", "KEY", "ADDRESS", "METHOD", "ROUTE", "UID", "STATUS"],
            &rows
        )
    );
}

async fn rollouts(c: &Client, json: bool, cmd: Option<RolloutsCmd>) -> Result<ExitCode> {
    let v = match cmd.unwrap_or(RolloutsCmd::List) {
        RolloutsCmd::List => c.get("/rollouts").await?,
        RolloutsCmd::Get { id } => c.get(&format!("/rollout/{}", segment(&id))).await?,
        RolloutsCmd::Start {
            image,
            plan_version,
            game,
            uids,
            batch_percent,
            success_percent,
            success_timeout,
            duration_timeout,
            watch,
        } => {
            let target = match (image, plan_version) {
                (Some(i), _) => json!({ "image": i }),
                (None, v) => json!({ "plan_version": v }),
            };
            let body = json!({
                "target": target, "game": game, "uids": uids,
                "batch_percent": batch_percent, "success_percent": success_percent,
                "success_timeout": success_timeout, "duration_timeout": duration_timeout,
                "watch": watch,
            });
            c.call(Method::POST, "/rollouts", Some(&body), QUICK)
                .await?
        }
        RolloutsCmd::Abort { id } => {
            c.call(
                Method::POST,
                &format!("/rollout/{}/abort", segment(&id)),
                None,
                QUICK,
            )
            .await?
        }
    };
    print_or_json(&v, json, rollouts_table);
    Ok(ExitCode::SUCCESS)
}

/// One rollout (with its servers) or a list of rollouts, as tables.
fn rollouts_table(v: &Value) {
    let list = match v {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    if list.is_empty() {
        println!("No rollouts.");
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let done = r["servers"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|x| x["state"] == "updated").count());
            let n = r["servers"].as_array().map_or(0, Vec::len);
            vec![
                s(r, "id"),
                match r["target_plan_version"].as_str() {
                    Some(v) => format!("plan {v}"),
                    None => s(r, "target_image"),
                },
                s(r, "state"),
                format!(
                    "{}/{}",
                    (r["batch"].as_u64().unwrap_or(0)).min(r["batches"].as_u64().unwrap_or(0)),
                    s(r, "batches")
                ),
                format!("{done}/{n}"),
                s(r, "error"),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["ID", "TARGET", "STATE", "BATCH", "UPDATED", "ERROR"],
            &rows
        )
    );
    if let [one] = list.as_slice() {
        let rows: Vec<Vec<String>> = one["servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| vec![s(x, "uid"), s(x, "batch"), s(x, "state"), s(x, "error")])
                    .collect()
            })
            .unwrap_or_default();
        println!();
        print!(
            "{}",
            output::table(&["SERVER", "BATCH", "STATE", "ERROR"], &rows)
        );
        for k in ["last_known_good", "last_known_bad"] {
            if let Some(i) = one[k].as_str() {
                println!("{}: {i}", k.replace('_', " "));
            }
        }
    }
}

async fn keys(c: &Client, json: bool, cmd: Option<KeysCmd>) -> Result<ExitCode> {
    match cmd.unwrap_or(KeysCmd::List) {
        KeysCmd::List => {
            let v = c.get("/keys").await?;
            print_or_json(&v, json, keys_table);
        }
        KeysCmd::Create {
            name,
            role,
            games,
            uids,
        } => {
            let mut body = json!({ "name": name, "role": role });
            if !games.is_empty() || !uids.is_empty() {
                body["scope"] = json!({ "games": games, "uids": uids });
            }
            let v = c.call(Method::POST, "/keys", Some(&body), QUICK).await?;
            print_or_json(&v, json, |v| {
                println!(
                    "created the key [{}] ({}, scope {})",
                    s(v, "name"),
                    s(v, "role"),
                    scope_text(&v["scope"])
                );
                println!(
                    "secret (shown once; send it as X-Api-Key): {}",
                    s(v, "secret")
                );
            });
        }
        KeysCmd::Revoke { name } => {
            let v = c
                .call(
                    Method::DELETE,
                    &format!("/key/{}", segment(&name)),
                    None,
                    QUICK,
                )
                .await?;
            print_or_json(&v, json, |v| println!("{}", s(v, "info")));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `peon plan check <dir>`: exit 1 on errors, 2 when the folder cannot be read.
fn plan_check(dir: &Path) -> ExitCode {
    let started = std::time::Instant::now();
    match crate::plans::check::check_dir(dir) {
        Ok(report) => {
            for f in &report.findings {
                println!("{f}");
            }
            println!(
                "{} ({} ms)",
                report.summary(),
                started.elapsed().as_millis()
            );
            if report.errors() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("peon: cannot read the plans in {}: {e}", dir.display());
            ExitCode::from(2)
        }
    }
}

fn uid(s: &str) -> Result<String> {
    Uid::parse(s)
        .map(|u| u.to_string())
        .map_err(|e| CliError::Usage(format!("{s:?} is not a server uid <game>.<name>: {e}")))
}

fn game(s: &str) -> Result<String> {
    names::game_id(s)
        .map(str::to_owned)
        .map_err(|e| CliError::Usage(format!("{s:?} is not a game id: {e}")))
}

/// Percent-encodes one path segment (for ids the client does not know the shape of).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn timer_body(t: &Timer) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(i) = &t.interval {
        m.insert("interval".into(), Value::String(i.clone()));
    }
    if let Some(e) = &t.epoch {
        m.insert("epoch_time".into(), Value::String(e.clone()));
    }
    m
}

/// Runs a long request with a progress line.
async fn long(
    c: &Client,
    json: bool,
    message: String,
    method: Method,
    path: &str,
    body: &Value,
) -> Result<Value> {
    let p = Progress::start(message, !json);
    let r = c.call(method, path, Some(body), LONG).await;
    p.finish().await;
    r
}

/// Sends `PUT <path>?wait=false` and prints the job the daemon runs it as.
async fn detach(c: &Client, json: bool, path: &str, body: &Value) -> Result<ExitCode> {
    let v = c
        .call(
            Method::PUT,
            &format!("{path}?wait=false"),
            Some(body),
            QUICK,
        )
        .await?;
    jobs::accepted(&v, json);
    Ok(ExitCode::SUCCESS)
}

fn server_row(v: &Value) -> Vec<String> {
    let ports = v
        .get("ports")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "-".into());
    vec![
        s(v, "uid"),
        s(v, "container_state"),
        s(v, "container_type"),
        s(v, "build_version"),
        ports,
        output::stop_time(v),
        s(v, "description"),
    ]
}

const SERVER_HEADER: [&str; 7] = [
    "UID",
    "STATE",
    "TYPE",
    "VERSION",
    "PORTS",
    "STOPS AT",
    "DESCRIPTION",
];

async fn servers(c: &Client, json: bool) -> Result<ExitCode> {
    let v = c.get("/servers").await?;
    if json {
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No servers. Create one with `peon server create <game>.<name>`.");
    } else {
        print!("{}", server_table(&list));
    }
    Ok(ExitCode::SUCCESS)
}

/// The servers table; long descriptions are cut to keep rows on one line.
fn server_table(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            let mut r = server_row(v);
            r[6] = output::ellipsize(&r[6], 50);
            r
        })
        .collect();
    output::table(&SERVER_HEADER, &rows)
}

/// One server as `key  value` pairs. The supervision fields (`server_state`,
/// `restart_policy`, `last_exit`, `exits`) are shown when the daemon sends them.
fn server_fields(v: &Value) -> Vec<(String, String)> {
    let row = server_row(v);
    let present = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
    let mut all: Vec<(String, String)> = vec![
        ("uid".into(), row[0].clone()),
        ("state".into(), row[1].clone()),
    ];
    if present("server_state") {
        all.push(("server state".into(), s(v, "server_state")));
    }
    all.extend([
        ("type".into(), row[2].clone()),
        ("version".into(), row[3].clone()),
        ("ports".into(), row[4].clone()),
        ("stops at".into(), row[5].clone()),
        ("plan version".into(), s(v, "plan_version")),
        ("description".into(), row[6].clone()),
    ]);
    if present("restart_policy") {
        all.push(("restart policy".into(), s(v, "restart_policy")));
    }
    if let Some(exit) = v.get("last_exit").filter(|e| e.is_object()) {
        all.push(("last exit".into(), exits::with_time(exit)));
        if let Some(l) = exits::last_line(exit) {
            all.push(("last line".into(), l));
        }
    }
    if let Some(list) = v.get("exits").and_then(Value::as_array) {
        all.push(("exits".into(), list.len().to_string()));
    }
    if let Some(cfg) = v.get("server_config").and_then(Value::as_object) {
        for (k, val) in cfg {
            let val = val.as_str().map(str::to_owned).unwrap_or(val.to_string());
            all.push((format!("config.{k}"), val));
        }
    }
    all
}

/// A server's options as `key  value` pairs (what `peon server options` shows).
fn options_fields(v: &Value) -> Vec<(String, String)> {
    let mut all = vec![
        ("uid".to_owned(), s(v, "uid")),
        ("restart policy".to_owned(), s(v, "restart_policy")),
    ];
    if v.get("stop_grace").is_some_and(|g| !g.is_null()) {
        all.push(("stop grace".into(), s(v, "stop_grace")));
    }
    if let Some(i) = v.get("idle_stop_s") {
        let text = i.as_u64().map_or("off".to_owned(), |s| format!("{s}s"));
        all.push(("idle stop".into(), text));
        all.push(("idle grace".into(), format!("{}s", s(v, "idle_grace_s"))));
        all.push(("wake on connect".into(), s(v, "wake_on_connect")));
        all.push((
            "backup before idle stop".into(),
            s(v, "backup_before_idle_stop"),
        ));
        all.push(("sleeping".into(), s(v, "sleeping")));
    }
    all
}

/// A server's limits and disk use as `key  value` pairs (what `peon server limits` shows).
fn limits_fields(v: &Value) -> Vec<(String, String)> {
    let l = &v["limits"];
    let or_none = |x: &Value| {
        if x.is_null() {
            "none".to_owned()
        } else {
            x.to_string()
        }
    };
    let mut all = vec![("uid".to_owned(), s(v, "uid"))];
    for (k, label) in [
        ("memory_bytes", "memory (bytes)"),
        ("cpus", "cpus"),
        ("pids", "pids"),
        ("disk_bytes", "disk quota (bytes)"),
    ] {
        all.push((label.to_owned(), or_none(&l[k])));
    }
    if let Some(d) = v.get("disk_bytes") {
        all.push(("disk used (bytes)".into(), or_none(d)));
    }
    all
}

/// Prints pairs as aligned `key  value` lines.
fn print_pairs(all: &[(String, String)]) {
    let width = all
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    for (k, val) in all {
        println!("{k:<width$}{val}");
    }
}

/// One server as `key  value` lines.
fn print_server(v: &Value) {
    print_pairs(&server_fields(v));
}

fn print_or_json(v: &Value, json: bool, f: impl FnOnce(&Value)) {
    if json { output::json(v) } else { f(v) }
}

async fn server(c: &Client, json: bool, cmd: ServerCmd) -> Result<ExitCode> {
    match cmd {
        ServerCmd::Get { uid: u } => {
            let v = c.get(&format!("/server/get/{}", uid(&u)?)).await?;
            print_or_json(&v, json, print_server);
        }
        ServerCmd::Stats { uid: u } => {
            let v = c.get(&format!("/server/stats/{}", uid(&u)?)).await?;
            print_or_json(&v, json, |v| {
                println!("{:<13}{}", "uid", s(v, "uid"));
                println!("{:<13}{}", "state", s(v, "container_state"));
                if v.get("stats").is_some_and(Value::is_object) {
                    println!("{:<13}{:.1}%", "cpu", num(v, "cpu_percent"));
                    println!(
                        "{:<13}{} ({:.1}%)",
                        "memory",
                        output::bytes(num(v, "memory_bytes") as u64),
                        num(v, "memory_percent")
                    );
                    let up = v
                        .get("uptime_s")
                        .and_then(Value::as_i64)
                        .map_or("-".into(), output::duration);
                    println!("{:<13}{up}", "uptime");
                } else {
                    println!("{:<13}not available (the server is not running)", "stats");
                }
            });
        }
        ServerCmd::Logs {
            uid: u,
            lines,
            follow: false,
        } => logs::last(c, json, &uid(&u)?, lines).await?,
        ServerCmd::Logs {
            uid: u,
            lines,
            follow: true,
        } => logs::follow(c, json, &uid(&u)?, lines).await?,
        ServerCmd::Console { uid: u } => return console::run(c, json, &uid(&u)?).await,
        ServerCmd::Command { uid: u, text } => {
            let u = uid(&u)?;
            let v = c
                .call(
                    Method::POST,
                    &format!("/server/command/{u}"),
                    Some(&json!({ "command": text.join(" ") })),
                    QUICK,
                )
                .await?;
            print_or_json(&v, json, |v| println!("{}", s(v, "info")));
        }
        ServerCmd::Kill { uid: u } => {
            let u = uid(&u)?;
            let v = long(
                c,
                json,
                format!("killing {u}"),
                Method::PUT,
                &format!("/server/kill/{u}"),
                &json!({}),
            )
            .await?;
            print_or_json(&v, json, state_line);
        }
        ServerCmd::Options {
            uid: u,
            restart_policy,
            stop_grace,
            idle_stop,
            idle_grace,
            wake_on_connect,
            backup_before_idle_stop,
            failover_after,
        } => {
            let u = uid(&u)?;
            let mut body = Map::new();
            if let Some(f) = failover_after {
                let v = if f == "off" {
                    Value::Null
                } else {
                    serde_json::json!({ "after": f })
                };
                body.insert("failover".into(), v);
            }
            if let Some(p) = restart_policy {
                body.insert("restart_policy".into(), Value::String(p));
            }
            if let Some(g) = stop_grace {
                body.insert("stop_grace".into(), Value::String(g));
            }
            for (k, v) in [("idle_stop", idle_stop), ("idle_grace", idle_grace)] {
                if let Some(v) = v {
                    body.insert(k.into(), Value::String(v));
                }
            }
            for (k, v) in [
                ("wake_on_connect", wake_on_connect),
                ("backup_before_idle_stop", backup_before_idle_stop),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), Value::Bool(v));
                }
            }
            // Without an option there is nothing to set: show the server's options.
            let v = if body.is_empty() {
                c.get(&format!("/server/get/{u}")).await?
            } else {
                c.call(
                    Method::PUT,
                    &format!("/server/options/{u}"),
                    Some(&Value::Object(body)),
                    QUICK,
                )
                .await?
            };
            print_or_json(&v, json, |v| print_pairs(&options_fields(v)));
        }
        ServerCmd::Limits {
            uid: u,
            memory,
            cpus,
            pids,
            disk,
        } => {
            let u = uid(&u)?;
            let mut body = Map::new();
            for (k, v) in [
                ("memory", memory),
                ("cpus", cpus),
                ("pids", pids),
                ("disk", disk),
            ] {
                if let Some(v) = v {
                    let v = if v == "none" {
                        Value::Null
                    } else {
                        Value::String(v)
                    };
                    body.insert(k.into(), v);
                }
            }
            let v = if body.is_empty() {
                c.get(&format!("/server/get/{u}")).await?
            } else {
                c.call(
                    Method::PUT,
                    &format!("/server/limits/{u}"),
                    Some(&Value::Object(body)),
                    QUICK,
                )
                .await?
            };
            print_or_json(&v, json, |v| print_pairs(&limits_fields(v)));
        }
        ServerCmd::Start {
            uid: u,
            timer,
            no_wait,
        } => {
            let u = uid(&u)?;
            let body = Value::Object(timer_body(&timer));
            if no_wait {
                return detach(c, json, &format!("/server/start/{u}"), &body).await;
            }
            let v = long(
                c,
                json,
                format!("starting {u}"),
                Method::PUT,
                &format!("/server/start/{u}"),
                &body,
            )
            .await?;
            print_or_json(&v, json, state_line);
        }
        ServerCmd::Stop {
            uid: u,
            timer,
            no_wait,
        } => {
            let u = uid(&u)?;
            let body = Value::Object(timer_body(&timer));
            if no_wait {
                return detach(c, json, &format!("/server/stop/{u}"), &body).await;
            }
            let v = long(
                c,
                json,
                format!("stopping {u}"),
                Method::PUT,
                &format!("/server/stop/{u}"),
                &body,
            )
            .await?;
            print_or_json(&v, json, state_line);
        }
        ServerCmd::Restart {
            uid: u,
            no_wait,
            when_empty,
        } => {
            let u = uid(&u)?;
            let body = match when_empty.body() {
                Some(w) => json!({ "when_empty": w }),
                None => json!({}),
            };
            if no_wait {
                return detach(c, json, &format!("/server/restart/{u}"), &body).await;
            }
            let v = long(
                c,
                json,
                format!("restarting {u}"),
                Method::PUT,
                &format!("/server/restart/{u}"),
                &body,
            )
            .await?;
            print_or_json(&v, json, state_line);
        }
        ServerCmd::Create {
            uid: id,
            set,
            description,
            start_later,
            timer,
        } => {
            let id = match id.split_once('.') {
                Some(_) => uid(&id)?,
                None => game(&id)?,
            };
            let mut body = Map::new();
            for kv in &set {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| CliError::Usage(format!("--set {kv:?}: write KEY=VALUE")))?;
                if k.is_empty() {
                    return Err(CliError::Usage(format!("--set {kv:?}: the key is empty")));
                }
                body.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            if let Some(d) = description {
                body.insert("description".into(), Value::String(d));
            }
            if start_later {
                body.insert("start_later".into(), Value::Bool(true));
            }
            body.extend(timer_body(&timer));
            let v = long(
                c,
                json,
                format!("creating {id} (an image pull may take minutes)"),
                Method::PUT,
                &format!("/server/create/{id}"),
                &Value::Object(body),
            )
            .await?;
            print_or_json(&v, json, print_server);
        }
        ServerCmd::Update {
            uid: u,
            mode,
            watch,
            plan_version,
            no_wait,
            when_empty,
        } => {
            let u = uid(&u)?;
            let mut body = json!({ "mode": mode, "watch": watch });
            if let Some(v) = plan_version {
                body["plan_version"] = json!(v);
            }
            if let Some(w) = when_empty.body() {
                body["when_empty"] = w;
            }
            if no_wait {
                return detach(c, json, &format!("/server/update/{u}"), &body).await;
            }
            let v = long(
                c,
                json,
                format!("updating {u} ({mode})"),
                Method::PUT,
                &format!("/server/update/{u}"),
                &body,
            )
            .await?;
            print_or_json(&v, json, state_line);
        }
        ServerCmd::Describe {
            uid: u,
            description,
        } => {
            let u = uid(&u)?;
            let v = c
                .call(
                    Method::PUT,
                    &format!("/server/description/{u}"),
                    Some(&json!({ "description": description.join(" ") })),
                    QUICK,
                )
                .await?;
            print_or_json(&v, json, |v| {
                println!("{}: {}", s(v, "uid"), s(v, "description"))
            });
        }
        ServerCmd::Destroy { uid: u, eradicate } => {
            let u = uid(&u)?;
            let v = c
                .call(
                    Method::DELETE,
                    &format!("/server/destroy/{u}"),
                    Some(&json!({ "eradicate": eradicate })),
                    LONG,
                )
                .await?;
            print_or_json(&v, json, |v| println!("{}", s(v, "info")));
        }
        ServerCmd::Eradicate { uid: u, yes } => {
            let u = uid(&u)?;
            if !yes {
                return Err(CliError::Usage(format!(
                    "eradicating {u} deletes all its files, worlds included: add --yes to confirm"
                )));
            }
            let v = c
                .call(
                    Method::DELETE,
                    &format!("/server/eradicate/{u}"),
                    Some(&json!({ "eradicate": true })),
                    LONG,
                )
                .await?;
            print_or_json(&v, json, |v| println!("{}", s(v, "info")));
        }
        ServerCmd::Save { uid: u, output } => save(c, json, &uid(&u)?, output).await?,
        ServerCmd::Backup { uid: u, no_wait } => {
            return backups::run(c, json, &uid(&u)?, BackupCmd::Take { no_wait }).await;
        }
        ServerCmd::Backups { uid: u } => {
            return backups::run(c, json, &uid(&u)?, BackupCmd::List).await;
        }
        ServerCmd::Restore {
            uid: u,
            id,
            no_wait,
        } => {
            return backups::run(c, json, &uid(&u)?, BackupCmd::Restore { id, no_wait }).await;
        }
        ServerCmd::Move {
            uid: u,
            node,
            no_wait,
        } => {
            return super::nodes::move_server(c, json, &uid(&u)?, &node, no_wait).await;
        }
        ServerCmd::BackupDelete { uid: u, id } => {
            return backups::run(c, json, &uid(&u)?, BackupCmd::Delete { id }).await;
        }
        ServerCmd::BackupDownload { uid: u, id, output } => {
            return backups::run(c, json, &uid(&u)?, BackupCmd::Download { id, output }).await;
        }
        ServerCmd::BackupPolicy {
            uid: u,
            keep_last,
            keep_daily,
            keep_weekly,
            target,
        } => {
            let cmd = BackupCmd::Policy {
                keep_last,
                keep_daily,
                keep_weekly,
                target,
            };
            return backups::run(c, json, &uid(&u)?, cmd).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn state_line(v: &Value) {
    let stop = output::stop_time(v);
    if stop == "-" {
        println!("{}: {}", s(v, "uid"), s(v, "container_state"));
    } else {
        println!(
            "{}: {} (stops at {stop})",
            s(v, "uid"),
            s(v, "container_state")
        );
    }
}

/// The file name in a `Content-Disposition: attachment; filename="..."` header, reduced to its
/// last path component.
fn attachment_name(res: &reqwest::Response) -> Option<String> {
    let h = res
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    let name = h.split("filename=").nth(1)?.trim().trim_matches('"');
    let name = Path::new(name).file_name()?.to_str()?.to_owned();
    Some(name).filter(|n| !n.is_empty() && n != "..")
}

async fn save(c: &Client, json: bool, uid: &str, output: Option<PathBuf>) -> Result<()> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let p = Progress::start(format!("saving {uid}"), !json);
    let res = c
        .get_as(&format!("/server/save/{uid}"), "application/zip", LONG)
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            p.finish().await;
            return Err(e);
        }
    };
    let name = attachment_name(&res).unwrap_or_else(|| format!("{uid}.zip"));
    let to_stdout = output.as_deref() == Some(Path::new("-"));
    let mut stream = res.bytes_stream();
    let mut total: u64 = 0;
    let local = |e: std::io::Error, what: &str| CliError::Local(format!("{what}: {e}"));
    let result = async {
        if to_stdout {
            let mut out = tokio::io::stdout();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| CliError::Connect(format!("download failed: {e}")))?;
                total += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| local(e, "cannot write to standard output"))?;
            }
            out.flush()
                .await
                .map_err(|e| local(e, "cannot write to standard output"))?;
            return Ok(None);
        }
        let path = match output {
            Some(p) if p.is_dir() => p.join(&name),
            Some(p) => p,
            None => PathBuf::from(&name),
        };
        let part = path.with_extension("zip.part");
        let mut f = tokio::fs::File::create(&part)
            .await
            .map_err(|e| local(e, &format!("cannot create {}", part.display())))?;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&part).await;
                    return Err(CliError::Connect(format!("download failed: {e}")));
                }
            };
            total += chunk.len() as u64;
            f.write_all(&chunk)
                .await
                .map_err(|e| local(e, &format!("cannot write {}", part.display())))?;
        }
        f.sync_all()
            .await
            .map_err(|e| local(e, &format!("cannot write {}", part.display())))?;
        tokio::fs::rename(&part, &path)
            .await
            .map_err(|e| local(e, &format!("cannot move the backup to {}", path.display())))?;
        Ok(Some(path))
    }
    .await;
    p.finish().await;
    if let Some(path) = result? {
        if json {
            output::json(&json!({ "file": path, "bytes": total }));
        } else {
            println!("saved {} ({})", path.display(), output::bytes(total));
        }
    }
    Ok(())
}

async fn plans(c: &Client, json: bool, cmd: Option<PlansCmd>) -> Result<ExitCode> {
    match cmd {
        None => {
            let v = c.get("/plans").await?;
            print_or_json(&v, json, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| vec![s(p, "game_uid"), s(p, "title")])
                            .collect()
                    })
                    .unwrap_or_default();
                print!("{}", output::table(&["GAME", "TITLE"], &rows));
            });
        }
        Some(PlansCmd::Update) => {
            let v = long(
                c,
                json,
                "updating plans".into(),
                Method::PUT,
                "/plans",
                &json!({}),
            )
            .await?;
            print_or_json(&v, json, generic);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan(c: &Client, json: bool, g: &str, full: bool) -> Result<ExitCode> {
    let g = game(g)?;
    let path = if full {
        format!("/plan/{g}?full=true")
    } else {
        format!("/plan/{g}")
    };
    let v = c.get(&path).await?;
    if json || full {
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(m) = v.as_object() else {
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(d) = m.get("description").and_then(Value::as_str) {
        println!("{g}: {d}\n");
    }
    let rows: Vec<Vec<String>> = m
        .iter()
        .filter(|(k, _)| k.as_str() != "description")
        .map(|(k, val)| {
            let shown = match val {
                Value::String(x) if x.is_empty() => "\"\"".to_owned(),
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            vec![k.clone(), shown]
        })
        .collect();
    print!("{}", output::table(&["SETTING", "DEFAULT"], &rows));
    println!(
        "\nSettings shown as \"\" have no default (PEON marks required ones so). Give settings with\n`peon server create {g}.<name> --set KEY=VALUE`."
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints any JSON answer readably: a list of objects as a table, an object as `key: value`.
fn generic(v: &Value) {
    match v {
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            let mut cols: Vec<String> = Vec::new();
            for it in items {
                for (k, val) in it.as_object().into_iter().flatten() {
                    if !val.is_object() && !val.is_array() && !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            let header: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|it| cols.iter().map(|c| s(it, c)).collect())
                .collect();
            print!("{}", output::table(&header, &rows));
        }
        Value::Array(items) if items.is_empty() => println!("(none)"),
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::String(x) => println!("{k}: {x}"),
                    Value::Array(a) if a.iter().all(|x| !x.is_object()) => println!(
                        "{k}: {}",
                        a.iter()
                            .map(|x| x.as_str().map(str::to_owned).unwrap_or(x.to_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Value::Array(_) | Value::Object(_) => {
                        println!("{k}:");
                        generic(val);
                    }
                    other => println!("{k}: {other}"),
                }
            }
        }
        other => output::json(other),
    }
}

async fn schedules(c: &Client, json: bool, cmd: Option<ScheduleCmd>) -> Result<ExitCode> {
    let v = match cmd {
        None => c.get("/schedules").await?,
        Some(ScheduleCmd::List { uid: u }) => {
            c.get(&format!("/server/schedules/{}", uid(&u)?)).await?
        }
        Some(ScheduleCmd::Add {
            uid: u,
            action,
            cron,
            at,
        }) => {
            let mut body = json!({ "action": action });
            if let Some(cr) = cron {
                body["cron"] = Value::String(cr);
            }
            if let Some(a) = at {
                body["at"] = match a.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => Value::String(a),
                };
            }
            c.call(
                Method::POST,
                &format!("/server/schedules/{}", uid(&u)?),
                Some(&body),
                QUICK,
            )
            .await?
        }
        Some(ScheduleCmd::Remove { uid: u, id }) => {
            c.call(
                Method::DELETE,
                &format!("/server/schedules/{}/{}", uid(&u)?, segment(&id)),
                None,
                QUICK,
            )
            .await?
        }
    };
    print_or_json(&v, json, generic);
    Ok(ExitCode::SUCCESS)
}

async fn status(c: &Client, json: bool, quiet: bool) -> Result<ExitCode> {
    let (orc, list) = tokio::join!(c.get("/orchestrator"), c.get("/servers"));
    let (orc, list) = (orc?, list?);
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        output::json(&json!({ "orchestrator": orc, "servers": list }));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "peon {} at {} (instance {})",
        s(&orc, "version"),
        c.url(),
        s(&orc, "instance")
    );
    let e = &orc["engine"];
    if e["reachable"].as_bool() == Some(true) {
        println!(
            "engine: Docker {} (API {}, {})",
            s(e, "version"),
            s(e, "api_version"),
            s(e, "os")
        );
    } else {
        println!("engine: UNREACHABLE: {}", s(e, "error"));
    }
    let list = list.as_array().cloned().unwrap_or_default();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for v in &list {
        *counts.entry(s(v, "container_state")).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    if list.is_empty() {
        println!("servers: 0");
    } else {
        println!("servers: {} ({})\n", list.len(), summary.join(", "));
        print!("{}", server_table(&list));
    }
    Ok(ExitCode::SUCCESS)
}

async fn health(c: &Client, json: bool) -> Result<ExitCode> {
    let v = c.health().await?;
    if json {
        output::json(&v);
    }
    if v["docker"].as_bool() == Some(true) {
        if !json {
            println!("ok: peon {} and its Docker engine answer", s(&v, "version"));
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CliError::Api {
            status: 200,
            info: "the daemon answers but its Docker engine does not".into(),
            code: Some("docker.unavailable".into()),
        })
    }
}

async fn metrics(c: &Client, json: bool) -> Result<ExitCode> {
    let list = c.get("/servers").await?;
    let running: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["container_state"] == "running")
        .map(|v| s(v, "uid"))
        .collect();
    let stats = futures_util::future::join_all(
        running
            .iter()
            .map(|u| async move { c.get(&format!("/server/stats/{u}")).await }),
    )
    .await;
    let mut out = Vec::new();
    for (u, r) in running.iter().zip(stats) {
        match r {
            Ok(v) => out.push(json!({
                "uid": u,
                "cpu_percent": v["cpu_percent"],
                "memory_bytes": v["memory_bytes"],
                "memory_percent": v["memory_percent"],
                "uptime_s": v["uptime_s"],
            })),
            // The server stopped or vanished between the two calls.
            Err(CliError::Api { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    if json {
        output::json(&Value::Array(out));
        return Ok(ExitCode::SUCCESS);
    }
    if out.is_empty() {
        println!("No running servers.");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = out
        .iter()
        .map(|m| {
            vec![
                s(m, "uid"),
                format!("{:.1}%", num(m, "cpu_percent")),
                output::bytes(num(m, "memory_bytes") as u64),
                format!("{:.1}%", num(m, "memory_percent")),
                m["uptime_s"].as_i64().map_or("-".into(), output::duration),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["UID", "CPU", "MEMORY", "MEM%", "UPTIME"], &rows)
    );
    let cpu: f64 = out.iter().map(|m| num(m, "cpu_percent")).sum();
    let mem: f64 = out.iter().map(|m| num(m, "memory_bytes")).sum();
    println!(
        "\n{} running: {cpu:.1}% CPU, {} memory",
        out.len(),
        output::bytes(mem as u64)
    );
    Ok(ExitCode::SUCCESS)
}

async fn capacity(c: &Client, json: bool) -> Result<ExitCode> {
    let v = c.get("/capacity").await?;
    if json {
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let b = |k: &str| output::bytes(v[k].as_u64().unwrap_or(0));
    println!("data dir {}", s(&v, "data_dir"));
    let rows: Vec<Vec<String>> = v["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            vec![
                s(x, "uid"),
                output::bytes(x["bytes"].as_u64().unwrap_or(0)),
                output::bytes(x["data_bytes"].as_u64().unwrap_or(0)),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print!("{}", output::table(&["SERVER", "SIZE", "DATA"], &rows));
    }
    let rows: Vec<Vec<String>> = v["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            vec![
                s(x, "image"),
                x["bytes"]
                    .as_u64()
                    .map_or("(not present)".into(), output::bytes),
                x["servers"]
                    .as_array()
                    .map(|a| a.len().to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print!("{}", output::table(&["IMAGE", "SIZE", "SERVERS"], &rows));
    }
    println!(
        "\nservers {}, backups {}, plans {}, images {}",
        b("servers_bytes"),
        b("backups_bytes"),
        b("plans_bytes"),
        b("images_bytes")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(String, String)]) -> Vec<&str> {
        pairs.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_server_from_an_older_daemon_shows_the_same_lines_as_before() {
        let v = json!({"uid": "demo.a", "container_state": "running", "ports": ["27960/tcp"],
                       "server_config": {"server_name": "A"}});
        assert_eq!(
            keys(&server_fields(&v)),
            [
                "uid",
                "state",
                "type",
                "version",
                "ports",
                "stops at",
                "plan version",
                "description",
                "config.server_name"
            ]
        );
    }

    #[test]
    fn supervision_fields_are_shown_when_present() {
        let v = json!({"uid": "demo.a", "container_state": "running",
                       "server_state": "unhealthy", "restart_policy": "on-crash",
                       "last_exit": {"time": "2026-05-01T12:00:03Z", "exit_code": 1,
                                     "class": "crash", "last_lines": ["oops"]},
                       "exits": [{}, {}]});
        let f = server_fields(&v);
        let get = |k: &str| {
            f.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("(missing)")
        };
        assert_eq!(get("server state"), "unhealthy");
        assert_eq!(get("restart policy"), "on-crash");
        assert_eq!(
            get("last exit"),
            "crash (exit code 1) at 2026-05-01T12:00:03Z"
        );
        assert_eq!(get("last line"), "oops");
        assert_eq!(get("exits"), "2");
        // A server that never exited: no last exit line.
        let v = json!({"uid": "demo.a", "last_exit": null, "exits": []});
        assert!(!keys(&server_fields(&v)).contains(&"last exit"));
        let o = options_fields(&json!({"uid": "demo.a", "restart_policy": "always",
                                       "stop_grace": "30s"}));
        assert_eq!(keys(&o), ["uid", "restart policy", "stop grace"]);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("abc-1.2"), "abc-1.2");
        assert_eq!(segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
