//! Swarm services for peon's servers (cluster mode): a server is a service with one task,
//! created with 0 replicas, started by scaling to 1 and stopped by scaling to 0.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, GenericResourcesInner, GenericResourcesInnerDiscreteResourceSpec, Limit, Mount,
    MountType, ResourceObject, Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{ListTasksOptions, UpdateServiceOptions};

use super::Engine;
use super::swarm::{service_info, task_info};
use crate::model::plan::Protocol;
use crate::runtime::cluster::{GAMESLOT, ServiceInfo, TaskInfo};
use crate::runtime::{ContainerSpec, Result, RuntimeError};

// The placement labels of a server's container spec (set by the service layer): its node
// becomes the `node.id==<id>` constraint, and it reserves one game slot.
use crate::runtime::labels::{GAMESLOT as GAMESLOT_LABEL, NODE as NODE_LABEL};

/// Label of a service keeping the container name peon asked for (service names must be DNS
/// components: no dots).
pub const CONTAINER_LABEL: &str = "peon.container";

/// The service name of a container name: lowercase letters, digits and `-` (a DNS
/// component), with a hash of the full name so that two names never meet.
pub fn service_name(container: &str) -> String {
    let mut base: String = container
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base.truncate(50);
    let hash = container.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{}-{:08x}", base.trim_matches('-'), hash as u32)
}

/// How long a task may stay pending (no node can take it) before a start fails.
const PENDING_LIMIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

