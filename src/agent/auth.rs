//! The cluster secret and the signature of agent requests. Every request to an agent carries
//! the Unix time it was made, a random nonce, and an HMAC-SHA256, keyed with the cluster secret,
//! of `peon-agent-v1\n<METHOD>\n<path and query>\n<time>\n<nonce>`; the agent recomputes it,
//! compares in constant time, refuses a time more than [`MAX_SKEW_S`] away from its own clock,
//! and a nonce it has seen within that window (a replayed request). The secret
//! itself never travels, and is never printed (`Debug` redacts it).
//!
//! Bodies are not signed: a directory transfer carries its own sha256 trailer, and a transfer
//! whose content does not match it is refused (see [`super::framing`]).

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header with the request's Unix time (seconds).
pub const TIME_HEADER: &str = "x-peon-agent-time";
/// Header with the request's nonce (16 to 64 lowercase hex digits, new for every request).
pub const NONCE_HEADER: &str = "x-peon-agent-nonce";
/// Header with the request's signature (lowercase hex).
pub const SIGNATURE_HEADER: &str = "x-peon-agent-signature";
/// How far a request's time may be from the agent's clock.
pub const MAX_SKEW_S: i64 = 60;
/// The secret's file in the manager's data dir.
pub const SECRET_FILE: &str = "cluster.secret";
/// The variable naming a file with the secret (agents, and a manager given a Docker secret).
pub const SECRET_FILE_ENV: &str = "PEON_CLUSTER_SECRET_FILE";
/// The variable holding the secret itself (agents).
pub const SECRET_ENV: &str = "PEON_CLUSTER_SECRET";
/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a secret or a signature was refused. The message never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// The cluster secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret from its text (surrounding whitespace ignored, at least
    /// [`MIN_SECRET_LEN`] bytes).
    pub fn new(text: &str) -> Result<Secret, AuthError> {
        let t = text.trim();
        if t.len() < MIN_SECRET_LEN {
            return Err(AuthError(format!(
                "the cluster secret is too short: it needs at least {MIN_SECRET_LEN} characters"
            )));
        }
        Ok(Secret(t.as_bytes().to_vec()))
    }

    /// Reads the secret from a file (`<data>/cluster.secret`, a Docker secret).
    pub fn from_file(path: &Path) -> Result<Secret, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuthError(format!(
                "cannot read the cluster secret from {}: {e}",
                path.display()
            ))
        })?;
        Secret::new(&text)
    }

    /// The manager's secret: the file `PEON_CLUSTER_SECRET_FILE` names when it is set (a Docker
    /// secret), else `<data>/cluster.secret`, made at the first cluster start (random, 0600).
    pub fn load_or_create(data_dir: &Path) -> Result<Secret, AuthError> {
        if let Some(p) = std::env::var_os(SECRET_FILE_ENV).filter(|p| !p.is_empty()) {
            return Secret::from_file(Path::new(&p));
        }
        let path = data_dir.join(SECRET_FILE);
        if !path.exists() {
            let text = Secret::generate()?;
            crate::fsio::atomic::write_atomic_mode(&path, format!("{text}\n").as_bytes(), 0o600)
                .map_err(|e| {
                    AuthError(format!(
                        "cannot write the cluster secret {}: {e}",
                        path.display()
                    ))
                })?;
            tracing::info!(path = %path.display(), "cluster secret created");
        }
        Secret::from_file(&path)
    }

    /// A new random secret (64 hex characters), as the manager makes at first cluster start.
    pub fn generate() -> Result<String, AuthError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)
            .map_err(|e| AuthError(format!("no randomness for a cluster secret: {e}")))?;
        Ok(crate::backup::archive::hex(&b))
    }

    fn mac(&self, method: &str, path_and_query: &str, time: i64, nonce: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(format!("peon-agent-v1\n{method}\n{path_and_query}\n{time}\n{nonce}").as_bytes());
        m
    }

    /// The signature of a request made at `time` with `nonce`.
    pub fn sign(&self, method: &str, path_and_query: &str, time: i64, nonce: &str) -> String {
        crate::backup::archive::hex(
            &self
                .mac(method, path_and_query, time, nonce)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a request's time, nonce and signature headers against the agent's clock `now`.
    /// Returns the request's time (for the caller's replay check of the nonce).
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: Signed<'_>,
        now: i64,
    ) -> Result<i64, AuthError> {
        let (Some(time), Some(nonce), Some(signature)) =
            (headers.time, headers.nonce, headers.signature)
        else {
            return Err(AuthError(format!(
                "a signed request is required ({TIME_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER} headers)"
            )));
        };
        if !(16..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return Err(AuthError(format!(
                "{NONCE_HEADER} must be 16 to 64 lowercase hex digits"
            )));
        }
        let t: i64 = time
            .trim()
            .parse()
            .map_err(|_| AuthError(format!("{TIME_HEADER} is not a Unix time")))?;
        if (now - t).abs() > MAX_SKEW_S {
            return Err(AuthError(format!(
                "the request's time is {}s away from the agent's clock (at most {MAX_SKEW_S}s): check the clocks",
                now - t
            )));
        }
        let sig = unhex(signature.trim())
            .ok_or_else(|| AuthError(format!("{SIGNATURE_HEADER} is not hex")))?;
        self.mac(method, path_and_query, t, nonce)
            .verify_slice(&sig)
            .map_err(|_| {
                AuthError("the request's signature does not match the cluster secret".into())
            })?;
        Ok(t)
    }
}

