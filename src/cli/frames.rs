//! The frames of a server's live console (the WebSocket `/ws/console/<uid>` and the SSE
//! `/server/console/<uid>` send the same ones) and how the CLI shows them: log lines as they are
//! on stdout, state changes marked `[status]` on stdout, problems marked `[error]` on stderr.

use serde_json::Value;

/// One console frame, read from its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `{"type":"connected","server_uid":"g.n"}`: the first frame.
    Connected(String),
    /// `{"type":"log","data":"<line>"}`: a line of the game's output.
    Log(String),
    /// `{"type":"status","data":"running"}`: the server's state changed.
    Status(String),
    /// `{"type":"error","message":"..."}`: something went wrong (a command not delivered, ...).
    Error(String),
    /// A frame of a type this CLI does not know: skipped in the table form.
    Other,
}

/// Where a shown frame goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Stdout(String),
    Stderr(String),
}

/// The first string among the fields `keys` of `v`, or the field shown as JSON.
fn text(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| v.get(*k).filter(|x| !x.is_null()))
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| x.to_string())
        })
        .unwrap_or_default()
}

impl Frame {
    /// Reads a frame; text that is not a JSON object is taken as a log line.
    pub fn parse(raw: &str) -> Frame {
        let Ok(v) = serde_json::from_str::<Value>(raw) else {
            return Frame::Log(raw.to_owned());
        };
        if !v.is_object() {
            return Frame::Log(raw.to_owned());
        }
        match v.get("type").and_then(Value::as_str) {
            Some("connected") => Frame::Connected(text(&v, &["server_uid", "uid"])),
            Some("log") => Frame::Log(text(&v, &["data", "line"])),
            Some("status") => Frame::Status(text(&v, &["data", "state", "status"])),
            Some("error") => Frame::Error(text(&v, &["message", "info", "data"])),
            _ => Frame::Other,
        }
    }

    /// How the frame is printed in the table form; `None` for frames not shown.
    pub fn shown(&self) -> Option<Shown> {
        match self {
            Frame::Log(l) => Some(Shown::Stdout(l.trim_end_matches(['\r', '\n']).to_owned())),
            Frame::Status(s) => Some(Shown::Stdout(format!("[status] {s}"))),
            Frame::Error(m) => Some(Shown::Stderr(format!("[error] {m}"))),
            Frame::Connected(_) | Frame::Other => None,
        }
    }
}

/// Prints a frame received as `raw`: the raw JSON with `json`, else as [`Frame::shown`] says.
pub fn print(raw: &str, json: bool) {
    if json {
        println!("{}", raw.trim_end());
        return;
    }
    match Frame::parse(raw).shown() {
        Some(Shown::Stdout(l)) => println!("{l}"),
        Some(Shown::Stderr(l)) => eprintln!("{l}"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_by_type() {
        assert_eq!(
            Frame::parse(r#"{"type":"connected","server_uid":"demo.a"}"#),
            Frame::Connected("demo.a".into())
        );
        assert_eq!(
            Frame::parse(r#"{"type":"log","data":"game: hi"}"#),
            Frame::Log("game: hi".into())
        );
        assert_eq!(
            Frame::parse(r#"{"type":"status","data":"running","extra":1}"#),
            Frame::Status("running".into())
        );
        assert_eq!(
            Frame::parse(r#"{"type":"error","message":"not running"}"#),
            Frame::Error("not running".into())
        );
        assert_eq!(Frame::parse(r#"{"type":"later","x":1}"#), Frame::Other);
        assert_eq!(Frame::parse("plain text"), Frame::Log("plain text".into()));
        assert_eq!(Frame::parse("42"), Frame::Log("42".into()));
    }

    #[test]
    fn status_and_errors_are_marked() {
        assert_eq!(
            Frame::Log("line\r\n".into()).shown(),
            Some(Shown::Stdout("line".into()))
        );
        assert_eq!(
            Frame::Status("exited".into()).shown(),
            Some(Shown::Stdout("[status] exited".into()))
        );
        assert_eq!(
            Frame::Error("boom".into()).shown(),
            Some(Shown::Stderr("[error] boom".into()))
        );
        assert_eq!(Frame::Connected("a.b".into()).shown(), None);
        assert_eq!(Frame::Other.shown(), None);
    }
}
