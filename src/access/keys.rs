//! The key store: `<data>/keys.json` (mode 0600) holds each named key's role, scope and the
//! SHA-256 of its secret, never the secret. Secrets are 32 random bytes, shown once when the
//! key is created. Lookups hash the offered secret and find it in a map by hash, so a check
//! costs one SHA-256 and one map lookup however many keys exist; the hash found is compared
//! again in constant time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AccessError, Principal, Role, Scope};
use crate::fsio::atomic;

/// The key file's name in the data dir.
pub const KEYS_FILE: &str = "keys.json";
/// The name of the configured (or generated) key.
pub const ADMIN_NAME: &str = "admin";

type Hash = [u8; 32];

/// SHA-256 of a secret.
pub fn hash(secret: &[u8]) -> Hash {
    Sha256::digest(secret).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    name: String,
    role: Role,
    #[serde(default)]
    scope: Option<Scope>,
    /// Hex SHA-256 of the secret.
    sha256: String,
    created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyRecord>,
}

/// A key as listed: no secret, no hash.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyView {
    pub name: String,
    pub role: Role,
    /// `None`: every server.
    pub scope: Option<Scope>,
    /// RFC 3339; `None` for the configured key.
    pub created: Option<String>,
    /// The configured key: cannot be revoked.
    pub configured: bool,
}

/// A new key, with its secret: the only time the secret is known to the daemon.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: KeyView,
    pub secret: String,
}

struct Index {
    by_hash: HashMap<Hash, Arc<Principal>>,
    records: Vec<KeyRecord>,
}

/// The named keys plus the configured admin key.
pub struct KeyStore {
    path: PathBuf,
    admin: Hash,
    index: RwLock<Index>,
    /// Serializes creates and revokes (each rewrites the file).
    writing: tokio::sync::Mutex<()>,
}

fn principal(r: &KeyRecord) -> Principal {
    Principal {
        name: r.name.clone(),
        role: r.role,
        scope: r.scope.clone(),
        configured: false,
    }
}

fn build(admin: Hash, records: Vec<KeyRecord>) -> Index {
    let mut by_hash = HashMap::with_capacity(records.len() + 1);
    for r in &records {
        if let Some(h) = unhex(&r.sha256) {
            by_hash.insert(h, Arc::new(principal(r)));
        } else {
            tracing::warn!(key = %r.name, "ignoring a key with a malformed hash in keys.json");
        }
    }
    by_hash.insert(admin, Arc::new(Principal::configured_admin()));
    Index { by_hash, records }
}

/// Checks a key name with the rule of server names.
pub fn check_name(name: &str) -> Result<(), AccessError> {
    crate::names::server_name(name)
        .map(|_| ())
        .map_err(|_| {
            AccessError::Invalid(format!(
                "invalid key name [{name}]: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
            ))
        })
}

