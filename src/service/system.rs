//! The service's face for the daemon's own description: its instance, how many servers it
//! has, and whether the Docker engine answers.

use serde::Serialize;
use utoipa::ToSchema;

use super::ServerService;

/// Whether the Docker engine answers: `{"reachable": true, "version", "api_version", "os"}`
/// or `{"reachable": false, "error"}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EngineStatus {
    pub reachable: bool,
    /// The engine's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub version: Option<String>,
    /// The Docker API version peon speaks with the engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub os: Option<String>,
    /// Why the engine cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

impl ServerService {
    /// Asks the engine for its version; an unreachable engine is a status, not an error.
    pub async fn engine_status(&self) -> EngineStatus {
        match self.runtime.info().await {
            Ok(i) => EngineStatus {
                reachable: true,
                version: Some(i.version),
                api_version: Some(i.api_version),
                os: Some(i.os),
                error: None,
            },
            Err(e) => EngineStatus {
                reachable: false,
                version: None,
                api_version: None,
                os: None,
                error: Some(e.to_string()),
            },
        }
    }

    /// The name of this daemon instance (it labels every container the daemon creates).
    pub fn instance(&self) -> &str {
        &self.settings.instance
    }

    /// How many servers the daemon has.
    pub fn server_count(&self) -> usize {
        self.store.len()
    }
}
