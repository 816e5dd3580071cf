//! [`ClusterEngine`]: the runtime seam in cluster mode. A server's "container" is a Swarm
//! service with one task: create makes the service (0 replicas), start and stop scale it,
//! inspect reads the service and its newest task, the event stream is made by polling the
//! manager's tasks. Container-level work (attach, logs, stats, kill, limits in place) needs
//! the engine of the node that runs the task: it goes to the per-node [`NodeDelegate`]
//! (peon's agent), and fails with a clear message while none is wired.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

use super::Engine;
use crate::runtime::NodeContainers;
use crate::runtime::cluster::{NodeDelegate, ServiceInfo, TaskInfo};
use crate::runtime::{
    Attached, ContainerDetails, ContainerInfo, ContainerSpec, EngineInfo, EventAction, Limits,
    PublishedPort, Result, RtFuture, Runtime, RuntimeError, RuntimeEvent, Stats,
};

/// How often the event stream polls the manager's tasks.
const EVENT_POLL: Duration = Duration::from_millis(500);

/// The runtime of cluster mode, on a Swarm manager's engine.
pub struct ClusterEngine {
    manager: Arc<Engine>,
    delegate: OnceLock<Arc<dyn NodeDelegate>>,
}

impl ClusterEngine {
    pub fn new(manager: Arc<Engine>) -> Self {
        ClusterEngine {
            manager,
            delegate: OnceLock::new(),
        }
    }

    /// Wires the per-node delegate (peon's agents) for container-level work.
    pub fn set_delegate(&self, d: Arc<dyn NodeDelegate>) {
        let _ = self.delegate.set(d);
    }

    /// The node (its agent) that runs a service's task, and the name to ask it for (the
    /// agent finds a server's task container by its `peon.uid` label).
    async fn on_node(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<(Arc<dyn NodeContainers>, String)>> {
        let tasks = self.manager.service_tasks(name).await?;
        let Some(t) = tasks.into_iter().find(|t| t.state == "running") else {
            return Ok(None);
        };
        match self.delegate.get().and_then(|d| d.for_node(&t.node_id)) {
            Some(rt) => Ok(Some((rt, name.to_owned()))),
            None => Err(RuntimeError::Engine(format!(
                "{what} of {name} needs peon's agent on node {} (not connected)",
                t.node_id
            ))),
        }
    }
}

/// A task's state as a container state.
fn container_state(t: Option<&TaskInfo>) -> &'static str {
    match t.map(|t| t.state.as_str()) {
        Some("running") => "running",
        Some("complete" | "failed" | "shutdown" | "rejected" | "orphaned" | "remove") => "exited",
        Some(_) => "created",
        None => "created",
    }
}

fn ports_of(s: &ServiceInfo) -> Vec<PublishedPort> {
    s.ports
        .iter()
        .map(|(p, proto)| PublishedPort {
            host_ip: "0.0.0.0".into(),
            host_port: *p,
            container_port: *p,
            protocol: proto.clone(),
        })
        .collect()
}

/// The container name peon gave a service.
fn name_of(s: &ServiceInfo) -> String {
    s.label(super::services::CONTAINER_LABEL)
        .map(str::to_owned)
        .unwrap_or_else(|| s.name.clone())
}

fn info_of(s: &ServiceInfo, t: Option<&TaskInfo>, image: &str) -> ContainerInfo {
    let state = container_state(t);
    ContainerInfo {
        id: s.id.clone(),
        name: name_of(s),
        image: image.to_owned(),
        state: state.to_owned(),
        status: t
            .map(|t| format!("task {} on node {}: {}", t.state, t.node_id, t.message))
            .unwrap_or_default(),
        labels: s.labels.clone(),
        ports: if state == "running" {
            ports_of(s)
        } else {
            Vec::new()
        },
    }
}

impl ClusterEngine {
    async fn list_labelled(&self, label: &str, value: &str) -> Result<Vec<ContainerInfo>> {
        let services = self.manager.services_labelled(label, value).await?;
        let tasks = self.manager.list_tasks().await?;
        Ok(services
            .iter()
            .map(|s| info_of(s, newest(&tasks, &s.id), ""))
            .collect())
    }

