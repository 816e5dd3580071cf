//! `peon hooks ...` (webhooks, admin) and `peon metrics` (the Prometheus text of `/metrics`).

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::CliError;
use super::args::HooksCmd;
use super::client::{Client, QUICK};
use super::output::{self, s};

type Result<T> = std::result::Result<T, CliError>;

fn print_or_json(v: &Value, json: bool, f: impl FnOnce(&Value)) {
    if json { output::json(v) } else { f(v) }
}

fn list_text(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn hooks_table(v: &Value) {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let st = &h["status"];
            vec![
                s(h, "id"),
                s(h, "url"),
                list_text(&h["events"]),
                s(h, "format"),
                if h["signed"] == true { "yes" } else { "no" }.into(),
                s(h, "source"),
                format!(
                    "{}/{}/{}",
                    s(st, "delivered"),
                    s(st, "pending"),
                    s(st, "dead")
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "ID",
                "URL",
                "EVENTS",
                "FORMAT",
                "SIGNED",
                "SOURCE",
                "OK/PENDING/DEAD"
            ],
            &rows
        )
    );
}

fn hook_detail(v: &Value) {
    hooks_table(&json!([v["hook"]]));
    if let Some(e) = v["hook"]["status"]["last_error"].as_str() {
        println!("last error: {e}");
    }
    let dead: Vec<Vec<String>> = v["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                output::utc_time(&s(d, "time")),
                s(d, "event"),
                s(d, "uid"),
                s(d, "attempts"),
                s(d, "error"),
            ]
        })
        .collect();
    if !dead.is_empty() {
        println!("dead letters (newest first):");
        print!(
            "{}",
            output::table(&["TIME", "EVENT", "UID", "ATTEMPTS", "ERROR"], &dead)
        );
    }
}

/// `peon hooks ...`
pub async fn hooks(c: &Client, json: bool, cmd: Option<HooksCmd>) -> Result<ExitCode> {
    match cmd.unwrap_or(HooksCmd::List) {
        HooksCmd::List => {
            let v = c.get("/hooks").await?;
            print_or_json(&v, json, hooks_table);
        }
        HooksCmd::Show { id } => {
            let v = c.get(&format!("/hook/{}", segment(&id))).await?;
            print_or_json(&v, json, hook_detail);
        }
        HooksCmd::Add {
            id,
            receiver,
            events,
            secret,
            format,
        } => {
            let mut body = json!({"id": id, "url": receiver, "events": events});
            if let Some(sec) = secret {
                body["secret"] = Value::String(sec);
            }
            if let Some(f) = format {
                body["format"] = Value::String(f);
            }
            let v = c.call(Method::POST, "/hooks", Some(&body), QUICK).await?;
            print_or_json(&v, json, |v| hooks_table(&json!([v])));
        }
        HooksCmd::Remove { id } => {
            let v = c
                .call(
                    Method::DELETE,
                    &format!("/hook/{}", segment(&id)),
                    None,
                    QUICK,
                )
                .await?;
            print_or_json(&v, json, |v| println!("{}", s(v, "info")));
        }
        HooksCmd::Test { id } => {
            let v = c
                .call(
                    Method::POST,
                    &format!("/hook/{}/test", segment(&id)),
                    None,
                    QUICK,
                )
                .await?;
            print_or_json(&v, json, |v| println!("{}", s(v, "info")));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `peon metrics`: the text as served; with `--json`, one object per sample.
pub async fn metrics(c: &Client, json: bool) -> Result<ExitCode> {
    let res = c.send(Method::GET, "/metrics", None, QUICK).await?;
    let text = res.text().await.map_err(|e| c.transport(e))?;
    if json {
        output::json(&Value::Array(samples(&text)));
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The samples of a Prometheus text: `{"name", "labels": {...}, "value"}`.
fn samples(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
                None => (series, ""),
            };
            let mut map = Map::new();
            // Label values peon writes hold no `",` sequence.
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"")?;
                map.insert(
                    k.to_owned(),
                    Value::String(v.trim_end_matches('"').to_owned()),
                );
            }
            let value = value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(value.to_owned()), Value::Number);
            Some(json!({"name": name, "labels": map, "value": value}))
        })
        .collect()
}

/// Percent-encodes one path segment.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_parsed() {
        let v =
            samples("# HELP x y\npeon_servers 2\npeon_server_ready{uid=\"g.a\",game=\"g\"} 1\n");
        assert_eq!(
            Value::Array(v),
            json!([
                {"name": "peon_servers", "labels": {}, "value": 2.0},
                {"name": "peon_server_ready", "labels": {"uid": "g.a", "game": "g"}, "value": 1.0}
            ])
        );
    }
}
