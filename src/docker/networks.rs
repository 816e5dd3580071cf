//! Networks: one bridge network per server, labelled as peon's.

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::InspectNetworkOptions;

use super::{DockerError, Engine, Result};

impl Engine {
    /// Creates the bridge network `name` unless it exists already.
    pub async fn ensure_network(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        let c = self.client().await?;
        match c.inspect_network(name, None::<InspectNetworkOptions>).await {
            Ok(_) => return Ok(()),
            Err(e) => match self.fail("inspect network", e).await {
                DockerError::NotFound(_) => {}
                e => return Err(e),
            },
        }
        let req = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match c.create_network(req).await {
            Ok(_) => {
                tracing::info!(network = %name, "docker: network created");
                Ok(())
            }
            // Created concurrently by someone else: it exists, which is what we want.
            Err(e) => match self.fail("create network", e).await {
                DockerError::Conflict(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes a network; a missing one is not an error.
    pub async fn remove_network(&self, name: &str) -> Result<()> {
        let c = self.client().await?;
        match c.remove_network(name).await {
            Ok(()) => {
                tracing::info!(network = %name, "docker: network removed");
                Ok(())
            }
            Err(e) => match self.fail("remove network", e).await {
                DockerError::NotFound(_) => Ok(()),
                e => Err(e),
            },
        }
    }
}

impl Engine {
    /// Names of the networks that carry `label=value`.
    pub async fn networks_labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        let filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
        let opts = bollard::query_parameters::ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        match c.list_networks(Some(opts)).await {
            Ok(l) => Ok(l.into_iter().filter_map(|n| n.name).collect()),
            Err(e) => Err(self.fail("list networks", e).await),
        }
    }
}
