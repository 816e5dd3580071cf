//! Who may do what: named API keys ([`keys`]), each with a [`Role`] and a [`Scope`]; the
//! lockout of client addresses that keep offering wrong keys ([`lockout`]); the audit log of
//! mutating requests ([`audit`]). The API layer classifies every route as a [`Class`] and asks
//! [`Principal::check`] before the handler runs.
//!
//! This module sits below the service and the API: it imports only `fsio` and `names`.

pub mod audit;
pub mod keys;
pub mod links;
pub mod lockout;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use audit::{Audit, AuditEntry, AuditQuery};
pub use keys::{KeyStore, KeyView, NewKey};
pub use links::LinkSigner;
pub use lockout::{Failure, Lockout, LockoutConfig};

/// Errors of the access layer.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A malformed key request (bad name, unknown role, scope on an admin key).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The key may not do this (role) or not on this server (scope).
    #[error("{0}")]
    Forbidden(String),
    /// Too many wrong keys from this address; refused until the lock ends.
    #[error("too many wrong API keys from this address; try again in {0} s")]
    Locked(u64),
    #[error("cannot store {what}: {reason}")]
    Io { what: &'static str, reason: String },
    /// A signed link past its expiry.
    #[error("{0}")]
    Expired(String),
}

/// What a key's holder may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including keys, plan updates and the audit log.
    Admin,
    /// Reads, plus lifecycle, console and commands, backups, schedules: on servers in scope.
    Operator,
    /// Reads only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Parses `admin`, `operator` or `viewer`.
    pub fn parse(s: &str) -> Result<Role, AccessError> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            _ => Err(AccessError::Invalid(format!(
                "unknown role [{s}]: use admin, operator or viewer"
            ))),
        }
    }

    /// The permission table: which classes of routes a role may call.
    pub fn allows(self, class: Class) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => matches!(class, Class::Read | Class::Operate),
            Role::Viewer => class == Class::Read,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route does, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Reads: lists, server views, logs, plans, events.
    Read,
    /// Public by signature: no key; the handler checks the link's signature and expiry.
    Signed,
    /// Lifecycle, console input and commands, backups, schedules.
    Operate,
    /// Keys, the audit log, plan updates, imports, eradication.
    Admin,
}

/// The servers a key may see and act on: the listed games (every server of them) and the
/// listed server uids. A key without a scope (`null`) reaches every server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub games: Vec<String>,
    #[serde(default)]
    pub uids: Vec<String>,
}

impl Scope {
    /// Checks every entry (game ids and uids) and that the scope names something.
    pub fn validate(&self) -> Result<(), AccessError> {
        if self.games.is_empty() && self.uids.is_empty() {
            return Err(AccessError::Invalid(
                "a scope must list at least one game or server uid (omit it for all servers)"
                    .into(),
            ));
        }
        for g in &self.games {
            crate::names::game_id(g).map_err(|e| AccessError::Invalid(e.to_string()))?;
        }
        for u in &self.uids {
            crate::names::Uid::parse(u).map_err(|e| AccessError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    fn has_game(&self, game: &str) -> bool {
        self.games.iter().any(|g| g == game)
    }

    fn has_uid(&self, uid: &str) -> bool {
        let game = uid.split_once('.').map_or(uid, |(g, _)| g);
        self.has_game(game) || self.uids.iter().any(|u| u == uid)
    }
}

/// The holder of a key, as a request carries it once the key matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// `None`: every server.
    pub scope: Option<Scope>,
    /// The key from the configuration: cannot be revoked.
    pub configured: bool,
}

impl Principal {
    /// The configured (or generated) key: admin, every server.
    pub fn configured_admin() -> Principal {
        Principal {
            name: keys::ADMIN_NAME.into(),
            role: Role::Admin,
            scope: None,
            configured: true,
        }
    }

    /// Whether the key reaches the server `uid` (`<game>.<name>`).
    pub fn sees_uid(&self, uid: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.has_uid(uid))
    }

    /// Whether the key reaches every server of `game` (needed to create one of them).
    pub fn sees_game(&self, game: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.has_game(game))
    }

    /// Whether the key reaches `target`: a uid, or a game alone (a create with a random name).
    pub fn sees_target(&self, target: &str) -> bool {
        if target.contains('.') {
            self.sees_uid(target)
        } else {
            self.sees_game(target)
        }
    }

