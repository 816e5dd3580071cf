//! What an update did: the image and plan version before and after, the undo point, and whether
//! the server kept the update or was rolled back (and why).

use serde::{Deserialize, Serialize};

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateResult {
    /// The update is in progress (a daemon that stopped meanwhile left it so).
    Running,
    /// The server got ready on the new version and stayed up through the watch window.
    Updated,
    /// The new version failed; the previous image, files and world are back.
    RolledBack,
    /// The new version failed and the rollback failed too; the undo point is kept.
    RollbackFailed,
}

/// The last update of a server, kept in `.peon.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateRecord {
    /// When the update began, RFC 3339.
    pub time: String,
    /// PEON's update mode (`full`, `image`, `server`, `reinit`).
    pub mode: String,
    /// The image id the server ran before the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_image: Option<String>,
    /// The image id the update brought (absent when it did not get that far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_image: Option<String>,
    /// The server's plan version at the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// The plan version the update went to, for an update of the plan (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_plan_version: Option<String>,
    /// How long the new version had to stay up after getting ready, in seconds.
    pub watch_s: u64,
    pub result: UpdateResult,
    /// Why the update was rolled back (or why the rollback failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
