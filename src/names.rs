//! Validation of every user-supplied identifier before it can reach a path, a container name or a
//! label: game ids, server names, server uids (`<game>.<name>`) and config file names.

use std::fmt;

use serde::Serialize;

/// Why an identifier was refused. The message names the offending value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

const MAX_ID: usize = 64;

fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Checks a game id (`valheim`, `7dtd`): lowercase letters, digits, `_` and `-`, starting with a
/// letter or digit, at most 64 characters.
pub fn game_id(s: &str) -> Result<&str, InvalidName> {
    if is_id(s) {
        Ok(s)
    } else {
        Err(InvalidName(format!(
            "invalid game id [{s}]: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Checks a server (warcamp) name with the same rule as game ids: it becomes part of a container
/// name, a network name and a directory.
pub fn server_name(s: &str) -> Result<&str, InvalidName> {
    if is_id(s) {
        Ok(s)
    } else {
        Err(InvalidName(format!(
            "invalid server name [{s}]: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Checks the name of a file under a server's `config/` directory: letters, digits, `.`, `_`
/// and `-`, not starting with a dot, at most 128 characters.
pub fn config_file(s: &str) -> Result<&str, InvalidName> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !s.contains("..");
    if ok {
        Ok(s)
    } else {
        Err(InvalidName(format!(
            "invalid config file name [{s}]: use letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// A server's identity: `<game>.<name>`, both parts checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Uid {
    game: String,
    name: String,
}

impl Uid {
    pub fn new(game: &str, name: &str) -> Result<Self, InvalidName> {
        Ok(Uid {
            game: game_id(game)?.to_owned(),
            name: server_name(name)?.to_owned(),
        })
    }

    /// Parses `<game>.<name>`. Exactly one dot; both parts must pass their checks.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        match s.split_once('.') {
            Some((g, n)) if !n.contains('.') => Uid::new(g, n),
            Some(_) => Err(InvalidName(format!(
                "invalid server uid [{s}]: expected <game>.<name> with exactly one dot"
            ))),
            None => Err(InvalidName(format!(
                "invalid server uid [{s}]: expected <game>.<name>; a server name is required"
            ))),
        }
    }

    pub fn game(&self) -> &str {
        &self.game
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Docker container name (and hostname) PEON uses: `peon.warcamp.<game>.<name>`.
    pub fn container_name(&self) -> String {
        format!("peon.warcamp.{}.{}", self.game, self.name)
    }

    /// The per-server network name PEON uses: `<game>_<name>`.
    pub fn network_name(&self) -> String {
        format!("{}_{}", self.game, self.name)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.game, self.name)
    }
}

impl From<Uid> for String {
    fn from(u: Uid) -> String {
        u.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_peon_style_ids() {
        for ok in ["valheim", "7dtd", "cs2", "winter_glen", "a-b", "x"] {
            assert!(game_id(ok).is_ok(), "{ok}");
            assert!(server_name(ok).is_ok(), "{ok}");
        }
        let u = Uid::parse("valheim.alpha").unwrap();
        assert_eq!((u.game(), u.name()), ("valheim", "alpha"));
        assert_eq!(u.container_name(), "peon.warcamp.valheim.alpha");
        assert_eq!(u.network_name(), "valheim_alpha");
        assert_eq!(u.to_string(), "valheim.alpha");
    }

    #[test]
    fn rejects_traversal_dots_slashes_and_case() {
        for bad in [
            "", "..", ".", "a/b", "a\\b", "A", "Valheim", "-x", "_x", "a b", "a;b", "a.b", "é",
        ] {
            assert!(game_id(bad).is_err(), "{bad:?}");
            assert!(server_name(bad).is_err(), "{bad:?}");
        }
        assert!(game_id(&"a".repeat(65)).is_err());
        for bad in [
            "tf2",
            "tf2.",
            ".x",
            "a.b.c",
            "../x",
            "valheim..",
            "a.b/c",
            "a.%2e",
        ] {
            assert!(Uid::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_file_names() {
        for ok in ["server.cfg", "ServerGameSettings.json", "a-b_c.txt"] {
            assert!(config_file(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "..", "a/b", "a..b", "a b", "/etc/passwd"] {
            assert!(config_file(bad).is_err(), "{bad:?}");
        }
    }
}