    /// The check of one request: the role must allow the route's class (`what` names the
    /// action in the refusal, e.g. "start servers"), and the scope must reach `target` (the
    /// route's `{uid}` parameter, when it has one).
    pub fn check(&self, class: Class, what: &str, target: Option<&str>) -> Result<(), AccessError> {
        if !self.role.allows(class) {
            return Err(AccessError::Forbidden(format!(
                "the key [{}] ({}) may not {what}",
                self.name, self.role
            )));
        }
        match target {
            Some(t) if !self.sees_target(t) => Err(self.not_on(t)),
            _ => Ok(()),
        }
    }

    /// The refusal for a server or game outside the key's scope.
    pub fn not_on(&self, target: &str) -> AccessError {
        let kind = if target.contains('.') {
            "server"
        } else {
            "game"
        };
        AccessError::Forbidden(format!(
            "the key [{}] is not allowed on {kind} [{target}]",
            self.name
        ))
    }
}

/// Thresholds of access control, from the settings.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub lockout: LockoutConfig,
    /// The audit log is rotated when it would grow past this many bytes.
    pub audit_max_bytes: u64,
    /// Rotated audit files kept (`audit.log.1` ... `audit.log.N`).
    pub audit_keep: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            lockout: LockoutConfig::default(),
            audit_max_bytes: 10 * 1024 * 1024,
            audit_keep: 3,
        }
    }
}

/// Keys, lockout and audit log of one daemon.
pub struct Access {
    pub keys: KeyStore,
    pub lockout: Lockout,
    pub audit: Audit,
    /// The signer of links that work without a key.
    pub links: LinkSigner,
}

impl Access {
    /// Loads `<data>/keys.json` (the configured key is the admin key) and starts the audit
    /// writer on `<data>/audit.log`.
    pub fn open(
        data_dir: &Path,
        admin_secret: &str,
        cfg: AccessConfig,
    ) -> Result<Access, AccessError> {
        Ok(Access {
            keys: KeyStore::open(&data_dir.join(keys::KEYS_FILE), admin_secret)?,
            lockout: Lockout::new(cfg.lockout),
            links: LinkSigner::open(data_dir)?,
            audit: Audit::open(
                &data_dir.join(audit::AUDIT_FILE),
                cfg.audit_max_bytes,
                cfg.audit_keep,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: Role, scope: Option<Scope>) -> Principal {
        Principal {
            name: "ci".into(),
            role,
            scope,
            configured: false,
        }
    }

    #[test]
    fn the_role_table() {
        use Class::*;
        let table = [
            (Role::Admin, [true, true, true]),
            (Role::Operator, [true, true, false]),
            (Role::Viewer, [true, false, false]),
        ];
        for (role, want) in table {
            for (class, w) in [Read, Operate, Admin].into_iter().zip(want) {
                assert_eq!(role.allows(class), w, "{role} {class:?}");
            }
        }
        assert_eq!(Role::parse("operator").unwrap(), Role::Operator);
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn scope_matches_by_game_or_uid() {
        let s = Scope {
            games: vec!["valheim".into()],
            uids: vec!["ark.island".into()],
        };
        let p = key(Role::Operator, Some(s.clone()));
        assert!(p.sees_uid("valheim.a") && p.sees_uid("valheim.b"));
        assert!(p.sees_uid("ark.island"));
        assert!(!p.sees_uid("ark.other") && !p.sees_uid("rust.x"));
        assert!(p.sees_game("valheim") && !p.sees_game("ark"));
        assert!(p.sees_target("valheim") && !p.sees_target("ark"));
        assert!(p.sees_target("ark.island"));
        let all = key(Role::Viewer, None);
        assert!(all.sees_uid("any.thing") && all.sees_game("any"));
        assert!(s.validate().is_ok());
        assert!(Scope::default().validate().is_err());
        assert!(
            Scope {
                games: vec!["Bad!".into()],
                uids: vec![]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn refusals_name_the_missing_permission() {
        let p = key(
            Role::Viewer,
            Some(Scope {
                games: vec!["g".into()],
                uids: vec![],
            }),
        );
        let e = p
            .check(Class::Operate, "start servers", Some("g.a"))
            .unwrap_err();
        assert_eq!(e.to_string(), "the key [ci] (viewer) may not start servers");
        let e = p
            .check(Class::Read, "read servers", Some("x.y"))
            .unwrap_err();
        assert_eq!(e.to_string(), "the key [ci] is not allowed on server [x.y]");
        assert!(p.check(Class::Read, "read servers", Some("g.y")).is_ok());
        assert!(p.check(Class::Read, "list servers", None).is_ok());
    }
}
