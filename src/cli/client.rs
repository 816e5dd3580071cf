//! The HTTP side of the CLI: requests with the key, and the daemon's answers turned into values
//! or [`CliError`]s.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{CliError, Connection};

/// API base path the client uses (the one PEON's clients call).
const BASE: &str = "/api/v1";
/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a quick request.
pub const QUICK: Duration = Duration::from_secs(60);
/// Time for a long action (an image pull on create or update); the daemon's own limit.
pub const LONG: Duration = Duration::from_secs(900);

/// A client of one daemon.
pub struct Client {
    http: reqwest::Client,
    conn: Connection,
}

impl Client {
    pub fn new(conn: Connection) -> Result<Client, CliError> {
        let http = crate::http::client_builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| CliError::Local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client { http, conn })
    }

    pub fn url(&self) -> &str {
        &self.conn.url
    }

    /// The API key sent with each request, if there is one.
    pub fn key(&self) -> Option<&str> {
        self.conn.key.as_deref()
    }

    /// The daemon's URL of an API path, e.g. `/servers` → `http://h:5000/api/v1/servers`.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}{BASE}{path}", self.conn.url)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        accept: &'static str,
        timeout: Option<Duration>,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, self.api_url(path))
            .header(reqwest::header::ACCEPT, accept);
        if let Some(t) = timeout {
            r = r.timeout(t);
        }
        if let Some(k) = &self.conn.key {
            r = r.header("X-Api-Key", k);
        }
        r
    }

    /// Sends a request and returns the raw response when it is a success.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<reqwest::Response, CliError> {
        let mut r = self.request(method, path, "application/json", Some(timeout));
        if let Some(b) = body {
            r = r.json(b);
        }
        let res = r.send().await.map_err(|e| self.transport(e))?;
        if res.status().is_success() {
            Ok(res)
        } else {
            Err(self.api_error(res).await)
        }
    }

    /// `GET path` asking for `accept` (a download); the raw response when it is a success.
    pub async fn get_as(
        &self,
        path: &str,
        accept: &'static str,
        timeout: Duration,
    ) -> Result<reqwest::Response, CliError> {
        let res = self
            .request(Method::GET, path, accept, Some(timeout))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if res.status().is_success() {
            Ok(res)
        } else {
            Err(self.api_error(res).await)
        }
    }

    /// Sends a request and parses the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, CliError> {
        let res = self.send(method, path, body, timeout).await?;
        let text = res.text().await.map_err(|e| self.transport(e))?;
        serde_json::from_str(&text).map_err(|_| {
            CliError::Connect(format!(
                "{} answered something that is not JSON; is it a peon daemon?",
                self.conn.url
            ))
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None, QUICK).await
    }

    /// Opens a Server-Sent Events stream (`GET`, `Accept: text/event-stream`). Only connecting
    /// is timed: the stream itself runs as long as the daemon keeps it open.
    pub async fn event_stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let res = self
            .request(Method::GET, path, "text/event-stream", None)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if res.status().is_success() {
            Ok(res)
        } else {
            Err(self.api_error(res).await)
        }
    }

    /// `GET /health` at the root, without the key.
    pub async fn health(&self) -> Result<Value, CliError> {
        let res = self
            .http
            .get(format!("{}/health", self.conn.url))
            .timeout(QUICK)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if !res.status().is_success() {
            return Err(self.api_error(res).await);
        }
        res.json()
            .await
            .map_err(|e| CliError::Connect(format!("{}/health: {e}", self.conn.url)))
    }

    /// A failed request (or a stream that broke) as a [`CliError::Connect`].
    pub fn transport(&self, e: reqwest::Error) -> CliError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        // reqwest's own message repeats the URL; its causes say what went wrong.
        let mut causes = Vec::new();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            causes.push(s.to_string());
            src = s.source();
        }
        let detail = causes.last().cloned().unwrap_or_else(|| e.to_string());
        CliError::Connect(format!(
            "{what} to the daemon at {}: {detail} (set --url or PEON_URL)",
            self.conn.url
        ))
    }

    async fn api_error(&self, res: reqwest::Response) -> CliError {
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        self.error_from(status, &text)
    }

    /// The error for an answer with a non-success `status` and body `text`: peon's JSON error
    /// body (`info`, `err_code`), with a 401 explained by where the key came from.
    pub fn error_from(&self, status: StatusCode, text: &str) -> CliError {
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let Some(mut info) = field("info").or_else(|| field("error")) else {
            return CliError::Connect(format!(
                "{} answered HTTP {status} without peon's error body; is it a peon daemon?",
                self.conn.url
            ));
        };
        if status == StatusCode::UNAUTHORIZED {
            info = match (&self.conn.key, &self.conn.key_note) {
                (None, Some(note)) => {
                    format!("{info}: no API key given ({note}); use --api-key or PEON_API_KEY")
                }
                (None, None) => format!("{info}: no API key given; use --api-key or PEON_API_KEY"),
                (Some(_), _) => format!("{info}: the API key was refused"),
            };
        }
        CliError::Api {
            status: status.as_u16(),
            info,
            code: field("err_code"),
        }
    }
}