impl KeyStore {
    /// Loads the key file (absent: no named keys). The configured secret is the admin key.
    pub fn open(path: &Path, admin_secret: &str) -> Result<KeyStore, AccessError> {
        let file: KeyFile = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| AccessError::Io {
                what: "keys",
                reason: format!("{}: {e}", path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile::default(),
            Err(e) => {
                return Err(AccessError::Io {
                    what: "keys",
                    reason: format!("{}: {e}", path.display()),
                });
            }
        };
        let admin = hash(admin_secret.as_bytes());
        Ok(KeyStore {
            path: path.to_owned(),
            admin,
            index: RwLock::new(build(admin, file.keys)),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The holder of the offered secret, if it is a key.
    pub fn lookup(&self, offered: &[u8]) -> Option<Arc<Principal>> {
        if offered.is_empty() {
            return None;
        }
        let h = hash(offered);
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let (stored, p) = index.by_hash.get_key_value(&h)?;
        bool::from(stored.ct_eq(&h)).then(|| p.clone())
    }

    /// The holder of the key named `name` (the configured key for `admin`), if there is one.
    pub fn by_name(&self, name: &str) -> Option<Principal> {
        if name == ADMIN_NAME {
            return Some(Principal::configured_admin());
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.records.iter().find(|r| r.name == name).map(principal)
    }

    /// Every key, the configured one first, without secrets.
    pub fn list(&self) -> Vec<KeyView> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut out = vec![KeyView {
            name: ADMIN_NAME.into(),
            role: Role::Admin,
            scope: None,
            created: None,
            configured: true,
        }];
        out.extend(index.records.iter().map(|r| KeyView {
            name: r.name.clone(),
            role: r.role,
            scope: r.scope.clone(),
            created: Some(r.created.clone()),
            configured: false,
        }));
        out
    }

    /// How many keys there are, the configured one included.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_hash
            .len()
    }

    /// Whether there is no key at all (never: the configured one is always there).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a key; the secret is returned once and stored only as its hash.
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        scope: Option<Scope>,
    ) -> Result<NewKey, AccessError> {
        check_name(name)?;
        if let Some(s) = &scope {
            if role == Role::Admin {
                return Err(AccessError::Invalid(
                    "an admin key reaches every server: give it no scope".into(),
                ));
            }
            s.validate()?;
        }
        let _w = self.writing.lock().await;
        let mut records = self.records();
        if name == ADMIN_NAME || records.iter().any(|r| r.name == name) {
            return Err(AccessError::Conflict(format!(
                "there is already a key named [{name}]"
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| AccessError::Io {
            what: "keys",
            reason: format!("no randomness: {e}"),
        })?;
        let secret = hex(&raw);
        let record = KeyRecord {
            name: name.to_owned(),
            role,
            scope,
            sha256: hex(&hash(secret.as_bytes())),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        records.push(record.clone());
        self.save(records).await?;
        Ok(NewKey {
            key: KeyView {
                name: record.name,
                role: record.role,
                scope: record.scope,
                created: Some(record.created),
                configured: false,
            },
            secret,
        })
    }

    /// Revokes a key at once: the next request with it is refused.
    pub async fn revoke(&self, name: &str) -> Result<(), AccessError> {
        if name == ADMIN_NAME {
            return Err(AccessError::Invalid(
                "the configured admin key cannot be revoked; change it in the configuration".into(),
            ));
        }
        check_name(name)?;
        let _w = self.writing.lock().await;
        let mut records = self.records();
        let before = records.len();
        records.retain(|r| r.name != name);
        if records.len() == before {
            return Err(AccessError::NotFound(format!("there is no key [{name}]")));
        }
        self.save(records).await
    }

    fn records(&self) -> Vec<KeyRecord> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .clone()
    }

    /// Writes the file (off the async workers), then swaps the index.
    async fn save(&self, records: Vec<KeyRecord>) -> Result<(), AccessError> {
        let io = |reason: String| AccessError::Io {
            what: "keys",
            reason,
        };
        let file = KeyFile { keys: records };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| io(e.to_string()))?;
        bytes.push(b'\n');
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || atomic::write_atomic_mode(&path, &bytes, 0o600))
            .await
            .map_err(|e| io(e.to_string()))?
            .map_err(|e| io(format!("{}: {e}", self.path.display())))?;
        let index = build(self.admin, file.keys);
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(())
    }

    /// A store of `n` keys in memory only (for `peon bench keys`), with their secrets.
    pub fn in_memory(admin_secret: &str, n: usize) -> (KeyStore, Vec<String>) {
        let mut secrets = Vec::with_capacity(n);
        let mut records = Vec::with_capacity(n);
        for i in 0..n {
            let secret = hex(&hash(format!("bench-{i}").as_bytes()));
            records.push(KeyRecord {
                name: format!("k{i}"),
                role: Role::Viewer,
                scope: None,
                sha256: hex(&hash(secret.as_bytes())),
                created: String::new(),
            });
            secrets.push(secret);
        }
        let admin = hash(admin_secret.as_bytes());
        let store = KeyStore {
            path: PathBuf::new(),
            admin,
            index: RwLock::new(build(admin, records)),
            writing: tokio::sync::Mutex::new(()),
        };
        (store, secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_sha256_in_hex() {
        assert_eq!(
            hex(&hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(unhex(&hex(&hash(b"x"))), Some(hash(b"x")));
        assert_eq!(unhex("zz"), None);
    }

    #[tokio::test]
    async fn create_list_lookup_revoke_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYS_FILE);
        let store = KeyStore::open(&path, "adminsecret").unwrap();
        assert_eq!(store.lookup(b"adminsecret").unwrap().name, "admin");
        assert!(store.lookup(b"").is_none() && store.lookup(b"nope").is_none());

        let scope = Scope {
            games: vec!["valheim".into()],
            uids: vec![],
        };
        let k = store
            .create("ci", Role::Operator, Some(scope.clone()))
            .await
            .unwrap();
        assert_eq!(k.secret.len(), 64);
        let p = store.lookup(k.secret.as_bytes()).unwrap();
        assert_eq!((p.name.as_str(), p.role), ("ci", Role::Operator));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&k.secret), "{text}");
        assert!(text.contains(&hex(&hash(k.secret.as_bytes()))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        assert!(matches!(
            store.create("ci", Role::Viewer, None).await,
            Err(AccessError::Conflict(_))
        ));
        assert!(matches!(
            store.create("admin", Role::Viewer, None).await,
            Err(AccessError::Conflict(_))
        ));
        assert!(matches!(
            store.create("Bad!", Role::Viewer, None).await,
            Err(AccessError::Invalid(_))
        ));
        assert!(matches!(
            store.create("boss", Role::Admin, Some(scope)).await,
            Err(AccessError::Invalid(_))
        ));
        let names: Vec<String> = store.list().into_iter().map(|k| k.name).collect();
        assert_eq!(store.by_name("ci").unwrap().role, Role::Operator);
        assert!(store.by_name("admin").unwrap().configured);
        assert!(store.by_name("nobody").is_none());
        assert_eq!(names, ["admin", "ci"]);

        let again = KeyStore::open(&path, "adminsecret").unwrap();
        assert_eq!(again.lookup(k.secret.as_bytes()).unwrap().name, "ci");

        store.revoke("ci").await.unwrap();
        assert!(store.lookup(k.secret.as_bytes()).is_none());
        assert!(matches!(
            store.revoke("ci").await,
            Err(AccessError::NotFound(_))
        ));
        assert!(matches!(
            store.revoke("admin").await,
            Err(AccessError::Invalid(_))
        ));
    }
}
