//! A real multi-node Docker Swarm on this one machine, for the cluster tests and
//! `peon bench cluster` (issue 12). Not part of the daemon: it runs `ip`, `unshare` and
//! `dockerd` (as root).
//!
//! [`start`] starts one Docker engine per node, each in its own network namespace on a private
//! /24 of its own (`10.250.<k>.0/24`, `k` claimed by creating the switch namespace, so two
//! clusters never share one), forms a swarm among them (node 1 the manager, the others
//! workers; the host's main engine is left alone), loads an image from the main engine into
//! each and gives each node its `gameslot` generic resources. The host reaches node addresses
//! through one veth into the switch namespace (`10.250.<k>.254`): routing, not a bridge in the
//! host's namespace. Dropping the [`Cluster`] tears everything down: swarm leave, each engine
//! stopped by its pid, anything left in the namespaces killed, namespaces and veths deleted,
//! the engines' cgroup folders and data roots removed.
//!
//! Facts behind the choices: `../shared/notes/swarm-on-one-machine.md`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{NodeState, SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::{ImportImageOptions, LeaveSwarmOptions};
use futures_util::StreamExt;

type Result<T> = std::result::Result<T, String>;

/// One node engine of a test cluster.
pub struct Node {
    /// The node's hostname, also its network namespace's name.
    pub name: String,
    /// Its address on the cluster's /24 (players reach its host-mode ports there).
    pub addr: String,
    /// Its engine's socket, `unix:///...` (a file on the shared filesystem).
    pub socket: String,
    /// Its own folder (engine data, config, log).
    pub dir: PathBuf,
    /// Its Swarm node id.
    pub id: String,
    /// Its `gameslot` generic resources.
    pub gameslots: u32,
    child: Option<Child>,
}

impl Node {
    /// A client on this node's own engine.
    pub fn docker(&self) -> Result<Docker> {
        connect(&self.socket)
    }
}

fn connect(socket: &str) -> Result<Docker> {
    Docker::connect_with_unix(
        socket.trim_start_matches("unix://"),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| format!("{socket}: {e}"))
}

/// A running swarm; dropping it removes everything it made.
pub struct Cluster {
    /// The `k` of `10.250.<k>.0/24`.
    pub k: u8,
    pub root: PathBuf,
    pub nodes: Vec<Node>,
    switch: String,
    host_if: String,
    /// How long starting took (engines up, swarm formed, image loaded).
    pub start_time: Duration,
    /// The `peon agent` of each node started by [`Cluster::start_agent`], by node index.
    agents: std::sync::Mutex<std::collections::HashMap<usize, Child>>,
}

/// Why this machine cannot run a swarm of namespaced engines, if it cannot.
pub fn unavailable() -> Option<String> {
    if std::env::var_os("PEON_TEST_NO_SWARM").is_some() {
        return Some("PEON_TEST_NO_SWARM is set".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces and extra engines need root)".into());
    }
    for tool in ["ip", "dockerd", "unshare", "mount"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "`{tool}` is not installed (scripts/ensure-deps installs it)"
            ));
        }
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Some("no /sys/fs/cgroup".into());
    }
    if !Path::new("/etc/docker").is_dir() {
        return Some("no /etc/docker to bind each engine's own over".into());
    }
    None
}

