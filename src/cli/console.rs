//! `peon server console <uid>`: a live console over the daemon's WebSocket `/ws/console/<uid>`.
//! The game's output is printed as it comes; each line typed (or piped) on stdin is sent as a
//! console command. It ends on end of input, Ctrl-C, or when the daemon closes the socket.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message};

use super::CliError;
use super::client::Client;
use super::frames::{self, Frame};

/// Time to connect and finish the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time to wait for the daemon's answer to our close, printing what still arrives.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The WebSocket URL for an HTTP(S) URL: `http://` → `ws://`, `https://` → `wss://`.
pub fn ws_url(http_url: &str) -> Result<String, CliError> {
    if let Some(rest) = http_url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = http_url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else {
        Err(CliError::Usage(format!(
            "{http_url:?} is not an http:// or https:// URL"
        )))
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the console socket with the key in the `X-Api-Key` header (never in the URL).
async fn connect(c: &Client, uid: &str) -> Result<Socket, CliError> {
    let url = ws_url(&c.api_url(&format!("/ws/console/{uid}")))?;
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| CliError::Usage(format!("cannot make a WebSocket request to {url}: {e}")))?;
    let headers = req.headers_mut();
    if let Some(k) = c.key() {
        let v = HeaderValue::from_str(k).map_err(|_| {
            CliError::Usage("the API key has characters a header cannot carry".into())
        })?;
        headers.insert("x-api-key", v);
    }
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("peon/", env!("CARGO_PKG_VERSION"))),
    );
    crate::http::init_tls();
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .map_err(|_| {
            CliError::Connect(format!(
                "timed out connecting to the daemon's console at {} (set --url or PEON_URL)",
                c.url()
            ))
        })?;
    match connected {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(res)) => {
            let body = res
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let status = reqwest::StatusCode::from_u16(res.status().as_u16())
                .unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
            Err(c.error_from(status, &body))
        }
        Err(e) => Err(CliError::Connect(format!(
            "cannot open the console at {}: {e} (set --url or PEON_URL)",
            c.url()
        ))),
    }
}

/// Reads stdin on a thread of its own (a blocking read cannot be cancelled; a plain thread does
/// not keep the process alive when the console ends), one line per message; the channel closes
/// at end of input.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// What reading one message from the socket means for the session.
enum Next {
    Continue,
    Closed,
}

fn on_message(
    msg: Option<Result<Message, tungstenite::Error>>,
    json: bool,
) -> Result<Next, CliError> {
    match msg {
        None => Ok(Next::Closed),
        Some(Ok(Message::Text(t))) => {
            if !json && let Frame::Connected(uid) = Frame::parse(&t) {
                if std::io::stdin().is_terminal() {
                    eprintln!(
                        "connected to {uid}: each line typed is sent as a command; Ctrl-D or \
                         Ctrl-C leaves"
                    );
                } else {
                    eprintln!("connected to {uid}");
                }
            } else {
                frames::print(&t, json);
            }
            Ok(Next::Continue)
        }
        Some(Ok(Message::Close(frame))) => {
            if let Some(f) = frame.filter(|f| !f.reason.is_empty())
                && !json
            {
                eprintln!("[closed] {}", f.reason);
            }
            Ok(Next::Continue)
        }
        Some(Ok(_)) => Ok(Next::Continue),
        Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
            Ok(Next::Closed)
        }
        Some(Err(e)) => Err(CliError::Connect(format!(
            "the console connection broke: {e}"
        ))),
    }
}

/// Sends our close frame, then prints what still arrives until the daemon closes too.
async fn close(ws: &mut Socket, json: bool) {
    let _ = ws.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(Next::Continue) = on_message(ws.next().await, json) {}
    })
    .await;
}

/// Runs the console until the input ends, Ctrl-C, or the daemon closes it.
pub async fn run(c: &Client, json: bool, uid: &str) -> Result<ExitCode, CliError> {
    let mut ws = connect(c, uid).await?;
    let mut lines = stdin_lines();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            msg = ws.next() => {
                if let Next::Closed = on_message(msg, json)? {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            line = lines.recv() => match line {
                Some(l) => {
                    ws.send(Message::text(l)).await.map_err(|e| {
                        CliError::Connect(format!("cannot send the command: {e}"))
                    })?;
                }
                None => {
                    close(&mut ws, json).await;
                    return Ok(ExitCode::SUCCESS);
                }
            },
            _ = &mut ctrl_c => {
                close(&mut ws, json).await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_become_websocket_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:5000/api/v1/ws/console/demo.a").unwrap(),
            "ws://127.0.0.1:5000/api/v1/ws/console/demo.a"
        );
        assert_eq!(
            ws_url("https://peon.example/proxy/api/v1/ws/console/demo.a").unwrap(),
            "wss://peon.example/proxy/api/v1/ws/console/demo.a"
        );
        assert_eq!(ws_url("http://[::1]:5001").unwrap(), "ws://[::1]:5001");
        assert!(matches!(ws_url("ftp://h"), Err(CliError::Usage(_))));
    }
}
