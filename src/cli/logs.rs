//! `peon server logs <uid> [-n N] [-f]`: the last lines of a server's console output
//! (`GET /server/logs`), and with `--follow` its live console as Server-Sent Events
//! (`GET /server/console/<uid>?replay=N`: the last N lines, then new output as it comes).

use serde_json::{Value, json};

use super::client::Client;
use super::{CliError, frames, output, sse};

async fn fetch(c: &Client, uid: &str, lines: usize) -> Result<Vec<String>, CliError> {
    let v = c.get(&format!("/server/logs/{uid}?lines={lines}")).await?;
    Ok(v.get("logs")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|x| x.as_str().map(str::to_owned).unwrap_or(x.to_string()))
                .collect()
        })
        .unwrap_or_default())
}

/// Prints the last `lines` lines: one per line, or `{"logs": [...]}` with `json`.
pub async fn last(c: &Client, json: bool, uid: &str, lines: usize) -> Result<(), CliError> {
    let logs = fetch(c, uid, lines).await?;
    if json {
        output::json(&json!({ "logs": logs }));
    } else {
        for l in logs {
            println!("{l}");
        }
    }
    Ok(())
}

/// Follows the console: the last `lines` lines, then new output, until interrupted or until the
/// daemon ends the stream. With `json` each frame is printed as the JSON the daemon sent.
pub async fn follow(c: &Client, json: bool, uid: &str, lines: usize) -> Result<(), CliError> {
    let res = c
        .event_stream(&format!("/server/console/{uid}?replay={lines}"))
        .await?;
    let mut events = sse::Reader::new(Box::pin(res.bytes_stream()));
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| c.transport(e))?;
        frames::print(&ev.data, json);
    }
    eprintln!("peon: the daemon ended the console stream of {uid}");
    Ok(())
}
