//! Containers: list, inspect, create, start, stop, kill, remove, logs, limits.

use std::collections::HashMap;

use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{
    ContainerDetails, ContainerInfo, ContainerSpec, Engine, PublishedPort, Result, RuntimeError,
};
use crate::runtime::Limits;

impl Engine {
    /// All containers (running or not) that carry `label=value`.
    pub async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<ContainerInfo>> {
        let filters = HashMap::from([("label", vec![format!("{label}={value}")])]);
        self.list(true, Some(&filters)).await
    }

    /// Every running container on the engine, peon's or not, for host port checks.
    pub async fn list_running(&self) -> Result<Vec<ContainerInfo>> {
        self.list(false, None).await
    }

    async fn list(
        &self,
        all: bool,
        filters: Option<&HashMap<&str, Vec<String>>>,
    ) -> Result<Vec<ContainerInfo>> {
        let c = self.client().await?;
        let mut b = ListContainersOptionsBuilder::default().all(all);
        if let Some(f) = filters {
            b = b.filters(f);
        }
        let list = match c.list_containers(Some(b.build())).await {
            Ok(l) => l,
            Err(e) => return Err(self.fail("list containers", e).await),
        };
        Ok(list
            .into_iter()
            .map(|s| ContainerInfo {
                id: s.id.unwrap_or_default(),
                name: s
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                image: s.image.unwrap_or_default(),
                state: s.state.map(|s| s.to_string()).unwrap_or_default(),
                status: s.status.unwrap_or_default(),
                labels: s.labels.unwrap_or_default(),
                ports: s
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| {
                        Some(PublishedPort {
                            host_ip: p.ip.unwrap_or_default(),
                            host_port: p.public_port?,
                            container_port: p.private_port,
                            protocol: p.typ.map(|t| t.to_string()).unwrap_or_default(),
                        })
                    })
                    .collect(),
            })
            .collect())
    }

    /// Inspects a container by name; `None` when it does not exist.
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerDetails>> {
        let c = self.client().await?;
        let r = match c
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return match self.fail("inspect container", e).await {
                    RuntimeError::NotFound(_) => Ok(None),
                    e => Err(e),
                };
            }
        };
        let state = r.state.unwrap_or_default();
        let restart_policy = r
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.as_ref())
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .unwrap_or_default();
        let limits = r
            .host_config
            .as_ref()
            .map_or(Limits::default(), |h| Limits {
                memory_bytes: h.memory.filter(|m| *m > 0),
                nano_cpus: h.nano_cpus.filter(|n| *n > 0),
                pids: h.pids_limit.filter(|p| *p > 0),
            });
        let stdin_open = r
            .config
            .as_ref()
            .and_then(|c| c.open_stdin)
            .unwrap_or(false);
        Ok(Some(ContainerDetails {
            limits,
            stdin_open,
            restart_policy,
            id: r.id.unwrap_or_default(),
            name: r
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image: r
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            image_id: r.image.clone().unwrap_or_default(),
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            restart_count: r.restart_count.unwrap_or(0),
            started_at: state.started_at,
            finished_at: state.finished_at,
            labels: r.config.and_then(|c| c.labels).unwrap_or_default(),
        }))
    }

    /// Creates a container from `spec`; it is not started.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String> {
        let c = self.client().await?;
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (port, proto) in &spec.ports {
            port_bindings.insert(
                format!("{port}/{}", proto.as_str()),
                Some(vec![PortBinding {
                    host_ip: Some(spec.publish_ip.clone()),
                    host_port: Some(port.to_string()),
                }]),
            );
        }
        let body = ContainerCreateBody {
            hostname: Some(spec.hostname.clone()),
            user: spec.user.clone(),
            image: Some(spec.image.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            exposed_ports: Some(port_bindings.keys().cloned().collect()),
            open_stdin: Some(true),
            stdin_once: Some(false),
            tty: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            stop_timeout: Some(i64::try_from(spec.stop_timeout.as_secs()).unwrap_or(i64::MAX)),
            host_config: Some(HostConfig {
                binds: Some(spec.binds.clone()),
                port_bindings: Some(port_bindings),
                network_mode: Some(spec.network.clone()),
                // peon is the one authority for restarts.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                memory: spec.limits.memory_bytes,
                // No swap beyond the memory limit, so the limit means what it says.
                memory_swap: spec.limits.memory_bytes,
                nano_cpus: spec.limits.nano_cpus,
                pids_limit: spec.limits.pids,
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        match c.create_container(Some(opts), body).await {
            Ok(r) => {
                tracing::info!(container = %spec.name, id = %r.id, "docker: container created");
                Ok(r.id)
            }
            Err(e) => Err(match self.fail("create container", e).await {
                RuntimeError::NotFound(m) => RuntimeError::ImageUnavailable {
                    image: spec.image.clone(),
                    reason: m,
                },
                e => e,
            }),
        }
    }

    /// Starts a container; starting a running container is not an error.
    pub async fn start_container(&self, name: &str) -> Result<()> {
        let c = self.client().await?;
        match c.start_container(name, None::<StartContainerOptions>).await {
            Ok(()) => {
                tracing::info!(container = %name, "docker: container started");
                Ok(())
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.fail("start container", e).await),
        }
    }

    /// Stops a container: `signal` (SIGTERM when `None`), then SIGKILL after `grace`. The call
    /// returns once the container has exited. Stopping a stopped container is not an error.
    pub async fn stop_container(
        &self,
        name: &str,
        signal: Option<&str>,
        grace: Duration,
    ) -> Result<()> {
        if let Some(sig) = signal.filter(|s| !matches!(*s, "TERM" | "SIGTERM" | "15")) {
            // The engine's stop call takes a signal only from API 1.42 on: send it, wait, kill.
            match self.kill_container(name, sig).await {
                Ok(()) => {}
                Err(RuntimeError::Conflict(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
            if tokio::time::timeout(grace, self.wait_exit(name))
                .await
                .is_ok()
            {
                return Ok(());
            }
            return match self.kill_container(name, "KILL").await {
                Ok(()) | Err(RuntimeError::Conflict(_)) => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), self.wait_exit(name)).await;
                    Ok(())
                }
                Err(e) => Err(e),
            };
        }
        let c = self.client().await?;
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let opts = StopContainerOptionsBuilder::default().t(t).build();
        match c.stop_container(name, Some(opts)).await {
            Ok(()) => {
                tracing::info!(container = %name, "docker: container stopped");
                Ok(())
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.fail("stop container", e).await),
        }
    }

    /// Waits until the container is not running (returns at once when it is not).
    async fn wait_exit(&self, name: &str) {
        let Ok(c) = self.client().await else { return };
        let opts = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut s = c.wait_container(name, Some(opts));
        let _ = s.next().await;
    }

    /// Sends `signal` to the container's main process. A container that is not running is a
    /// `Conflict`.
    pub async fn kill_container(&self, name: &str, signal: &str) -> Result<()> {
        let c = self.client().await?;
        let opts = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        match c.kill_container(name, Some(opts)).await {
            Ok(()) => {
                tracing::info!(container = %name, signal, "docker: signal sent");
                Ok(())
            }
            Err(e) => Err(self.fail("kill container", e).await),
        }
    }

    /// Changes the limits of a container in place (running or not).
    pub async fn update_limits(&self, name: &str, limits: Limits) -> Result<()> {
        let c = self.client().await?;
        let body = ContainerUpdateBody {
            memory: limits.memory_bytes,
            memory_swap: limits.memory_bytes,
            nano_cpus: limits.nano_cpus,
            pids_limit: limits.pids,
            ..Default::default()
        };
        match c.update_container(name, body).await {
            Ok(()) => {
                tracing::info!(container = %name, ?limits, "docker: limits updated");
                Ok(())
            }
            Err(e) => Err(self.fail("update container", e).await),
        }
    }

    /// Removes a container (forcefully, with its anonymous volumes). A missing container is not
    /// an error.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        let c = self.client().await?;
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match c.remove_container(name, Some(opts)).await {
            Ok(()) => {
                tracing::info!(container = %name, "docker: container removed");
                Ok(())
            }
            Err(e) => match self.fail("remove container", e).await {
                RuntimeError::NotFound(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// The last `tail` lines of a container's output (stdout and stderr).
    pub async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        let c = self.client().await?;
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let mut stream = c.logs(name, Some(opts));
        let mut text = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(out) => text.extend_from_slice(&out.into_bytes()),
                Err(e) => return Err(self.fail("container logs", e).await),
            }
        }
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect())
    }
}
