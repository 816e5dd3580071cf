//! Networks: one bridge network per server, labelled as peon's.

use std::collections::HashMap;

use std::net::Ipv4Addr;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};

use super::{Engine, Result, RuntimeError};

impl Engine {
    /// Creates the bridge network `name` unless it exists already. The engine's default address
    /// pools hold only a few dozen networks; when they are used up, a /28 subnet is taken from
    /// `fallback_pool` (CIDR, e.g. `10.213.0.0/16`) instead.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        fallback_pool: &str,
    ) -> Result<()> {
        let c = self.client().await?;
        match c.inspect_network(name, None::<InspectNetworkOptions>).await {
            Ok(_) => return Ok(()),
            Err(e) => match self.fail("inspect network", e).await {
                RuntimeError::NotFound(_) => {}
                e => return Err(e),
            },
        }
        match self.create_network(name, labels, None).await {
            Err(RuntimeError::Engine(m)) | Err(RuntimeError::NotFound(m))
                if m.contains("non-overlapping") =>
            {
                let _one_at_a_time = self.net_alloc.lock().await;
                self.create_in_pool(name, labels, fallback_pool).await
            }
            r => r,
        }
    }

    async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        subnet: Option<String>,
    ) -> Result<()> {
        let c = self.client().await?;
        let req = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone()),
            ipam: subnet.map(|s| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(s),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match c.create_network(req).await {
            Ok(_) => {
                tracing::info!(network = %name, "docker: network created");
                Ok(())
            }
            // Created concurrently by someone else: it exists, which is what we want.
            Err(e) => match self.fail("create network", e).await {
                RuntimeError::Conflict(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Creates the network on the first free /28 of `pool`.
    async fn create_in_pool(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        pool: &str,
    ) -> Result<()> {
        let (base, len) = parse_cidr(pool)
            .ok_or_else(|| RuntimeError::Engine(format!("invalid network pool {pool:?}")))?;
        let c = self.client().await?;
        let used: Vec<(u32, u8)> = match c.list_networks(None::<ListNetworksOptions>).await {
            Ok(l) => l
                .into_iter()
                .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
                .filter_map(|cfg| cfg.subnet.as_deref().and_then(parse_cidr))
                .collect(),
            Err(e) => return Err(self.fail("list networks", e).await),
        };
        for block in free_blocks(base, len, SUBNET_LEN, &used) {
            let subnet = format!("{}/{SUBNET_LEN}", Ipv4Addr::from(block));
            match self.create_network(name, labels, Some(subnet)).await {
                Err(RuntimeError::Engine(m)) if m.contains("overlap") => continue,
                r => return r,
            }
        }
        Err(RuntimeError::Engine(format!(
            "no free /{SUBNET_LEN} subnet left in the network pool {pool}"
        )))
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
                RuntimeError::NotFound(_) => Ok(()),
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

/// Prefix length of the subnets peon takes from its own pool: 14 addresses per server.
const SUBNET_LEN: u8 = 28;

/// `a.b.c.d/n` → (network address, n).
fn parse_cidr(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(ip) & mask(len), len))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    a.0 & m == b.0 & m
}

/// The /`sub` blocks of `base/len` that overlap none of `used`.
fn free_blocks(base: u32, len: u8, sub: u8, used: &[(u32, u8)]) -> impl Iterator<Item = u32> + '_ {
    let count: u64 = if sub >= len { 1u64 << (sub - len) } else { 0 };
    let step = 1u64 << (32 - u32::from(sub));
    (0..count)
        .map(move |i| (u64::from(base) + i * step) as u32)
        .filter(move |b| !used.iter().any(|u| overlaps((*b, sub), *u)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_free_subnets_of_the_pool() {
        let pool = parse_cidr("10.213.0.0/16").unwrap();
        let used = vec![
            parse_cidr("10.213.0.0/28").unwrap(),
            parse_cidr("10.213.0.32/27").unwrap(),
        ];
        let free: Vec<String> = free_blocks(pool.0, pool.1, 28, &used)
            .take(2)
            .map(|b| Ipv4Addr::from(b).to_string())
            .collect();
        assert_eq!(free, ["10.213.0.16", "10.213.0.64"]);
        assert_eq!(free_blocks(pool.0, pool.1, 28, &[]).count(), 4096);
        // A used /8 covering the pool leaves nothing.
        assert_eq!(
            free_blocks(pool.0, pool.1, 28, &[parse_cidr("10.0.0.0/8").unwrap()]).count(),
            0
        );
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }
}