/// The signature headers of a request, as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    pub time: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// A new nonce: 16 random bytes in hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the time in nanoseconds still differs between requests.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = t.to_le_bytes();
    }
    crate::backup::archive::hex(&b)
}

/// The nonces an agent has accepted within the skew window: a request seen twice is refused.
#[derive(Debug, Default)]
pub struct Replays {
    seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Replays {
    /// Records `nonce` of a request made at `time`; an error when it was seen already.
    pub fn check(&self, nonce: &str, time: i64, now: i64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= 4096 {
            // Older than the window: refused by their time anyway.
            seen.retain(|_, t| (now - *t).abs() <= MAX_SKEW_S);
        }
        if seen.insert(nonce.to_owned(), time).is_some() {
            return Err(AuthError(
                "a replayed request (its nonce was used already)".into(),
            ));
        }
        Ok(())
    }
}

/// The current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_method_path_time_nonce_and_secret() {
        let s = Secret::new("  a-cluster-secret-of-some-length\n").unwrap();
        let other = Secret::new("another-secret-of-some-length").unwrap();
        let n = "0123456789abcdef";
        let p = "/agent/v1/server/g.a/logs?tail=5";
        let sig = s.sign("GET", p, 1000, n);
        let ok = |m: &str, p: &str, t: &str, n: &str, sig: &str, now: i64| {
            s.verify(
                m,
                p,
                Signed {
                    time: Some(t),
                    nonce: Some(n),
                    signature: Some(sig),
                },
                now,
            )
        };
        assert_eq!(ok("GET", p, "1000", n, &sig, 1030), Ok(1000));
        assert!(ok("PUT", p, "1000", n, &sig, 1000).is_err());
        assert!(
            ok(
                "GET",
                "/agent/v1/server/g.b/logs?tail=5",
                "1000",
                n,
                &sig,
                1000
            )
            .is_err()
        );
        assert!(ok("GET", p, "1001", n, &sig, 1000).is_err());
        assert!(ok("GET", p, "1000", "0123456789abcdee", &sig, 1000).is_err());
        assert!(ok("GET", p, "1000", "short", &sig, 1000).is_err());
        let e = ok("GET", p, "1000", n, &sig, 1100).unwrap_err();
        assert!(e.0.contains("clock"), "{e}");
        let forged = other.sign("GET", p, 1000, n);
        assert!(ok("GET", p, "1000", n, &forged, 1000).is_err());
        assert!(s.verify("GET", "/", Signed::default(), 0).is_err());
        assert!(ok("GET", "/", "x", n, "zz", 0).is_err());
        let r = Replays::default();
        assert!(r.check(n, 1000, 1000).is_ok());
        assert!(r.check(n, 1000, 1001).is_err());
        assert_ne!(nonce(), nonce());
        assert!(Secret::new("short").is_err());
        assert!(!format!("{s:?}").contains("secret-of"));
        assert_eq!(Secret::generate().unwrap().len(), 64);
    }

    #[test]
    fn the_manager_makes_its_secret_once_and_keeps_it_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        // Only when the variable is not set in this process (tests do not set it).
        if std::env::var_os(SECRET_FILE_ENV).is_some() {
            return;
        }
        let a = Secret::load_or_create(d.path()).unwrap();
        let b = Secret::load_or_create(d.path()).unwrap();
        assert_eq!(a.sign("GET", "/", 1, "n"), b.sign("GET", "/", 1, "n"));
        let mode = std::fs::metadata(d.path().join(SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
