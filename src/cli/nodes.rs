//! `peon nodes`: the cluster's nodes (cluster mode), and `peon nodes set` to drain, pause or
//! label one.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::CliError;
use super::client::{Client, QUICK};
use super::output::{self, s};

/// `peon nodes <action>`.
#[derive(Debug, Subcommand)]
pub enum NodesCmd {
    /// Every node with its state, availability, game slots and servers.
    List,
    /// One node in full (labels, ports in use, servers).
    Get {
        /// Node id or hostname.
        id: String,
    },
    /// Change a node: its availability and/or labels.
    Set {
        /// Node id or hostname.
        id: String,
        /// active, pause (no new servers) or drain (Swarm stops its tasks; peon never places
        /// a server there).
        #[arg(long, short, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// A label to set, `key=value` (repeatable).
        #[arg(long = "label", short = 'l')]
        labels: Vec<String>,
        /// A label to remove (repeatable).
        #[arg(long = "unlabel")]
        unlabels: Vec<String>,
    },
}

type Result<T> = std::result::Result<T, CliError>;

/// Runs `peon nodes ...`.
pub async fn run(c: &Client, json: bool, cmd: Option<NodesCmd>) -> Result<ExitCode> {
    match cmd.unwrap_or(NodesCmd::List) {
        NodesCmd::List => {
            let v = c.get("/nodes").await?;
            if json {
                output::json(&v);
            } else {
                print!("{}", table(&v));
            }
        }
        NodesCmd::Get { id } => {
            let v = c.get(&format!("/node/{}", segment(&id)?)).await?;
            if json {
                output::json(&v);
            } else {
                print!("{}", detail(&v));
            }
        }
        NodesCmd::Set {
            id,
            availability,
            labels,
            unlabels,
        } => {
            let body = set_body(availability, &labels, &unlabels)?;
            let v = c
                .call(
                    Method::PUT,
                    &format!("/node/{}", segment(&id)?),
                    Some(&body),
                    QUICK,
                )
                .await?;
            if json {
                output::json(&v);
            } else {
                print!("{}", detail(&v));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A node id or hostname as one path segment.
fn segment(id: &str) -> Result<&str> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(CliError::Usage(format!(
            "{id:?} is not a node id or hostname"
        )));
    }
    Ok(id)
}

fn set_body(availability: Option<String>, labels: &[String], unlabels: &[String]) -> Result<Value> {
    let mut l = Map::new();
    for kv in labels {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--label {kv:?}: use key=value")))?;
        l.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    for k in unlabels {
        l.insert(k.clone(), Value::Null);
    }
    if availability.is_none() && l.is_empty() {
        return Err(CliError::Usage(
            "give --availability, --label or --unlabel".into(),
        ));
    }
    let mut body = Map::new();
    if let Some(a) = availability {
        body.insert("availability".into(), json!(a));
    }
    if !l.is_empty() {
        body.insert("labels".into(), Value::Object(l));
    }
    Ok(Value::Object(body))
}

fn slots(n: &Value) -> String {
    format!(
        "{}/{}",
        n["reserved"]["gameslots"].as_i64().unwrap_or(0),
        n["gameslots"].as_i64().unwrap_or(0)
    )
}

fn table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                s(n, "hostname"),
                output::ellipsize(&s(n, "id"), 12),
                s(n, "address"),
                s(n, "role"),
                s(n, "state"),
                s(n, "availability"),
                slots(n),
                n["servers"]
                    .as_array()
                    .map(|a| a.len().to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "HOSTNAME",
            "ID",
            "ADDRESS",
            "ROLE",
            "STATE",
            "AVAILABILITY",
            "SLOTS",
            "SERVERS",
        ],
        &rows,
    )
}

fn detail(n: &Value) -> String {
    let list = |k: &str| {
        n[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut labels: Vec<String> = n["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    labels.sort();
    format!(
        "node       {} ({})\naddress    {}\nrole       {}\nstate      {}, {}\ncapacity   {} cpus, {} memory, {} game slots ({} reserved by peon)\nlabels     {}\nports      {}\nservers    {}\n",
        s(n, "hostname"),
        s(n, "id"),
        s(n, "address"),
        s(n, "role"),
        s(n, "state"),
        s(n, "availability"),
        n["cpus"].as_f64().unwrap_or(0.0),
        output::bytes(n["memory_bytes"].as_u64().unwrap_or(0)),
        n["gameslots"].as_i64().unwrap_or(0),
        n["reserved"]["gameslots"].as_i64().unwrap_or(0),
        labels.join(", "),
        list("ports_in_use"),
        list("servers"),
    )
}

/// `peon server move <uid> <node>`: the move job, followed step by step on a terminal (or in
/// the background with `--no-wait`: its job id), else waited for; then the server's node.
pub async fn move_server(
    c: &Client,
    json: bool,
    uid: &str,
    node: &str,
    no_wait: bool,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let path = format!("/server/move/{uid}");
    let body = json!({ "node": node });
    let follow = !json && std::io::stdout().is_terminal();
    if no_wait || follow {
        let v = c
            .call(
                Method::POST,
                &format!("{path}?wait=false"),
                Some(&body),
                QUICK,
            )
            .await?;
        if no_wait {
            super::jobs::accepted(&v, json);
            return Ok(ExitCode::SUCCESS);
        }
        return super::jobs::show(c, false, &s(&v, "job_id"), true).await;
    }
    let v = c
        .call(Method::POST, &path, Some(&body), super::client::LONG)
        .await?;
    if json {
        output::json(&v);
    } else {
        let row = vec![
            s(&v, "uid"),
            s(&v["node"], "hostname"),
            s(&v["node"], "address"),
            s(&v, "container_state"),
        ];
        print!(
            "{}",
            output::table(&["UID", "NODE", "ADDRESS", "STATE"], &[row])
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_builds_labels_and_removals() {
        let b = set_body(Some("drain".into()), &["a=1".into()], &["old".into()]).unwrap();
        assert_eq!(
            b,
            json!({"availability": "drain", "labels": {"a": "1", "old": null}})
        );
        assert!(set_body(None, &[], &[]).is_err());
        assert!(set_body(None, &["novalue".into()], &[]).is_err());
    }

    #[test]
    fn the_table_shows_slots_as_reserved_of_offered() {
        let v = json!([{"hostname": "n1", "id": "abc", "address": "10.0.0.1", "role": "manager",
            "state": "ready", "availability": "active", "gameslots": 4,
            "reserved": {"gameslots": 1}, "servers": ["g.a"]}]);
        let t = table(&v);
        assert!(t.contains("1/4"), "{t}");
        assert!(t.contains("n1"), "{t}");
    }
}