/// The service spec of a server's container spec, with `replicas`.
pub(super) fn service_spec(spec: &ContainerSpec, replicas: i64) -> ServiceSpec {
    let mounts = spec
        .binds
        .iter()
        .filter_map(|b| {
            let (source, target) = b.split_once(':')?;
            Some(Mount {
                source: Some(source.to_owned()),
                target: Some(target.to_owned()),
                typ: Some(MountType::BIND),
                ..Default::default()
            })
        })
        .collect();
    let ports = spec
        .ports
        .iter()
        .map(|(port, proto)| EndpointPortConfig {
            protocol: Some(match proto {
                Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                _ => EndpointPortConfigProtocolEnum::TCP,
            }),
            target_port: Some(i64::from(*port)),
            published_port: Some(i64::from(*port)),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    let gameslots = spec.labels.contains_key(GAMESLOT_LABEL);
    let constraints: Vec<String> = spec
        .labels
        .get(NODE_LABEL)
        .map(|n| vec![format!("node.id=={n}")])
        .unwrap_or_default();
    let l = spec.limits;
    let mut labels = spec.labels.clone();
    labels.insert(CONTAINER_LABEL.to_owned(), spec.name.clone());
    ServiceSpec {
        name: Some(service_name(&spec.name)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(spec.image.clone()),
                labels: Some(spec.labels.clone()),
                hostname: Some(spec.hostname.clone()),
                env: Some(spec.env.clone()),
                user: spec.user.clone(),
                open_stdin: Some(true),
                mounts: Some(mounts),
                stop_grace_period: Some(
                    i64::try_from(spec.stop_timeout.as_nanos()).unwrap_or(i64::MAX),
                ),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: l.nano_cpus,
                    memory_bytes: l.memory_bytes,
                    pids: l.pids,
                }),
                reservations: Some(ResourceObject {
                    nano_cpus: l.nano_cpus,
                    memory_bytes: l.memory_bytes,
                    generic_resources: gameslots.then(|| {
                        vec![GenericResourcesInner {
                            discrete_resource_spec: Some(
                                GenericResourcesInnerDiscreteResourceSpec {
                                    kind: Some(GAMESLOT.to_owned()),
                                    value: Some(1),
                                },
                            ),
                            ..Default::default()
                        }]
                    }),
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(constraints),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Engine {
    /// One service by name; `None` when there is none.
    pub async fn service(&self, container: &str) -> Result<Option<Service>> {
        let name = &service_name(container);
        let c = self.client().await?;
        match c.inspect_service(name, None).await {
            Ok(s) => Ok(Some(s)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.fail(&format!("service {name}"), e).await),
        }
    }

    pub async fn service_by_name(&self, name: &str) -> Result<Option<ServiceInfo>> {
        Ok(self.service(name).await?.map(service_info))
    }

    /// Creates a server's service (0 replicas: not started).
    pub async fn create_service(&self, spec: &ContainerSpec) -> Result<String> {
        let c = self.client().await?;
        tracing::info!(uid = ?spec.labels.get(crate::runtime::labels::UID), node = ?spec.labels.get(NODE_LABEL), "creating service {}", spec.name);
        match c.create_service(service_spec(spec, 0), None).await {
            Ok(r) => Ok(r.id.unwrap_or_default()),
            Err(e) => Err(self.fail(&format!("create service {}", spec.name), e).await),
        }
    }

    /// The tasks of one service, newest first.
    pub async fn service_tasks(&self, container: &str) -> Result<Vec<TaskInfo>> {
        let name = &service_name(container);
        let c = self.client().await?;
        let filters = HashMap::from([("service".to_owned(), vec![name.to_owned()])]);
        let opts = ListTasksOptions {
            filters: Some(filters),
        };
        let mut tasks: Vec<TaskInfo> = match c.list_tasks(Some(opts)).await {
            Ok(t) => t.into_iter().map(task_info).collect(),
            Err(e) => return Err(self.fail(&format!("tasks of {name}"), e).await),
        };
        // Only the service's own tasks (the filter also matches name prefixes).
        if let Some(s) = self.service(container).await? {
            let id = s.id.unwrap_or_default();
            tasks.retain(|t| t.service_id == id);
        }
        tasks.sort_by_key(|t| std::cmp::Reverse(t.run_order()));
        Ok(tasks)
    }

    /// Sets a service's replicas. The manager may change a new service meanwhile (its
    /// endpoint is allocated after the create): an update "out of sequence" is read again and
    /// retried.
    pub async fn scale_service(&self, container: &str, replicas: i64) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.scale_once(container, replicas).await {
                Err(RuntimeError::Engine(m)) if m.contains("out of sequence") && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(POLL / 4).await;
                }
                r => return r,
            }
        }
    }

    async fn scale_once(&self, container: &str, replicas: i64) -> Result<()> {
        let name = &service_name(container);
        let c = self.client().await?;
        let s = self
            .service(container)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(format!("service {name}")))?;
        let version = s.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = s.spec.unwrap_or_default();
        // A service already at 1 whose task ended (a drain, an exit with restart none) gets
        // a new task only when its task template changes: bump ForceUpdate.
        if replicas > 0
            && let Some(t) = spec.task_template.as_mut()
        {
            t.force_update = Some(t.force_update.unwrap_or(0) + 1);
        }
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        });
        let opts = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        tracing::info!("scaling service {name} to {replicas}");
        match c.update_service(name, spec, opts, None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(&format!("scale service {name}"), e).await),
        }
    }

    /// Scales a service to 1 and waits for its task to run. A task that fails, is rejected or
    /// stays pending (no node can take it) fails the start with Swarm's reason, and the
    /// service goes back to 0.
    pub async fn start_service(&self, name: &str) -> Result<()> {
        if let Some(t) = self.service_tasks(name).await?.first()
            && t.state == "running"
            && t.desired_state == "running"
        {
            return Ok(());
        }
        let before: Vec<String> = self
            .service_tasks(name)
            .await?
            .into_iter()
            .map(|t| t.id)
            .collect();
        self.scale_service(name, 1).await?;
        let began = Instant::now();
        loop {
            let tasks = self.service_tasks(name).await?;
            if let Some(t) = tasks.iter().find(|t| !before.contains(&t.id)) {
                match t.state.as_str() {
                    "running" => return Ok(()),
                    "failed" | "rejected" | "complete" | "shutdown" | "orphaned" | "remove" => {
                        let _ = self.scale_service(name, 0).await;
                        return Err(RuntimeError::Engine(format!(
                            "{name} did not start on its node: {} ({})",
                            t.state, t.message
                        )));
                    }
                    "pending" if began.elapsed() > PENDING_LIMIT => {
                        let _ = self.scale_service(name, 0).await;
                        return Err(RuntimeError::Conflict(format!(
                            "{name} cannot run: its node cannot take it ({})",
                            t.message
                        )));
                    }
                    _ => {}
                }
            }
            if began.elapsed() > Duration::from_secs(120) {
                let _ = self.scale_service(name, 0).await;
                return Err(RuntimeError::Engine(format!(
                    "{name} did not start within 120 s"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Scales a service to 0 and waits (the stop grace and a margin) until no task runs.
    pub async fn stop_service(&self, name: &str, grace: Duration) -> Result<()> {
        if self.service(name).await?.is_none() {
            return Ok(());
        }
        self.scale_service(name, 0).await?;
        let deadline = Instant::now() + grace + Duration::from_secs(30);
        loop {
            let tasks = self.service_tasks(name).await?;
            if !tasks.iter().any(|t| t.is_live()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Engine(format!(
                    "{name} did not stop within {} s",
                    (grace + Duration::from_secs(30)).as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes a service; a missing one is not an error.
    pub async fn remove_service(&self, container: &str) -> Result<()> {
        let name = &service_name(container);
        let c = self.client().await?;
        tracing::info!("removing service {name}");
        match c.delete_service(name).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.fail(&format!("remove service {name}"), e).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dns_components_and_distinct() {
        let a = service_name("peon.warcamp.my_game.a");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{a}"
        );
        assert!(a.len() <= 63);
        assert_ne!(a, service_name("peon.warcamp.my-game.a"));
        assert_eq!(a, service_name("peon.warcamp.my_game.a"));
    }
}