/// Starts a cluster with one node per entry of `gameslots` (the first is the manager) and
/// loads `image` (`main` is the engine it is exported from) into every node.
pub async fn start(gameslots: &[u32], main: &str, image: &str) -> Result<Cluster> {
    if let Some(why) = unavailable() {
        return Err(why);
    }
    let began = Instant::now();
    sweep_stale();
    let (k, switch) = claim_subnet()?;
    let root = PathBuf::from(format!("/tmp/peon-swarm-{k}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut c = Cluster {
        k,
        root: root.clone(),
        nodes: Vec::new(),
        switch: switch.clone(),
        host_if: format!("peonsw{k}h"),
        start_time: Duration::ZERO,
        agents: Default::default(),
    };
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    // The switch: a bridge inside its own namespace; the host's leg is a routed veth.
    ip(&["-n", &switch, "link", "set", "lo", "up"])?;
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &switch, "link", "set", "br0", "up"])?;
    ip(&[
        "link", "add", &c.host_if, "type", "veth", "peer", "name", "host", "netns", &switch,
    ])?;
    ip(&["-n", &switch, "link", "set", "host", "master", "br0", "up"])?;
    ip(&[
        "addr",
        "add",
        &format!("10.250.{k}.254/24"),
        "dev",
        &c.host_if,
    ])?;
    ip(&["link", "set", &c.host_if, "up"])?;

    for (i, slots) in gameslots.iter().enumerate() {
        let n = i + 1;
        let name = format!("peonsw{k}n{n}");
        let addr = format!("10.250.{k}.{n}");
        ip(&["netns", "add", &name])?;
        let port = format!("p{n}");
        ip(&[
            "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &name,
        ])?;
        ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        let dir = root.join(format!("n{n}"));
        let mut node = Node {
            name: name.clone(),
            addr,
            socket: format!("unix://{}/docker.sock", dir.display()),
            dir,
            id: String::new(),
            gameslots: *slots,
            child: None,
        };
        node.child = Some(spawn_engine(&node)?);
        c.nodes.push(node);
    }
    for node in &c.nodes {
        wait(
            Duration::from_secs(30),
            &format!("{} answers", node.name),
            || async {
                let d = connect(&node.socket).ok()?;
                d.version().await.ok().map(|_| ())
            },
        )
        .await?;
    }
    form_swarm(&mut c).await?;
    c.load_image(main, image).await?;
    c.start_time = began.elapsed();
    Ok(c)
}

