//! [`AgentClient`]: the manager's client to one node's agent (HTTP with reqwest, the console
//! over a WebSocket with tokio-tungstenite), every request signed with the cluster secret.
//! Small calls have a deadline ([`AgentClient::with_timeout`]); directory streams have none as a
//! whole, only a stall limit. It also serves the container-level part of the runtime seam
//! ([`NodeContainers`]), so the cluster runtime can hand those calls to the node's agent.
//!
//! Moves: [`copy_dir`] streams a directory from one agent to another through the caller (the
//! manager): agents only ever answer requests, never call each other, and the stream passes
//! through untouched (its trailer included), so the target checks the source's sum.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::PREFIX;
use super::auth::{self, NONCE_HEADER, SIGNATURE_HEADER, Secret, TIME_HEADER};
use crate::names::Uid;
use crate::runtime::{Attached, ContainerDetails, NodeContainers, RtFuture, RuntimeError, Stats};

/// Errors of the agent client.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    #[error("the peon agent at {addr} is unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the peon agent at {addr} did not answer {what} in time")]
    Timeout { addr: String, what: String },
    #[error("the peon agent at {addr} refused the cluster secret: {info}")]
    Unauthorized { addr: String, info: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Busy(String),
    /// A directory transfer refused by the receiving agent (damaged, cut off, wrong sum).
    #[error("{0}")]
    Damaged(String),
    #[error("the peon agent at {addr} answered {status}: {info}")]
    Refused {
        addr: String,
        status: u16,
        info: String,
    },
    #[error("the peon agent at {addr} answered something unexpected: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("invalid agent address [{0}]: use host:port or http://host:port")]
    Address(String),
}

pub type Result<T> = std::result::Result<T, AgentClientError>;

/// A server directory on the wire: the archive and its trailer ([`super::framing`]), as chunks.
pub type DirStream = BoxStream<'static, Result<Bytes>>;

/// What a receiving agent says of a directory it swapped in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pushed {
    pub bytes: u64,
    pub sha256: String,
}

/// The default deadline of a small call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a directory stream may stall.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client to one agent.
#[derive(Clone)]
pub struct AgentClient {
    /// `host:port`, for messages.
    addr: String,
    /// `http://host:port`.
    base: String,
    secret: Secret,
    http: reqwest::Client,
    timeout: Duration,
    /// The agent's storage id and when it was asked (shared by clones).
    storage: std::sync::Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>,
}

/// How long an agent's storage id is taken as known (it changes only when the agent is
/// restarted on another data dir).
const STORAGE_TTL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    info: String,
}

