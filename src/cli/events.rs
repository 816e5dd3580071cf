//! `peon events [--uid UID]`: the daemon's event stream (`GET /events`, Server-Sent Events),
//! one line per event, `TIME  UID  TYPE  summary`, or one JSON object per line with `--json`.
//! Events carry `type`, `uid`, `time` and fields of their type; fields this CLI does not know
//! are shown as `key=value` and never an error.

use std::process::ExitCode;

use serde_json::Value;

use super::client::Client;
use super::output::{self, s};
use super::{CliError, exits, sse};

/// Fields every event has, left out of the generic summary.
const COMMON: [&str; 3] = ["type", "uid", "time"];

/// `1500` → `1.5s`, `250` → `250ms`.
fn delay(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// A string field, if present and not empty.
fn field<'a>(ev: &'a Value, k: &str) -> Option<&'a str> {
    ev.get(k).and_then(Value::as_str).filter(|x| !x.is_empty())
}

/// The other fields as `key=value`, strings bare and anything else as JSON.
fn rest(ev: &Value) -> String {
    ev.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !COMMON.contains(&k.as_str()))
        .map(|(k, v)| match v {
            Value::String(x) => format!("{k}={x}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an event says, in a few words.
pub fn summary(ev: &Value) -> String {
    let with_reason = |what: String| match field(ev, "reason") {
        Some(r) => format!("{what}: {r}"),
        None => what,
    };
    match field(ev, "type").unwrap_or("") {
        "state" | "ready" => with_reason(s(ev, "state")),
        "exit" => {
            let exit = ev.get("exit").filter(|e| e.is_object()).unwrap_or(ev);
            match exits::last_line(exit) {
                Some(l) => format!("{}; last line: {l}", exits::outcome(exit)),
                None => exits::outcome(exit),
            }
        }
        "restart" => {
            let mut out = match ev.get("attempt").and_then(Value::as_u64) {
                Some(n) => format!("attempt {n}"),
                None => "restarting".to_owned(),
            };
            if let Some(ms) = ev.get("delay_ms").and_then(Value::as_u64) {
                out.push_str(&format!(" in {}", delay(ms)));
            }
            out
        }
        "action" => {
            let action = s(ev, "action");
            match (field(ev, "phase"), ev.get("ok").and_then(Value::as_bool)) {
                (Some("start"), _) => format!("{action} started"),
                (Some("end"), Some(false)) => {
                    match ["error", "message", "info"]
                        .iter()
                        .find_map(|k| field(ev, k))
                    {
                        Some(why) => format!("{action} failed: {why}"),
                        None => format!("{action} failed"),
                    }
                }
                (Some("end"), _) => format!("{action} done"),
                _ => format!("{action} {}", rest(ev)).trim_end().to_owned(),
            }
        }
        "job" => {
            let j = &ev["job"];
            let mut text = format!(
                "{} {} {} ({})",
                s(j, "kind"),
                s(j, "id"),
                s(j, "state"),
                s(j, "requester")
            );
            match (j["state"].as_str(), j["step"].is_object()) {
                (Some("failed"), _) => text.push_str(&format!(": {}", s(j, "error"))),
                (Some("running"), true) => text.push_str(&format!(
                    "; step {} {}",
                    s(&j["step"], "name"),
                    s(&j["step"], "state")
                )),
                _ => {}
            }
            text
        }
        _ => rest(ev),
    }
}

/// One event as a line: `TIME  UID  TYPE  summary`.
pub fn line(ev: &Value) -> String {
    let time = field(ev, "time").map_or_else(|| "-".to_owned(), output::utc_time);
    let l = format!(
        "{time:<20}  {:<20}  {:<7}  {}",
        s(ev, "uid"),
        s(ev, "type"),
        summary(ev)
    );
    l.trim_end().to_owned()
}

/// Streams events until interrupted or until the daemon ends the stream.
pub async fn run(c: &Client, json: bool, uid: Option<&str>) -> Result<ExitCode, CliError> {
    let path = match uid {
        Some(u) => format!("/events?uid={u}"),
        None => "/events".to_owned(),
    };
    let res = c.event_stream(&path).await?;
    // The daemon subscribed before it answered: from here on nothing is missed.
    eprintln!("peon: following events (Ctrl-C to stop)");
    let mut events = sse::Reader::new(Box::pin(res.bytes_stream()));
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| c.transport(e))?;
        match serde_json::from_str::<Value>(&ev.data) {
            Ok(v) if json => println!("{v}"),
            Ok(v) if v.is_object() => println!("{}", line(&v)),
            // Not an event object: shown as it came.
            _ => println!("{}", ev.data),
        }
    }
    eprintln!("peon: the daemon ended the event stream");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "2026-05-01T12:00:03.5Z";

    #[test]
    fn each_event_type_reads_as_a_summary() {
        let ev = |v: Value| summary(&v);
        assert_eq!(ev(json!({"type": "state", "state": "running"})), "running");
        assert_eq!(
            ev(
                json!({"type": "exit", "exit": {"exit_code": 1, "class": "crash",
                                               "last_lines": ["a", "panic: boom"]}})
            ),
            "crash (exit code 1); last line: panic: boom"
        );
        assert_eq!(
            ev(json!({"type": "exit", "exit": {"exit_code": 0, "class": "clean"}})),
            "clean (exit code 0)"
        );
        assert_eq!(
            ev(json!({"type": "restart", "attempt": 2, "delay_ms": 1500})),
            "attempt 2 in 1.5s"
        );
        assert_eq!(
            ev(json!({"type": "restart", "attempt": 1, "delay_ms": 250})),
            "attempt 1 in 250ms"
        );
        assert_eq!(
            ev(json!({"type": "ready", "state": "unhealthy", "reason": "no answer on 27960"})),
            "unhealthy: no answer on 27960"
        );
        assert_eq!(ev(json!({"type": "ready", "state": "running"})), "running");
        assert_eq!(
            ev(json!({"type": "action", "action": "stop", "phase": "start"})),
            "stop started"
        );
        assert_eq!(
            ev(json!({"type": "action", "action": "stop", "phase": "end", "ok": true})),
            "stop done"
        );
        assert_eq!(
            ev(
                json!({"type": "action", "action": "start", "phase": "end", "ok": false,
                      "error": "port in use"})
            ),
            "start failed: port in use"
        );
        assert_eq!(
            ev(
                json!({"type": "job", "job": {"id": "j1", "kind": "start", "state": "running",
                      "requester": "api", "step": {"name": "settle", "state": "running"}}})
            ),
            "start j1 running (api); step settle running"
        );
        assert_eq!(
            ev(
                json!({"type": "job", "job": {"id": "j1", "kind": "stop", "state": "failed",
                      "requester": "schedule", "error": "boom"}})
            ),
            "stop j1 failed (schedule): boom"
        );
    }

    #[test]
    fn unknown_types_and_fields_are_shown_not_refused() {
        let v = json!({"type": "backup", "uid": "demo.a", "time": T, "file": "x.zip", "bytes": 10,
                       "extra": {"k": 1}});
        assert_eq!(summary(&v), "file=x.zip bytes=10 extra={\"k\":1}");
        let v = json!({"type": "state", "uid": "demo.a", "time": T, "state": "exited",
                       "new_field": true});
        assert_eq!(summary(&v), "exited");
    }

    #[test]
    fn lines_have_time_uid_type_and_summary() {
        let v = json!({"type": "state", "uid": "demo.alpha", "time": T, "state": "running"});
        assert_eq!(
            line(&v),
            "2026-05-01T12:00:03Z  demo.alpha            state    running"
        );
        assert_eq!(line(&json!({})), format!("{:<20}  {:<20}  -", "-", "-"));
    }
}
