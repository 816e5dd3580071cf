//! `peon jobs` (the job history as a table) and `peon job <id>` (one job with its steps;
//! `--follow` polls it until it ends, printing each step as it starts and ends).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::CliError;
use super::client::Client;
use super::output::{self, s};

type Result<T> = std::result::Result<T, CliError>;

/// What `peon jobs` filters on.
#[derive(Debug, Default)]
pub struct Filter {
    pub uid: Option<String>,
    pub state: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<usize>,
}

fn time(v: &Value, k: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// How long a job (or step) ran, or runs so far: `0.4s`, `12s`, `2m5s`.
fn took(v: &Value) -> String {
    let Some(start) = time(v, "started") else {
        return "-".into();
    };
    let end = time(v, "finished").unwrap_or_else(chrono::Utc::now);
    let ms = (end - start).num_milliseconds().max(0);
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        output::duration(ms / 1000)
    }
}

fn started(v: &Value) -> String {
    match v.get("started").and_then(Value::as_str) {
        Some(t) => output::utc_time(t),
        None => "-".into(),
    }
}

fn or_dash(t: String) -> String {
    if t.is_empty() { "-".into() } else { t }
}

/// `peon jobs`.
pub async fn list(c: &Client, json: bool, f: &Filter) -> Result<ExitCode> {
    let mut q: Vec<String> = Vec::new();
    for (k, v) in [("uid", &f.uid), ("state", &f.state), ("kind", &f.kind)] {
        if let Some(v) = v {
            q.push(format!("{k}={v}"));
        }
    }
    if let Some(l) = f.limit {
        q.push(format!("limit={l}"));
    }
    let path = if q.is_empty() {
        "/jobs".to_owned()
    } else {
        format!("/jobs?{}", q.join("&"))
    };
    let v = c.get(&path).await?;
    if json {
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("No jobs.");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|j| {
            vec![
                s(j, "id"),
                s(j, "kind"),
                s(j, "uid"),
                s(j, "state"),
                s(j, "requester"),
                started(j),
                took(j),
                output::ellipsize(&or_dash(s(j, "error")), 60),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "ID",
                "KIND",
                "UID",
                "STATE",
                "REQUESTER",
                "STARTED",
                "DURATION",
                "ERROR"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn step_line(st: &Value) -> String {
    let mut line = format!(
        "  {:<20} {:<10} {}",
        s(st, "name"),
        s(st, "state"),
        took(st)
    );
    if let Some(e) = st.get("error").and_then(Value::as_str) {
        line.push_str(&format!("  {e}"));
    }
    line
}

fn print_job(j: &Value) {
    println!("job        {}", s(j, "id"));
    println!("kind       {}", s(j, "kind"));
    println!("uid        {}", s(j, "uid"));
    println!("requester  {}", s(j, "requester"));
    println!("state      {}", s(j, "state"));
    println!("created    {}", output::utc_time(&s(j, "created")));
    println!("started    {}", started(j));
    println!("duration   {}", took(j));
    if let Some(e) = j.get("error").and_then(Value::as_str) {
        println!("error      {e}");
    }
    let steps = j
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !steps.is_empty() {
        println!("steps");
        for st in &steps {
            println!("{}", step_line(st));
        }
    }
}

fn done(j: &Value) -> bool {
    matches!(j["state"].as_str(), Some("succeeded" | "failed"))
}

fn exit_of(j: &Value) -> ExitCode {
    if j["state"] == "failed" {
        ExitCode::from(super::EXIT_API)
    } else {
        ExitCode::SUCCESS
    }
}

/// `peon job <id> [--follow]`. With `--follow` the exit code says whether the job succeeded.
pub async fn show(c: &Client, json: bool, id: &str, follow: bool) -> Result<ExitCode> {
    let path = format!("/job/{id}");
    let mut j = c.get(&path).await?;
    if !follow {
        if json {
            output::json(&j);
        } else {
            print_job(&j);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        println!(
            "{} {} of {} ({})",
            s(&j, "id"),
            s(&j, "kind"),
            s(&j, "uid"),
            s(&j, "requester")
        );
    }
    // Steps already printed, and whether each was printed as ended.
    let mut shown: Vec<bool> = Vec::new();
    loop {
        if !json {
            let steps = j
                .get("steps")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, st) in steps.iter().enumerate() {
                let ended = matches!(st["state"].as_str(), Some("succeeded" | "failed"));
                match shown.get(i).copied() {
                    Some(true) => {}
                    Some(false) if !ended => {}
                    _ => {
                        println!("{}", step_line(st));
                        if i < shown.len() {
                            shown[i] = ended;
                        } else {
                            shown.push(ended);
                        }
                    }
                }
            }
        }
        if done(&j) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        j = c.get(&path).await?;
    }
    if json {
        output::json(&j);
    } else {
        match j.get("error").and_then(Value::as_str) {
            Some(e) => println!("{} in {}: {e}", s(&j, "state"), took(&j)),
            None => println!("{} in {}", s(&j, "state"), took(&j)),
        }
    }
    Ok(exit_of(&j))
}

/// What a `--no-wait` action prints: the job id (the API's answer with --json).
pub fn accepted(v: &Value, json: bool) {
    if json {
        output::json(v);
    } else {
        println!("{}", s(v, "job_id"));
    }
}