    async fn list_running(&self) -> Result<Vec<ContainerInfo>> {
        let services = self.manager.services_labelled_any().await?;
        let tasks = self.manager.list_tasks().await?;
        Ok(services
            .iter()
            .filter_map(|s| {
                let t = newest(&tasks, &s.id)?;
                (t.state == "running").then(|| info_of(s, Some(t), ""))
            })
            .collect())
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerDetails>> {
        let Some(raw) = self.manager.service(name).await? else {
            return Ok(None);
        };
        let image = raw
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let limits = raw
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .map(|l| Limits {
                memory_bytes: l.memory_bytes,
                nano_cpus: l.nano_cpus,
                pids: l.pids,
            })
            .unwrap_or_default();
        let s = super::swarm::service_info(raw);
        let tasks = self.manager.service_tasks(name).await?;
        let t = tasks.first();
        let state = container_state(t);
        let running = state == "running";
        Ok(Some(ContainerDetails {
            id: s.id.clone(),
            name: name_of(&s),
            image: image.clone(),
            image_id: image,
            state: state.to_owned(),
            running,
            exit_code: t.and_then(|t| t.exit_code),
            oom_killed: false,
            restart_count: 0,
            // One task is one run: its creation time tells runs apart (a task that never got a
            // container never ran).
            started_at: t
                .filter(|t| t.container_id.is_some())
                .map(|t| t.created.clone()),
            finished_at: t.filter(|_| state == "exited").map(|t| t.timestamp.clone()),
            labels: s.labels.clone(),
            stdin_open: true,
            restart_policy: "no".into(),
            limits,
        }))
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        self.manager.stop_service(name, grace).await
    }

    async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        match self.on_node(name, "kill").await {
            Ok(Some((rt, id))) => rt.kill(&id, signal).await,
            Ok(None) => Ok(()),
            // Without an agent a kill is a stop without grace.
            Err(_) => self.manager.stop_service(name, Duration::ZERO).await,
        }
    }

    async fn logs(&self, name: &str, tail: usize) -> Result<Vec<String>> {
        match self.on_node(name, "logs").await? {
            Some((rt, id)) => rt.logs(&id, tail).await,
            None => Ok(Vec::new()),
        }
    }

    async fn attach(&self, name: &str) -> Result<Attached> {
        match self.on_node(name, "the console").await? {
            Some((rt, id)) => rt.attach(&id).await,
            None => Err(RuntimeError::NotFound(format!("{name} is not running"))),
        }
    }

    async fn stats(&self, name: &str) -> Result<Option<Stats>> {
        match self.on_node(name, "stats").await {
            Ok(Some((rt, id))) => rt.stats(&id).await,
            _ => Ok(None),
        }
    }

    async fn update_limits(&self, name: &str, limits: Limits) -> Result<()> {
        // A Swarm task's limits belong to its service: changing them there replaces the task
        // (a restart), which is not what an in-place change promises.
        let _ = limits;
        Err(RuntimeError::Engine(format!(
            "limits of {name} cannot change in place in cluster mode (they are its service's reservations)"
        )))
    }

