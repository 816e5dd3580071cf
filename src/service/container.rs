//! From a server's saved config to its container: the container is disposable and can always be
//! rebuilt from `config.json`.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Result, ServerService, ServiceError};
use crate::fsio::fsutil::{self, Within};
use crate::model::plan::Setting;
use crate::runtime::{ContainerSpec, RuntimeError, labels};
use crate::store::ServerRecord;

/// Game containers run as PEON's `1000:1000`.
pub(super) const GAME_USER: u32 = 1000;

impl ServerService {
    /// The server directory as the Docker host sees it (differs when peon runs in a container).
    /// In cluster mode: the directory the node's agent holds, under its data dir.
    fn host_server_dir(&self, rec: &ServerRecord) -> PathBuf {
        let node_dir = rec.state.node.as_ref().and_then(|n| n.data_dir.as_deref());
        node_dir
            .map_or(self.settings.host_dir.as_path(), std::path::Path::new)
            .join("servers")
            .join(rec.uid.game())
            .join(rec.uid.name())
    }

    /// Labels of everything peon creates for a server.
    pub(super) fn labels(&self, rec: &ServerRecord) -> HashMap<String, String> {
        HashMap::from([
            (labels::INSTANCE.to_owned(), self.settings.instance.clone()),
            (labels::UID.to_owned(), rec.uid.to_string()),
            (labels::GAME.to_owned(), rec.uid.game().to_owned()),
            (labels::SERVER.to_owned(), rec.uid.name().to_owned()),
        ])
    }

    /// The container of a server, as its config describes it.
    /// `image_env` is the environment the image declares (its `CONTAINER_TYPE` and `VERSION`
    /// become labels).
    pub(super) fn container_spec(
        &self,
        rec: &ServerRecord,
        image_env: &[String],
    ) -> Result<ContainerSpec> {
        let plan = &rec.plan;
        let group = plan.port_groups.first().cloned().unwrap_or_default();
        let mut env: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in &group {
            if seen.insert(p.name.clone()) {
                env.push(format!("{}={}", p.name, p.port));
            }
        }
        for (k, v) in &plan.environment {
            match v {
                Setting::Default(v) => {
                    if seen.insert(k.clone()) {
                        env.push(format!("{k}={v}"));
                    }
                }
                Setting::Required => {
                    return Err(ServiceError::BadRequest(format!(
                        "The setting {k} of [{}] has no value; set it in config.json or recreate the server.",
                        rec.uid
                    )));
                }
            }
        }
        let host_dir = self.host_server_dir(rec);
        // Docker follows a symbolic link in a bind source on the host: a link a game container
        // made in its volume must never be mounted.
        for m in &plan.volumes {
            if let Within::Link(link) = fsutil::within(&rec.dir, &m.source)? {
                return Err(ServiceError::BadRequest(format!(
                    "The volume source ~!/{} of [{}] goes through the symbolic link {}; peon does not mount links. Replace it with a folder.",
                    m.source,
                    rec.uid,
                    link.display()
                )));
            }
        }
        let mut binds: Vec<String> = plan
            .volumes
            .iter()
            .map(|m| format!("{}:{}", host_dir.join(&m.source).display(), m.target))
            .collect();
        // A `files` entry is mounted once the user has put the file into the server directory.
        for f in &plan.files {
            let found = fsutil::within(&rec.dir, &f.source)?;
            if let Within::Link(link) = &found {
                tracing::warn!(uid = %rec.uid, "files: {} is a symbolic link; not mounted", link.display());
            }
            if found == Within::File {
                binds.push(format!(
                    "{}:{}",
                    host_dir.join(&f.source).display(),
                    f.target
                ));
            }
        }
        let mut labels = self.labels(rec);
        if let Some(node) = &rec.state.node {
            labels.insert(labels::NODE.to_owned(), node.id.clone());
            labels.insert(labels::GAMESLOT.to_owned(), "1".to_owned());
        }
        for (key, label) in [
            ("CONTAINER_TYPE=", labels::CONTAINER_TYPE),
            ("VERSION=", labels::BUILD_VERSION),
        ] {
            if let Some(v) = image_env.iter().find_map(|e| e.strip_prefix(key)) {
                labels.insert(label.to_owned(), v.to_owned());
            }
        }
        Ok(ContainerSpec {
            name: rec.uid.container_name(),
            hostname: rec.uid.container_name(),
            image: run_image(rec).to_owned(),
            env,
            binds,
            ports: group
                .iter()
                .flat_map(|p| p.protocols.iter().map(move |pr| (p.port, *pr)))
                .collect(),
            publish_ip: self.settings.publish_address.clone(),
            labels,
            network: rec.uid.network_name(),
            user: Some(format!("{GAME_USER}:{GAME_USER}")),
            stop_timeout: self.stop_grace(rec),
            limits: self.engine_limits(rec),
        })
    }

    /// Creates the server's network and container unless the container exists. Pulls the image
    /// when it is not present locally.
    pub(super) async fn ensure_container(&self, rec: &ServerRecord) -> Result<()> {
        let name = rec.uid.container_name();
        if let Some(existing) = self.runtime.inspect(&name).await? {
            if existing.labels.get(labels::INSTANCE) == Some(&self.settings.instance) {
                return Ok(());
            }
            return Err(ServiceError::Conflict(format!(
                "The container name {name} is used by a container peon does not manage; remove or rename it."
            )));
        }
        // One image inspect: it says whether to pull and gives the labels' values.
        let image_env = match self.runtime.image_env(run_image(rec)).await? {
            Some(env) => env,
            None if rec.state.image_pin.is_some() => {
                return Err(ServiceError::Conflict(format!(
                    "[{}] is pinned to the image {} (its last known good, kept by a rollback), which is no longer on the engine. Update the server to go to its plan's image.",
                    rec.uid,
                    run_image(rec)
                )));
            }
            None => {
                tracing::info!(uid = %rec.uid, image = %rec.plan.image, "image not present, pulling");
                self.runtime.pull_image(&rec.plan.image).await?;
                self.runtime
                    .image_env(&rec.plan.image)
                    .await?
                    .unwrap_or_default()
            }
        };
        self.runtime
            .ensure_network(
                &rec.uid.network_name(),
                &self.labels(rec),
                &self.settings.network_pool,
            )
            .await?;
        let spec = self.container_spec(rec, &image_env)?;
        match self.runtime.create(&spec).await {
            Ok(_) => Ok(()),
            Err(RuntimeError::Conflict(m)) => Err(ServiceError::Conflict(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the server's container and network.
    pub(super) async fn remove_container(&self, rec: &ServerRecord) -> Result<()> {
        self.runtime.remove(&rec.uid.container_name()).await?;
        self.runtime.remove_network(&rec.uid.network_name()).await?;
        Ok(())
    }
}

/// The image a server's container runs: the image a rollback pinned it to, else its plan's.
pub(super) fn run_image(rec: &ServerRecord) -> &str {
    rec.state.image_pin.as_deref().unwrap_or(&rec.plan.image)
}