impl AgentClient {
    /// A client to the agent at `addr` (`host:port` or `http://host:port`).
    pub fn new(addr: &str, secret: Secret) -> Result<AgentClient> {
        let hostport = addr
            .strip_prefix("http://")
            .unwrap_or(addr)
            .trim_end_matches('/');
        let ok = !hostport.is_empty()
            && !hostport.contains('/')
            && hostport
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(AgentClientError::Address(addr.to_owned()));
        }
        let http = crate::http::client_builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STALL_TIMEOUT)
            .build()
            .map_err(|e| AgentClientError::Unreachable {
                addr: hostport.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(AgentClient {
            addr: hostport.to_owned(),
            base: format!("http://{hostport}"),
            secret,
            http,
            timeout: DEFAULT_TIMEOUT,
            storage: Default::default(),
        })
    }

    /// The same client with another deadline for small calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `host:port` of the agent.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A signed request to `PREFIX + path` (path and query).
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let pq = format!("{PREFIX}{path}");
        let (t, nonce) = (auth::now(), auth::nonce());
        let sig = self.secret.sign(method.as_str(), &pq, t, &nonce);
        self.http
            .request(method, format!("{}{pq}", self.base))
            .header(TIME_HEADER, t.to_string())
            .header(NONCE_HEADER, nonce)
            .header(SIGNATURE_HEADER, sig)
    }

    fn transport(&self, what: &str, e: reqwest::Error) -> AgentClientError {
        if e.is_timeout() {
            AgentClientError::Timeout {
                addr: self.addr.clone(),
                what: what.to_owned(),
            }
        } else {
            AgentClientError::Unreachable {
                addr: self.addr.clone(),
                reason: e.to_string(),
            }
        }
    }

    /// Sends a small call with the deadline; a non-success answer becomes its typed error.
    async fn call(&self, what: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let r = req
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport(what, e))?;
        self.check(r).await
    }

    async fn check(&self, r: reqwest::Response) -> Result<reqwest::Response> {
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let text = r.text().await.unwrap_or_default();
        let info = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.info)
            .unwrap_or(text);
        Err(self.refusal(status, info))
    }

    fn refusal(&self, status: StatusCode, info: String) -> AgentClientError {
        match status {
            StatusCode::UNAUTHORIZED => AgentClientError::Unauthorized {
                addr: self.addr.clone(),
                info,
            },
            StatusCode::NOT_FOUND => AgentClientError::NotFound(info),
            StatusCode::CONFLICT => AgentClientError::Busy(info),
            StatusCode::UNPROCESSABLE_ENTITY => AgentClientError::Damaged(info),
            s => AgentClientError::Refused {
                addr: self.addr.clone(),
                status: s.as_u16(),
                info,
            },
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        r: reqwest::Response,
    ) -> Result<T> {
        let bytes = tokio::time::timeout(self.timeout, r.bytes())
            .await
            .map_err(|_| AgentClientError::Timeout {
                addr: self.addr.clone(),
                what: what.to_owned(),
            })?
            .map_err(|e| self.transport(what, e))?;
        serde_json::from_slice(&bytes).map_err(|e| AgentClientError::Protocol {
            addr: self.addr.clone(),
            reason: format!("{what}: {e}"),
        })
    }

    /// Proves the agent answers and takes the secret; returns its version.
    pub async fn ping(&self) -> Result<String> {
        let r = self
            .call("ping", self.request(Method::GET, "/ping"))
            .await?;
        let v: serde_json::Value = self.json("ping", r).await?;
        Ok(v["version"].as_str().unwrap_or_default().to_owned())
    }

    /// The id of the storage the agent's data dir is on: two agents answering the same id
    /// share one folder (a filesystem shared between nodes).
    /// Asked at most every 30 s.
    pub async fn storage(&self) -> Result<String> {
        if let Some((s, at)) = self
            .storage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            && at.elapsed() < STORAGE_TTL
        {
            return Ok(s);
        }
        let s = self.info().await?.storage;
        *self.storage.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((s.clone(), std::time::Instant::now()));
        Ok(s)
    }

    /// What the agent says of itself: its version, its storage id and its data dir.
    pub async fn info(&self) -> Result<AgentInfo> {
        let r = self
            .call("ping", self.request(Method::GET, "/ping"))
            .await?;
        self.json("ping", r).await
    }

    /// The server's container on the node; `None` when it has none.
    pub async fn inspect(&self, uid: &Uid) -> Result<Option<ContainerDetails>> {
        let req = self.request(Method::GET, &format!("/server/{uid}/container"));
        match self.call("inspect", req).await {
            Ok(r) => self.json("inspect", r).await.map(Some),
            Err(AgentClientError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last `tail` lines of the container's output.
    pub async fn logs(&self, uid: &Uid, tail: usize) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Lines {
            lines: Vec<String>,
        }
        let req = self.request(Method::GET, &format!("/server/{uid}/logs?tail={tail}"));
        let r = self.call("logs", req).await?;
        Ok(self.json::<Lines>("logs", r).await?.lines)
    }

    /// One stats sample; `None` when the container is not running.
    pub async fn stats(&self, uid: &Uid) -> Result<Option<Stats>> {
        let req = self.request(Method::GET, &format!("/server/{uid}/stats"));
        let r = self.call("stats", req).await?;
        self.json("stats", r).await
    }

    /// Sends `signal` (`SIGKILL`, `TERM`, `9`) to the container's main process.
    pub async fn kill(&self, uid: &Uid, signal: &str) -> Result<()> {
        if !signal
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'+')
        {
            return Err(AgentClientError::Refused {
                addr: self.addr.clone(),
                status: 400,
                info: format!("invalid signal [{signal}]"),
            });
        }
        let req = self.request(Method::POST, &format!("/server/{uid}/kill?signal={signal}"));
        self.call("kill", req).await.map(drop)
    }

    /// The container's console: its output (stdout and stderr, live) and its stdin.
    pub async fn attach(&self, uid: &Uid) -> Result<Attached> {
        let pq = format!("{PREFIX}/server/{uid}/attach");
        let (t, nonce) = (auth::now(), auth::nonce());
        let sig = self.secret.sign("GET", &pq, t, &nonce);
        let proto = |reason: String| AgentClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        };
        let mut req = format!("ws://{}{pq}", self.addr)
            .into_client_request()
            .map_err(|e| proto(e.to_string()))?;
        let h = req.headers_mut();
        h.insert(TIME_HEADER, t.into());
        h.insert(
            NONCE_HEADER,
            nonce.parse().map_err(|_| proto("nonce header".into()))?,
        );
        h.insert(
            SIGNATURE_HEADER,
            sig.parse().map_err(|_| proto("signature header".into()))?,
        );
        let connected = tokio::time::timeout(self.timeout, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| AgentClientError::Timeout {
                addr: self.addr.clone(),
                what: "attach".into(),
            })?;
        let (ws, _) = match connected {
            Ok(c) => c,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status =
                    StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let body = resp.body().as_deref().unwrap_or_default();
                let info = serde_json::from_slice::<ErrorBody>(body)
                    .map(|b| b.info)
                    .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
                return Err(self.refusal(status, info));
            }
            Err(e) => {
                return Err(AgentClientError::Unreachable {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let (mut sink, stream) = ws.split();
        // stdin: the caller writes into one end of a pipe; every chunk becomes a frame.
        let (ours, theirs) = tokio::io::duplex(64 << 10);
        tokio::spawn(async move {
            let mut ours = ours;
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match ours.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink
                            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let addr = self.addr.clone();
        let output = stream
            .take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_)))))
            .filter_map(move |m| {
                let addr = addr.clone();
                std::future::ready(match m {
                    Ok(Message::Binary(b)) => Some(Ok(b)),
                    Ok(Message::Text(t)) => Some(Ok(Bytes::copy_from_slice(t.as_bytes()))),
                    Ok(_) => None,
                    Err(e) => Some(Err(RuntimeError::Unavailable {
                        host: format!("peon agent {addr}"),
                        reason: format!("console stream: {e}"),
                    })),
                })
            })
            .boxed();
        Ok(Attached {
            output,
            input: Box::pin(theirs),
        })
    }

    /// The server's directory as the agent packs it: the archive and its sha256 trailer. Pass
    /// it to [`AgentClient::push_dir`] of another agent, or unpack it with
    /// [`super::framing::unpack_framed`], which checks the sum.
    pub async fn pull_dir(&self, uid: &Uid) -> Result<DirStream> {
        let req = self.request(Method::GET, &format!("/server/{uid}/dir"));
        let r = req.send().await.map_err(|e| self.transport("pull", e))?;
        let r = self.check(r).await?;
        let addr = self.addr.clone();
        Ok(r.bytes_stream()
            .map_err(move |e| AgentClientError::Unreachable {
                addr: addr.clone(),
                reason: format!("the directory stream broke off: {e}"),
            })
            .boxed())
    }

    /// Sends a directory (a framed stream, as [`AgentClient::pull_dir`] gives) to the agent,
    /// which swaps it in only when it is whole and matches its sum; otherwise the server's old
    /// directory there is unchanged and this fails with [`AgentClientError::Damaged`] (or the
    /// transport error that cut it).
    pub async fn push_dir<S, E>(&self, uid: &Uid, stream: S) -> Result<Pushed>
    where
        S: futures_util::Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let req = self
            .request(Method::PUT, &format!("/server/{uid}/dir"))
            .header(super::framing::FORMAT_HEADER, super::framing::FORMAT)
            .body(reqwest::Body::wrap_stream(stream));
        let r = req.send().await.map_err(|e| self.transport("push", e))?;
        let r = self.check(r).await?;
        self.json("push", r).await
    }

    /// The server's directory on the node: its disk use and the game's `config/` files.
    pub async fn facts(&self, uid: &Uid) -> Result<crate::fsio::gamefiles::DirFacts> {
        let req = self.request(Method::GET, &format!("/server/{uid}/facts"));
        let r = self.call("facts", req).await?;
        self.json("facts", r).await
    }

    /// Removes the server's directory on the node (refused while its container runs there).
    /// Returns whether there was one.
    pub async fn delete_dir(&self, uid: &Uid) -> Result<bool> {
        let req = self.request(Method::DELETE, &format!("/server/{uid}/dir"));
        let r = self.call("delete", req).await?;
        let v: serde_json::Value = self.json("delete", r).await?;
        Ok(v["removed"].as_bool().unwrap_or(false))
    }

    fn runtime_error(&self, e: AgentClientError) -> RuntimeError {
        match e {
            AgentClientError::Unreachable { .. } | AgentClientError::Timeout { .. } => {
                RuntimeError::Unavailable {
                    host: format!("peon agent {}", self.addr),
                    reason: e.to_string(),
                }
            }
            AgentClientError::NotFound(m) => RuntimeError::NotFound(m),
            AgentClientError::Busy(m) => RuntimeError::Conflict(m),
            e => RuntimeError::Engine(e.to_string()),
        }
    }
}

