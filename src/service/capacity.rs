//! Disk use: each server's folder (and its `data/` part), backups, plans, and the images the
//! servers run. PEON's `capacity` maintenance command shows this.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{Result, ServerService};
use crate::fsio::fsutil::tree_size;

/// Disk use of one server's folder.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerUsage {
    pub uid: String,
    /// The whole server folder.
    pub bytes: u64,
    /// The `data/` part of it (the game's files and worlds).
    pub data_bytes: u64,
    /// The server's disk quota, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
}

/// An image the servers use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageUsage {
    pub image: String,
    /// Size on the engine; `None` when the image is not present locally.
    pub bytes: Option<u64>,
    /// The servers whose plan names this image.
    pub servers: Vec<String>,
}

/// The answer of `GET /capacity`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Capacity {
    pub data_dir: String,
    pub servers: Vec<ServerUsage>,
    pub servers_bytes: u64,
    pub backups_bytes: u64,
    pub plans_bytes: u64,
    pub images: Vec<ImageUsage>,
    pub images_bytes: u64,
}

impl ServerService {
    /// Measures the data dir and asks the engine for the size of each image in use.
    pub async fn capacity(&self) -> Result<Capacity> {
        let records = self.store.list();
        // `/capacity` is the explicit "measure now": each server directory is walked afresh
        // (which also refreshes the measure the server object shows, and the quota warning);
        // the server object itself never walks.
        for r in &records {
            if let Err(e) = self.measure_disk(&r.uid).await {
                tracing::debug!(uid = %r.uid, "disk measure failed: {e}");
            }
        }
        type Entry = (String, PathBuf, Option<(u64, u64)>, Option<u64>);
        let dirs: Vec<Entry> = records
            .iter()
            .map(|r| {
                let known = self.disk_of(&r.uid).map(|d| (d.bytes, d.data_bytes));
                let quota = self.limits_of(r).disk_bytes.map(|q| q as u64);
                (r.uid.to_string(), r.dir.clone(), known, quota)
            })
            .collect();
        let data = self.store.data_dir();
        let backups = data.backups();
        let plans = self.settings.plans_dir.clone();
        let (servers, backups_bytes, plans_bytes) = tokio::task::spawn_blocking(move || {
            let servers: Vec<ServerUsage> = dirs
                .into_iter()
                .map(|(uid, dir, known, quota_bytes)| {
                    let (bytes, data_bytes) =
                        known.unwrap_or_else(|| (tree_size(&dir), tree_size(&dir.join("data"))));
                    ServerUsage {
                        uid,
                        bytes,
                        data_bytes,
                        quota_bytes,
                    }
                })
                .collect();
            (servers, tree_size(&backups), tree_size(&plans))
        })
        .await
        .map_err(|e| super::ServiceError::Failed(format!("measuring the data dir failed: {e}")))?;

        let mut by_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &records {
            by_image
                .entry(r.plan.image.clone())
                .or_default()
                .push(r.uid.to_string());
        }
        let mut images = Vec::with_capacity(by_image.len());
        for (image, servers) in by_image {
            let bytes = self.runtime.image_size(&image).await?;
            images.push(ImageUsage {
                image,
                bytes,
                servers,
            });
        }
        Ok(Capacity {
            data_dir: data.root().display().to_string(),
            servers_bytes: servers.iter().map(|s| s.bytes).sum(),
            servers,
            backups_bytes,
            plans_bytes,
            images_bytes: images.iter().filter_map(|i| i.bytes).sum(),
            images,
        })
    }
}
