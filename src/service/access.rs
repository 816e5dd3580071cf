//! The service's face for access control: the key store, the lockout and the audit log (the
//! API's key check asks [`ServerService::access`]; the key and audit handlers call the
//! methods here).

use std::sync::Arc;

use super::{Result, ServerService};
use crate::access::{Access, AccessError, AuditEntry, AuditQuery, KeyView, NewKey, Role, Scope};

impl ServerService {
    /// Keys, lockout and audit log, for the API's key check.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// `GET /keys`: every key without its secret.
    pub fn list_keys(&self) -> Vec<KeyView> {
        self.access.keys.list()
    }

    /// `POST /keys`: a new key; its secret is returned once.
    pub async fn create_key(&self, name: &str, role: &str, scope: Option<Scope>) -> Result<NewKey> {
        let role = Role::parse(role)?;
        Ok(self.access.keys.create(name, role, scope).await?)
    }

    /// `DELETE /key/{name}`: refused from the next request on.
    pub async fn revoke_key(&self, name: &str) -> Result<()> {
        Ok(self.access.keys.revoke(name).await?)
    }

    /// `GET /audit`: matching entries, newest first (read off the async workers).
    pub async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditEntry>> {
        let access = self.access.clone();
        let entries = tokio::task::spawn_blocking(move || access.audit.query(&q))
            .await
            .map_err(|e| AccessError::Io {
                what: "the audit log",
                reason: format!("the reading task failed: {e}"),
            })??;
        Ok(entries)
    }
}