/// Polls `probe` until it gives a value or `within` passes.
async fn wait<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {within:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// A client on the manager's engine.
    pub fn docker(&self) -> Result<Docker> {
        self.manager().docker()
    }

    /// The host's own address on the cluster's /24.
    pub fn host_addr(&self) -> String {
        format!("10.250.{}.254", self.k)
    }

    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Node `i`'s own data dir, where its agent keeps server directories (each node has its
    /// own, as each machine of a real cluster has its own disk).
    pub fn node_data(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data")
    }

    /// Starts a `peon agent` (the binary `exe`) in every node's namespace: see
    /// [`Cluster::start_agent`].
    pub async fn start_agents(&self, exe: &Path, secret_file: &Path, instance: &str) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_agent(i, exe, secret_file, instance).await?;
        }
        Ok(())
    }

    /// Starts (or starts again) node `i`'s agent: in the node's namespace, listening on the
    /// node's address at [`crate::agent::DEFAULT_PORT`], on the node's engine, with
    /// [`Cluster::node_data`] as its data dir and the cluster secret from `secret_file`; its
    /// output goes to `agent.log` in the node's folder. Returns once it answers a signed ping.
    pub async fn start_agent(
        &self,
        i: usize,
        exe: &Path,
        secret_file: &Path,
        instance: &str,
    ) -> Result<()> {
        let node = &self.nodes[i];
        let listen = format!("{}:{}", node.addr, crate::agent::DEFAULT_PORT);
        let log = std::fs::File::create(node.dir.join("agent.log"))
            .map_err(|e| format!("agent log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("agent log: {e}"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &node.name])
            .arg(exe)
            .args(["agent", "--listen", &listen, "--docker-host", &node.socket])
            .arg("--data-dir")
            .arg(self.node_data(i))
            .args(["--instance", instance])
            .env("PEON_CLUSTER_SECRET_FILE", secret_file)
            .env_remove("PEON_CLUSTER_SECRET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("start {}'s agent: {e}", node.name))?;
        if let Some(mut old) = self.agents().insert(i, child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let secret = crate::agent::auth::Secret::from_file(secret_file)
            .map_err(|e| format!("the cluster secret: {e}"))?;
        let client = crate::agent::client::AgentClient::new(&listen, secret)
            .map_err(|e| format!("agent client: {e}"))?;
        wait(Duration::from_secs(30), "a node's agent answers", || {
            let c = client.clone();
            async move { c.ping().await.ok().map(|_| ()) }
        })
        .await
    }

    /// Kills node `i`'s agent (SIGKILL) and waits for it to be gone.
    pub fn kill_agent(&self, i: usize) {
        if let Some(mut c) = self.agents().remove(&i) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn agents(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<usize, Child>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGKILLs node `i`'s engine (by the pid this harness started), as a node that dies
    /// would: its containers' shims survive (the game keeps running until the engine returns).
    pub fn kill_engine(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            // SAFETY: kill with a pid we started; no memory is touched.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Starts node `i`'s engine again (after [`Cluster::kill_engine`]), with the same config,
    /// data root and swarm state, and waits until it answers.
    pub async fn restart_engine(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Err(format!("node {i}'s engine is still running"));
        }
        let _ = std::fs::remove_file(node.socket.trim_start_matches("unix://"));
        let _ = std::fs::remove_file(node.dir.join("docker.pid"));
        node.child = Some(spawn_engine(node)?);
        let socket = node.socket.clone();
        // A short timeout per try: an engine that restores its swarm state may accept the
        // connection long before it answers. Generous overall: other swarms may be starting.
        wait(
            Duration::from_secs(120),
            "the restarted engine answers",
            || {
                let socket = socket.clone();
                async move {
                    let d = Docker::connect_with_unix(
                        socket.trim_start_matches("unix://"),
                        5,
                        bollard::API_DEFAULT_VERSION,
                    )
                    .ok()?;
                    d.version().await.ok().map(|_| ())
                }
            },
        )
        .await
    }

    /// Exports `image` from the engine at `main` (e.g. `unix:///var/run/docker.sock`) and
    /// loads it into every node's engine (node engines pull nothing: see the module's notes).
    pub async fn load_image(&self, main: &str, image: &str) -> Result<()> {
        let main = connect(main)?;
        let mut archive = Vec::new();
        let mut s = main.export_image(image);
        while let Some(chunk) = s.next().await {
            archive.extend_from_slice(&chunk.map_err(|e| format!("export {image}: {e}"))?);
        }
        let archive = bytes::Bytes::from(archive);
        for node in &self.nodes {
            let d = node.docker()?;
            let mut s = d.import_image(
                ImportImageOptions {
                    quiet: true,
                    ..Default::default()
                },
                bollard::body_full(archive.clone()),
                None,
            );
            while let Some(r) = s.next().await {
                r.map_err(|e| format!("load {image} into {}: {e}", node.name))?;
            }
        }
        Ok(())
    }

    /// Waits until the manager sees every node `ready`.
    pub async fn wait_ready(&self) -> Result<()> {
        let d = self.docker()?;
        let want = self.nodes.len();
        wait(Duration::from_secs(60), "every node Ready", || {
            let d = d.clone();
            async move {
                let nodes = d.list_nodes(None).await.ok()?;
                let ready = nodes
                    .iter()
                    .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY))
                    .count();
                (ready == want).then_some(())
            }
        })
        .await
    }

    /// The last lines of every node engine's log (for a failure's message).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let log = std::fs::read_to_string(node.dir.join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            out.push_str(&format!("--- {} dockerd.log (last lines) ---\n", node.name));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn teardown(&mut self) {
        for (_, mut c) in std::mem::take(&mut *self.agents()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let sockets: Vec<String> = self.nodes.iter().rev().map(|n| n.socket.clone()).collect();
        // Swarm leave on each engine (workers first), in a runtime of its own: Drop may run on
        // a runtime's thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for s in sockets {
                    if let Ok(d) = connect(&s) {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(15),
                            d.leave_swarm(Some(LeaveSwarmOptions { force: true })),
                        )
                        .await;
                    }
                }
            });
        })
        .join();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Ok(pid) = i32::try_from(child.id())
            {
                // SAFETY: kill with a pid we started; no memory is touched.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
            // Whatever is left in the namespace (a container's shim, a proxy) goes too.
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", &node.name])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: as above.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = quiet(&["netns", "del", &node.name]);
        }
        let _ = quiet(&["link", "del", &self.host_if]);
        let _ = quiet(&["netns", "del", &self.switch]);
        for node in &self.nodes {
            remove_cgroups(&node.name);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Removes what a killed run left behind: for each `/tmp/peon-swarm-<k>-<pid>` whose process
/// is gone, its engines (by their pidfiles), whatever still runs in its namespaces, the
/// namespaces, its host veth, cgroup folders and the folder.
fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("peon-swarm-") else {
            continue;
        };
        let Some((k, pid)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(k), Ok(pid)) = (k.parse::<u8>(), pid.parse::<i32>()) else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } == 0 {
            continue;
        }
        let dir = e.path();
        let mut nodes = Vec::new();
        for n in 1..=16 {
            let ndir = dir.join(format!("n{n}"));
            if !ndir.is_dir() {
                break;
            }
            // Only a dockerd started with this node's own config file (a pid may be reused).
            let config = ndir.join("daemon.json").display().to_string();
            if let Some(p) = std::fs::read_to_string(ndir.join("docker.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                && std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&config))
                    .unwrap_or(false)
            {
                // SAFETY: a pid from the stale run's pidfile; no memory is touched.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            nodes.push(format!("peonsw{k}n{n}"));
        }
        for ns in &nodes {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(p) = p.parse::<i32>() {
                        // SAFETY: as above.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
            }
            let _ = quiet(&["netns", "del", ns]);
            remove_cgroups(ns);
        }
        let _ = quiet(&["link", "del", &format!("peonsw{k}h")]);
        let _ = quiet(&["netns", "del", &format!("peonsw{k}s")]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Claims a free `k` by creating its switch namespace (creation fails when it exists).
fn claim_subnet() -> Result<(u8, String)> {
    let seed = std::process::id() as usize;
    for i in 0..200usize {
        let k = 20 + ((seed + i * 37) % 200) as u8;
        let switch = format!("peonsw{k}s");
        if quiet(&["netns", "add", &switch]).is_ok() {
            // Nothing on the host may route this /24 already.
            let routes = Command::new("ip")
                .args(["route", "show", &format!("10.250.{k}.0/24")])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if routes.is_empty() {
                return Ok((k, switch));
            }
            let _ = quiet(&["netns", "del", &switch]);
        }
    }
    Err("no free 10.250.<k>.0/24 for a cluster".into())
}

/// Runs `ip <args>`, failing with its message.
fn ip(args: &[&str]) -> Result<()> {
    quiet(args).map_err(|e| format!("ip {}: {e}", args.join(" ")))
}

fn quiet(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The shell lines that mount the host's cgroup hierarchies again (as /proc/mounts lists them)
/// inside a node's mount namespace.
fn cgroup_mounts() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut s = String::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, point, fstype, opts, ..] = f[..] else {
            continue;
        };
        if point == "/sys/fs/cgroup" {
            if fstype == "cgroup2" {
                s.push_str("mount -t cgroup2 cgroup2 /sys/fs/cgroup\n");
            } else {
                s.push_str("mount -t tmpfs cgroup /sys/fs/cgroup\n");
            }
            continue;
        }
        if !point.starts_with("/sys/fs/cgroup/") || !(fstype == "cgroup" || fstype == "cgroup2") {
            continue;
        }
        let keep: Vec<&str> = opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec"))
            .collect();
        let o = if keep.is_empty() {
            String::new()
        } else {
            format!("-o {}", keep.join(","))
        };
        s.push_str(&format!(
            "mkdir -p {point} && mount -t {fstype} {o} {fstype} {point}\n"
        ));
    }
    s
}

/// Starts a node's dockerd inside its namespace, with its own hostname, `/etc/docker`, config
/// file, data and exec roots, socket, cgroup parent and generic resources, and the cgroup
/// hierarchies mounted again (`ip netns exec` remounts /sys).
fn spawn_engine(node: &Node) -> Result<Child> {
    let dir = &node.dir;
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    for sub in ["etc", "data", "x"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io)?;
    }
    let config = serde_json::json!({
        "data-root": dir.join("data"),
        "exec-root": dir.join("x"),
        "pidfile": dir.join("docker.pid"),
        "hosts": [node.socket],
        "cgroup-parent": node.name,
        "storage-driver": "vfs",
        "node-generic-resources": [format!("gameslot={}", node.gameslots)],
        "log-driver": "json-file",
        "mtu": 1400
    });
    let config_path = dir.join("daemon.json");
    std::fs::write(&config_path, config.to_string()).map_err(io)?;
    let script = format!(
        "set -e\nhostname {name}\nmount --bind {etc} /etc/docker\n{cgroups}\
         export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1\nexec dockerd --config-file {config}\n",
        name = node.name,
        etc = dir.join("etc").display(),
        cgroups = cgroup_mounts(),
        config = config_path.display(),
    );
    // Appended to: an engine started again after a kill keeps its earlier log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .map_err(io)?;
    let log2 = log.try_clone().map_err(io)?;
    Command::new("ip")
        .args([
            "netns", "exec", &node.name, "unshare", "--uts", "sh", "-c", &script,
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("start dockerd of {}: {e}", node.name))
}

/// Node 1 inits the swarm, the others join as workers; records each node's id.
async fn form_swarm(c: &mut Cluster) -> Result<()> {
    let manager = c.nodes[0].docker()?;
    let maddr = c.nodes[0].addr.clone();
    manager
        .init_swarm(SwarmInitRequest {
            listen_addr: Some(format!("{maddr}:2377")),
            advertise_addr: Some(maddr.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("swarm init on node 1: {e}"))?;
    let token = manager
        .inspect_swarm()
        .await
        .map_err(|e| format!("swarm inspect: {e}"))?
        .join_tokens
        .and_then(|t| t.worker)
        .ok_or("no worker join token")?;
    for node in &c.nodes[1..] {
        node.docker()?
            .join_swarm(SwarmJoinRequest {
                listen_addr: Some(format!("{}:2377", node.addr)),
                advertise_addr: Some(node.addr.clone()),
                remote_addrs: Some(vec![format!("{maddr}:2377")]),
                join_token: Some(token.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("{} joins the swarm: {e}", node.name))?;
    }
    for node in &mut c.nodes {
        let info = node
            .docker()?
            .info()
            .await
            .map_err(|e| format!("{} info: {e}", node.name))?;
        node.id = info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("{} has no node id", node.name))?;
    }
    c.wait_ready().await
}

/// Removes a cgroup folder (and its children) from every hierarchy, after killing whatever
/// still runs in it: a game whose engine was killed keeps running under its shim, in its own
/// network namespace (not the node's), so only its cgroup still names it.
fn remove_cgroups(name: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = Vec::new();
        for root in &roots {
            procs_in(&root.join(name), &mut pids);
        }
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            // SAFETY: kill has no memory preconditions; these pids are in the test's cgroups.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for root in roots {
        let p = root.join(name);
        if p.is_dir() {
            rmdir_tree(&p);
        }
    }
}

/// Every pid in a cgroup folder and its children.
fn procs_in(p: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(p.join("cgroup.procs")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|t| t.parse::<i32>().ok()),
        );
    }
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.path().is_dir() {
                procs_in(&e.path(), out);
            }
        }
    }
}

fn rmdir_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.path().is_dir() {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}