/// An agent's answer to a ping.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AgentInfo {
    #[serde(default)]
    pub version: String,
    /// The id of the storage its data dir is on (the store's `DataDir::storage_id`).
    #[serde(default)]
    pub storage: String,
    /// Its data dir, as the node's engine sees it (the bind sources of its games).
    #[serde(default)]
    pub data_dir: String,
}

/// The manager's clients to every node's agent, one per node address, made on first use: the
/// agent of the node at `address` listens on `address:port` (8470 by default,
/// [`super::DEFAULT_PORT`]). A node's delegate for container-level work is
/// `agents.for_address(&node.address)` as an `Arc<dyn NodeContainers>`.
pub struct Agents {
    secret: Secret,
    port: u16,
    timeout: Duration,
    clients: std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<AgentClient>>>,
}

impl Agents {
    pub fn new(secret: Secret, port: u16) -> Agents {
        Agents {
            secret,
            port,
            timeout: DEFAULT_TIMEOUT,
            clients: Default::default(),
        }
    }

    /// The same with another deadline for small calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client to the agent of the node at `address` (an IP address or a host name).
    pub fn for_address(&self, address: &str) -> Result<std::sync::Arc<AgentClient>> {
        if let Some(c) = self
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(address)
        {
            return Ok(c.clone());
        }
        let hostport = if address.contains(':') && !address.starts_with('[') {
            // An IPv6 address.
            format!("[{address}]:{}", self.port)
        } else {
            format!("{address}:{}", self.port)
        };
        let c = std::sync::Arc::new(
            AgentClient::new(&hostport, self.secret.clone())?.with_timeout(self.timeout),
        );
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(address.to_owned(), c.clone());
        Ok(c)
    }
}