    /// The event stream: the manager's tasks polled; a task of one of peon's services that
    /// becomes `running` is a start, one that leaves `running` a die with its exit code, a
    /// service that disappears a destroy. Only changes after the first poll are reported (a
    /// resync reads the state itself).
    async fn events(
        &self,
        label: &str,
        value: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent>>> {
        let manager = self.manager.clone();
        let (label, value) = (label.to_owned(), value.to_owned());
        let first = snapshot(&manager, &label, &value).await?;
        let s = stream::unfold(
            (manager, label, value, first, Vec::<RuntimeEvent>::new()),
            |(m, label, value, mut seen, mut queue)| async move {
                loop {
                    if let Some(e) = queue.pop() {
                        return Some((Ok(e), (m, label, value, seen, queue)));
                    }
                    tokio::time::sleep(EVENT_POLL).await;
                    match snapshot(&m, &label, &value).await {
                        Ok(now) => {
                            queue = diff(&seen, &now);
                            queue.reverse();
                            seen = now;
                        }
                        Err(e) => return Some((Err(e), (m, label, value, seen, queue))),
                    }
                }
            },
        );
        Ok(s.boxed())
    }
}

/// What the event poller compares: per service name, its labels and newest task.
type Snapshot = HashMap<String, (ServiceInfo, Option<TaskInfo>)>;

async fn snapshot(m: &Engine, label: &str, value: &str) -> Result<Snapshot> {
    let services = m.services_labelled(label, value).await?;
    let tasks = m.list_tasks().await?;
    Ok(services
        .into_iter()
        .map(|s| {
            let t = newest(&tasks, &s.id).cloned();
            (name_of(&s), (s, t))
        })
        .collect())
}

fn newest<'a>(tasks: &'a [TaskInfo], service_id: &str) -> Option<&'a TaskInfo> {
    tasks
        .iter()
        .filter(|t| t.service_id == service_id)
        .max_by_key(|t| t.run_order())
}

fn event(s: &ServiceInfo, t: Option<&TaskInfo>, action: EventAction) -> RuntimeEvent {
    RuntimeEvent {
        action,
        container_id: t.map(|t| t.id.clone()).unwrap_or_else(|| s.id.clone()),
        container: name_of(s),
        labels: s.labels.clone(),
        time_nano: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
    }
}

/// The events between two snapshots, in order.
fn diff(before: &Snapshot, now: &Snapshot) -> Vec<RuntimeEvent> {
    let mut out = Vec::new();
    for (name, (s, t)) in now {
        let was = before.get(name).and_then(|(_, t)| t.as_ref());
        let running = |t: Option<&TaskInfo>| t.is_some_and(|t| t.state == "running");
        let same_task = was.map(|w| &w.id) == t.as_ref().map(|t| &t.id);
        if running(was) && (!same_task || !running(t.as_ref())) {
            out.push(event(
                s,
                was,
                EventAction::Die {
                    exit_code: if same_task {
                        t.as_ref().and_then(|t| t.exit_code)
                    } else {
                        None
                    },
                },
            ));
        }
        if running(t.as_ref()) && (!same_task || !running(was)) {
            out.push(event(s, t.as_ref(), EventAction::Start));
        }
    }
    for (name, (s, t)) in before {
        if !now.contains_key(name) {
            out.push(event(s, t.as_ref(), EventAction::Destroy));
        }
    }
    out
}

