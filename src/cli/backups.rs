//! `peon server backup | backups | restore | backup-delete | backup-download | backup-policy`.
//! On a terminal a backup or restore runs as a job whose steps are printed as they go.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, LONG, QUICK};
use super::output::{self, s};
use super::{CliError, jobs};

type Result<T> = std::result::Result<T, CliError>;

/// A backup command on one server (the `peon server` subcommands map onto it).
pub enum BackupCmd {
    Take {
        no_wait: bool,
    },
    List,
    Restore {
        id: String,
        no_wait: bool,
    },
    Delete {
        id: String,
    },
    Download {
        id: String,
        output: Option<PathBuf>,
    },
    Policy {
        keep_last: Option<u32>,
        keep_daily: Option<u32>,
        keep_weekly: Option<u32>,
        target: Option<String>,
    },
}

/// How a long action ended for the caller to print: its answer, or already printed.
enum Outcome {
    Answer(Value),
    Printed(ExitCode),
}

fn row(b: &Value) -> Vec<String> {
    vec![
        s(b, "id"),
        output::utc_time(&s(b, "created")),
        output::bytes(b["bytes"].as_u64().unwrap_or(0)),
        b["files"].as_u64().unwrap_or(0).to_string(),
        if b["live"] == true { "yes" } else { "no" }.to_owned(),
        s(b, "reason"),
        s(b, "target"),
    ]
}

fn table(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.iter().map(row).collect())
        .unwrap_or_default();
    print!(
        "{}",
        output::table(
            &["ID", "CREATED", "SIZE", "FILES", "LIVE", "REASON", "TARGET"],
            &rows
        )
    );
}

/// Runs a long backup action: in the background (`--no-wait`: the job id), followed step by
/// step on a terminal, else waited for.
async fn long_action(c: &Client, json: bool, no_wait: bool, path: &str) -> Result<Outcome> {
    let follow = !json && std::io::stdout().is_terminal();
    if no_wait || follow {
        let v = c
            .call(
                Method::POST,
                &format!("{path}?wait=false"),
                Some(&json!({})),
                QUICK,
            )
            .await?;
        if no_wait {
            jobs::accepted(&v, json);
            return Ok(Outcome::Printed(ExitCode::SUCCESS));
        }
        return Ok(Outcome::Printed(
            jobs::show(c, false, &s(&v, "job_id"), true).await?,
        ));
    }
    Ok(Outcome::Answer(
        c.call(Method::POST, path, Some(&json!({})), LONG).await?,
    ))
}

pub async fn run(c: &Client, json: bool, uid: &str, cmd: BackupCmd) -> Result<ExitCode> {
    match cmd {
        BackupCmd::Take { no_wait } => {
            match long_action(c, json, no_wait, &format!("/server/backup/{uid}")).await? {
                Outcome::Printed(code) => return Ok(code),
                Outcome::Answer(v) if json => output::json(&v),
                Outcome::Answer(v) => table(&json!([v])),
            }
        }
        BackupCmd::List => {
            let v = c.get(&format!("/server/backups/{uid}")).await?;
            if json {
                output::json(&v);
            } else {
                table(&v);
            }
        }
        BackupCmd::Restore { id, no_wait } => {
            let path = format!("/server/restore/{uid}/{id}");
            match long_action(c, json, no_wait, &path).await? {
                Outcome::Printed(code) => return Ok(code),
                Outcome::Answer(v) if json => output::json(&v),
                Outcome::Answer(v) => {
                    println!(
                        "{}: restored {id}, {}",
                        s(&v, "uid"),
                        s(&v, "container_state")
                    )
                }
            }
        }
        BackupCmd::Delete { id } => {
            let v = c
                .call(
                    Method::DELETE,
                    &format!("/server/backup/{uid}/{id}"),
                    None,
                    QUICK,
                )
                .await?;
            if json {
                output::json(&v);
            } else {
                println!("{}", s(&v, "info"));
            }
        }
        BackupCmd::Download { id, output } => {
            download(c, json, uid, &id, output).await?;
        }
        BackupCmd::Policy {
            keep_last,
            keep_daily,
            keep_weekly,
            target,
        } => {
            let mut body = Map::new();
            for (k, v) in [
                ("keep_last", keep_last),
                ("keep_daily", keep_daily),
                ("keep_weekly", keep_weekly),
            ] {
                if let Some(n) = v {
                    body.insert(k.into(), json!(n));
                }
            }
            if let Some(t) = target {
                body.insert("target".into(), json!(t));
            }
            let v = c
                .call(
                    Method::PUT,
                    &format!("/server/backup-policy/{uid}"),
                    Some(&Value::Object(body)),
                    QUICK,
                )
                .await?;
            if json {
                output::json(&json!({
                    "uid": v["uid"], "backup_policy": v["backup_policy"], "backup_target": v["backup_target"]
                }));
            } else {
                let p = &v["backup_policy"];
                let n = |k: &str| {
                    p.get(k)
                        .and_then(Value::as_u64)
                        .map_or("-".to_owned(), |n| n.to_string())
                };
                println!(
                    "{}: keep last {}, daily {}, weekly {}; target {}",
                    s(&v, "uid"),
                    n("keep_last"),
                    n("keep_daily"),
                    n("keep_weekly"),
                    s(&v, "backup_target")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Streams a backup's archive to a file (through `<file>.part` and a rename) and checks its
/// sha256 against the daemon's `X-Backup-Sha256`.
async fn download(c: &Client, json: bool, uid: &str, id: &str, out: Option<PathBuf>) -> Result<()> {
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncWriteExt;
    let res = c
        .send(
            Method::GET,
            &format!("/server/backup/{uid}/{id}"),
            None,
            LONG,
        )
        .await?;
    let want = res
        .headers()
        .get("x-backup-sha256")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let name = format!("{uid}-{id}.tar.zst");
    let path = match out {
        Some(p) if p.is_dir() => p.join(&name),
        Some(p) => p,
        None => PathBuf::from(&name),
    };
    let local =
        |e: std::io::Error, p: &Path| CliError::Local(format!("cannot write {}: {e}", p.display()));
    let part = path.with_extension("zst.part");
    let mut f = tokio::fs::File::create(&part)
        .await
        .map_err(|e| local(e, &part))?;
    let mut stream = res.bytes_stream();
    let (mut hash, mut total) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(CliError::Connect(format!("download failed: {e}")));
            }
        };
        hash.update(&chunk);
        total += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(|e| local(e, &part))?;
    }
    f.sync_all().await.map_err(|e| local(e, &part))?;
    let got: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if want.as_deref().is_some_and(|w| w != got) {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(CliError::Connect(format!(
            "the download's sha256 {got} is not the backup's {}",
            want.unwrap_or_default()
        )));
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(|e| local(e, &path))?;
    if json {
        output::json(&json!({ "file": path, "bytes": total, "sha256": got }));
    } else {
        println!(
            "saved {} ({}, sha256 {got})",
            path.display(),
            output::bytes(total)
        );
    }
    Ok(())
}
