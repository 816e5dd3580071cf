//! HTTP fetching for plan sources: timeouts, a size limit, redirects only to http(s), and
//! conditional requests (ETag / Last-Modified) so an unchanged source costs one small request.
//! Every error names the URL.

use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::PlanError;

/// The largest body peon accepts from a plan source (the community archive is a few MiB).
pub const MAX_DOWNLOAD: u64 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 10;

/// The validators of a fetched resource, sent back on the next request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// What a GET brought back.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the validators still match.
    NotModified,
    /// 404 or 410.
    Missing,
    Body {
        bytes: Vec<u8>,
        validators: Validators,
    },
}

/// An HTTP client for plan sources.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_bytes: u64,
}

fn source_err(url: &Url, reason: impl Into<String>) -> PlanError {
    PlanError::Source {
        url: url.to_string(),
        reason: reason.into(),
    }
}

impl Fetcher {
    /// A client whose whole request (connect, headers, body) must finish within `timeout`.
    pub fn new(timeout: Duration) -> Result<Fetcher, PlanError> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if matches!(attempt.url().scheme(), "http" | "https") {
                attempt.follow()
            } else {
                let to = attempt.url().to_string();
                attempt.error(format!("refused a redirect to the non-HTTP(S) URL {to}"))
            }
        });
        let client = crate::http::client_builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .redirect(policy)
            .build()
            .map_err(|e| PlanError::Source {
                url: "(client)".into(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Fetcher {
            client,
            max_bytes: MAX_DOWNLOAD,
        })
    }

    /// Lowers the size limit (tests).
    pub fn with_limit(mut self, max_bytes: u64) -> Fetcher {
        self.max_bytes = max_bytes;
        self
    }

    /// GETs `url`, conditionally when `known` validators are given.
    pub async fn get(&self, url: &Url, known: Option<&Validators>) -> Result<Fetched, PlanError> {
        let mut req = self.client.get(url.clone());
        if let Some(v) = known {
            if let Some(e) = &v.etag {
                req = req.header(IF_NONE_MATCH, e);
            }
            if let Some(m) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, m);
            }
        }
        let mut res = req
            .send()
            .await
            .map_err(|e| source_err(url, describe(&e)))?;
        let status = res.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(Fetched::Missing);
        }
        if status.is_redirection() {
            // reqwest hands back redirects it will not follow (to a non-HTTP(S) scheme).
            let to = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            return Err(source_err(
                url,
                format!("refused a redirect to the non-HTTP(S) URL {to} ({status})"),
            ));
        }
        if !status.is_success() {
            return Err(source_err(url, format!("the server answered {status}")));
        }
        if let Some(len) = res.content_length()
            && len > self.max_bytes
        {
            return Err(source_err(
                url,
                format!(
                    "the body ({len} bytes) exceeds the limit of {} bytes",
                    self.max_bytes
                ),
            ));
        }
        let header = |name| {
            res.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| source_err(url, describe(&e)))?
        {
            if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(source_err(
                    url,
                    format!("the body exceeds the limit of {} bytes", self.max_bytes),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body { bytes, validators })
    }
}

/// reqwest's error with its causes, which say what really went wrong (refused, timed out...).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