/// The server uid of a container name peon gives (`peon.warcamp.<game>.<name>`).
pub fn uid_of_container(name: &str) -> std::result::Result<Uid, RuntimeError> {
    name.trim_start_matches('/')
        .strip_prefix("peon.warcamp.")
        .and_then(|rest| Uid::parse(rest).ok())
        .ok_or_else(|| RuntimeError::NotFound(format!("{name} is not a peon server's container")))
}

impl NodeContainers for AgentClient {
    fn inspect<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<ContainerDetails>> {
        Box::pin(async move {
            let uid = uid_of_container(name)?;
            AgentClient::inspect(self, &uid)
                .await
                .map_err(|e| self.runtime_error(e))
        })
    }

    fn logs<'a>(&'a self, name: &'a str, tail: usize) -> RtFuture<'a, Vec<String>> {
        Box::pin(async move {
            let uid = uid_of_container(name)?;
            AgentClient::logs(self, &uid, tail)
                .await
                .map_err(|e| self.runtime_error(e))
        })
    }

    fn stats<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<Stats>> {
        Box::pin(async move {
            let uid = uid_of_container(name)?;
            match AgentClient::stats(self, &uid).await {
                Err(AgentClientError::NotFound(_)) => Ok(None),
                r => r.map_err(|e| self.runtime_error(e)),
            }
        })
    }

    fn kill<'a>(&'a self, name: &'a str, signal: &'a str) -> RtFuture<'a, ()> {
        Box::pin(async move {
            let uid = uid_of_container(name)?;
            AgentClient::kill(self, &uid, signal)
                .await
                .map_err(|e| self.runtime_error(e))
        })
    }

    fn attach<'a>(&'a self, name: &'a str) -> RtFuture<'a, Attached> {
        Box::pin(async move {
            let uid = uid_of_container(name)?;
            AgentClient::attach(self, &uid)
                .await
                .map_err(|e| self.runtime_error(e))
        })
    }
}

/// Copies a server's directory from one agent to another (a move), streamed through the
/// caller: the target unpacks into staging while the source packs, checks the source's sum and
/// swaps the directory in whole. The source's directory is never touched; on any failure the
/// target's old directory (if any) is unchanged too. The caller stops the server first and
/// re-pins it to the target only when this succeeded.
pub async fn copy_dir(from: &AgentClient, to: &AgentClient, uid: &Uid) -> Result<Pushed> {
    let stream = from.pull_dir(uid).await?;
    let pushed = to.push_dir(uid, stream).await?;
    tracing::info!(uid = %uid, from = %from.addr(), to = %to.addr(), bytes = pushed.bytes, sha256 = %pushed.sha256, "server directory copied between nodes");
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_container_names() {
        let s = Secret::new("0123456789abcdef0123").unwrap();
        assert!(AgentClient::new("127.0.0.1:8470", s.clone()).is_ok());
        assert!(AgentClient::new("http://10.0.0.2:8470/", s.clone()).is_ok());
        for bad in ["", "host", "http://h:x", "h:1/path", ":80"] {
            assert!(AgentClient::new(bad, s.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            uid_of_container("/peon.warcamp.valheim.alpha")
                .unwrap()
                .to_string(),
            "valheim.alpha"
        );
        assert!(uid_of_container("other").is_err());
        assert!(uid_of_container("peon.warcamp.a.b.c").is_err());
        let agents = Agents::new(s, 8470);
        let a = agents.for_address("10.250.3.2").unwrap();
        assert_eq!(a.addr(), "10.250.3.2:8470");
        assert!(std::sync::Arc::ptr_eq(
            &a,
            &agents.for_address("10.250.3.2").unwrap()
        ));
        assert_eq!(
            agents.for_address("fd00::2").unwrap().addr(),
            "[fd00::2]:8470"
        );
        assert!(agents.for_address("").is_err());
    }
}