impl Runtime for ClusterEngine {
    fn host(&self) -> &str {
        self.manager.host()
    }
    fn info(&self) -> RtFuture<'_, EngineInfo> {
        Box::pin(self.manager.info())
    }
    fn list_labelled<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, Vec<ContainerInfo>> {
        Box::pin(ClusterEngine::list_labelled(self, label, value))
    }
    fn list_running(&self) -> RtFuture<'_, Vec<ContainerInfo>> {
        Box::pin(ClusterEngine::list_running(self))
    }
    fn inspect<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<ContainerDetails>> {
        Box::pin(ClusterEngine::inspect(self, name))
    }
    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> RtFuture<'a, String> {
        Box::pin(self.manager.create_service(spec))
    }
    fn start<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.manager.start_service(name))
    }
    fn stop<'a>(
        &'a self,
        name: &'a str,
        _signal: Option<&'a str>,
        grace: Duration,
    ) -> RtFuture<'a, ()> {
        Box::pin(ClusterEngine::stop(self, name, grace))
    }
    fn kill<'a>(&'a self, name: &'a str, signal: &'a str) -> RtFuture<'a, ()> {
        Box::pin(ClusterEngine::kill(self, name, signal))
    }
    fn remove<'a>(&'a self, name: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.manager.remove_service(name))
    }
    fn logs<'a>(&'a self, name: &'a str, tail: usize) -> RtFuture<'a, Vec<String>> {
        Box::pin(ClusterEngine::logs(self, name, tail))
    }
    fn attach<'a>(&'a self, name: &'a str) -> RtFuture<'a, Attached> {
        Box::pin(ClusterEngine::attach(self, name))
    }
    fn stats<'a>(&'a self, name: &'a str) -> RtFuture<'a, Option<Stats>> {
        Box::pin(ClusterEngine::stats(self, name))
    }
    fn update_limits<'a>(&'a self, name: &'a str, limits: Limits) -> RtFuture<'a, ()> {
        Box::pin(ClusterEngine::update_limits(self, name, limits))
    }
    fn events<'a>(
        &'a self,
        _since: i64,
        label: &'a str,
        value: &'a str,
    ) -> RtFuture<'a, BoxStream<'static, Result<RuntimeEvent>>> {
        Box::pin(ClusterEngine::events(self, label, value))
    }
    fn image_env<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<Vec<String>>> {
        Box::pin(self.manager.image_env(image))
    }
    fn image_size<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<u64>> {
        Box::pin(self.manager.image_size(image))
    }
    fn pull_image<'a>(&'a self, image: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.manager.pull_image(image))
    }
    fn image_id<'a>(&'a self, image: &'a str) -> RtFuture<'a, Option<String>> {
        Box::pin(self.manager.image_id(image))
    }
    fn tag_image<'a>(&'a self, source: &'a str, target: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.manager.tag_image(source, target))
    }
    fn remove_image<'a>(&'a self, image: &'a str) -> RtFuture<'a, ()> {
        Box::pin(self.manager.remove_image(image))
    }
    /// Services need no per-server bridge network (host-mode ports); a no-op.
    fn ensure_network<'a>(
        &'a self,
        _name: &'a str,
        _labels: &'a HashMap<String, String>,
        _fallback_pool: &'a str,
    ) -> RtFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn remove_network<'a>(&'a self, _name: &'a str) -> RtFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::cluster::Reservation;

    fn svc() -> ServiceInfo {
        ServiceInfo {
            id: "s1".into(),
            name: "peon.g.a".into(),
            labels: HashMap::new(),
            replicas: 1,
            pinned_to: Some("n1".into()),
            reservation: Reservation::default(),
            ports: vec![],
        }
    }

    fn task(id: &str, state: &str, exit: Option<i64>) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            service_id: "s1".into(),
            node_id: "n1".into(),
            state: state.into(),
            desired_state: "running".into(),
            exit_code: exit,
            message: String::new(),
            container_id: None,
            created: "c".into(),
            timestamp: "t".into(),
            ports: vec![],
        }
    }

    fn snap(t: Option<TaskInfo>) -> Snapshot {
        HashMap::from([("peon.g.a".to_owned(), (svc(), t))])
    }

    #[test]
    fn task_changes_become_start_and_die_events() {
        let pending = snap(Some(task("t1", "starting", None)));
        let running = snap(Some(task("t1", "running", None)));
        let failed = snap(Some(task("t1", "failed", Some(3))));
        let e = diff(&pending, &running);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].action, EventAction::Start);
        let e = diff(&running, &failed);
        assert_eq!(e[0].action, EventAction::Die { exit_code: Some(3) });
        assert!(diff(&running, &running).is_empty());
        let e = diff(&running, &HashMap::new());
        assert_eq!(e[0].action, EventAction::Destroy);
    }

    #[test]
    fn the_newest_task_is_the_last_made_not_the_last_changed() {
        let mut old = task("t1", "shutdown", Some(0));
        old.created = "2026-12-03T18:06:43.2Z".into();
        // The old task's shutdown reported after the new task was made.
        old.timestamp = "2026-12-03T18:06:46.9Z".into();
        let mut new = task("t2", "running", None);
        new.created = "2026-12-03T18:06:46.574127346Z".into();
        new.timestamp = "2026-12-03T18:06:46.80Z".into();
        let tasks = vec![new.clone(), old.clone()];
        assert_eq!(newest(&tasks, "s1").map(|t| t.id.as_str()), Some("t2"));
        let tasks = vec![old, new];
        assert_eq!(newest(&tasks, "s1").map(|t| t.id.as_str()), Some("t2"));
    }
}
