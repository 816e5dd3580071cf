//! Signed links: a URL that works without the API key until it expires. The signature is an
//! HMAC-SHA256 over the link's path (relative to the API base) and its expiry, with a secret
//! generated once into `<data dir>/link.key` (mode 0600). A changed path, expiry or signature
//! is refused; so is a link past its expiry.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AccessError;
use crate::fsio::atomic;

/// The file holding the signing secret.
pub const LINK_KEY_FILE: &str = "link.key";

/// Signs and checks links.
pub struct LinkSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    /// Reads the secret, or generates it (32 random bytes, hex, mode 0600).
    pub fn open(data_dir: &Path) -> Result<LinkSigner, AccessError> {
        let path = data_dir.join(LINK_KEY_FILE);
        let io = |e: std::io::Error| AccessError::Io {
            what: "the link key",
            reason: format!("{}: {e}", path.display()),
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(t) if t.trim().len() >= 32 => t.trim().as_bytes().to_vec(),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {
                let mut b = [0u8; 32];
                getrandom::fill(&mut b).map_err(|e| io(std::io::Error::other(e.to_string())))?;
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                atomic::write_atomic_mode(&path, hex.as_bytes(), 0o600).map_err(io)?;
                hex.into_bytes()
            }
        };
        Ok(LinkSigner { secret })
    }

    fn mac(&self, path: &str, expires: i64) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(path.as_bytes());
        m.update(b"\n");
        m.update(expires.to_string().as_bytes());
        m
    }

    /// The signature (hex) of `path` valid until `expires` (Unix seconds).
    pub fn sign(&self, path: &str, expires: i64) -> String {
        self.mac(path, expires)
            .finalize()
            .into_bytes()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    /// Checks a link at time `now`: a wrong signature is `Forbidden`, an expired link `Expired`.
    pub fn verify(&self, path: &str, expires: i64, sig: &str, now: i64) -> Result<(), AccessError> {
        let raw: Option<Vec<u8>> = (sig.len() == 64)
            .then(|| {
                (0..64)
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&sig[i..i + 2], 16).ok())
                    .collect()
            })
            .flatten();
        let ok = raw.is_some_and(|r| self.mac(path, expires).verify_slice(&r).is_ok());
        if !ok {
            return Err(AccessError::Forbidden(
                "the link's signature is not valid".into(),
            ));
        }
        if now >= expires {
            return Err(AccessError::Expired(
                "the link has expired; ask for a new one".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_refuse_changes() {
        let d = tempfile::tempdir().unwrap();
        let s = LinkSigner::open(d.path()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(d.path().join(LINK_KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let sig = s.sign("save/g.a/f.zip", 100);
        assert!(s.verify("save/g.a/f.zip", 100, &sig, 99).is_ok());
        assert!(matches!(
            s.verify("save/g.a/f.zip", 100, &sig, 100),
            Err(AccessError::Expired(_))
        ));
        assert!(matches!(
            s.verify("save/g.b/f.zip", 100, &sig, 1),
            Err(AccessError::Forbidden(_))
        ));
        assert!(matches!(
            s.verify("save/g.a/f.zip", 101, &sig, 1),
            Err(AccessError::Forbidden(_))
        ));
        assert!(s.verify("save/g.a/f.zip", 100, "zz", 1).is_err());
        // The secret survives a reopen.
        let again = LinkSigner::open(d.path()).unwrap();
        assert_eq!(again.sign("save/g.a/f.zip", 100), sig);
    }
}
