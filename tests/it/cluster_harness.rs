//! A real multi-node Docker Swarm on this one machine, for the cluster tests (issue 12).
//!
//! [`Cluster::start`] starts one Docker engine per node, each in its own network namespace on a
//! private /24 of its own (`10.250.<k>.0/24`, `k` claimed by creating the switch namespace, so
//! two harnesses never share one), forms a swarm among them (node 1 the manager, the others
//! workers; the host's main engine is left alone), loads the stand-in game image into each and
//! gives each node its `gameslot` generic resources. The host reaches node addresses through
//! one veth into the switch namespace (`10.250.<k>.254`): routing, not a bridge in the host's
//! namespace. Dropping the [`Cluster`] tears everything down: swarm leave, each engine stopped
//! by its pid, anything left in the namespaces killed, namespaces and veths deleted, the
//! engines' cgroup folders and data roots removed.
//!
//! Facts behind the choices: `/work/shared/notes/swarm-on-one-machine.md`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{SwarmInitRequest, SwarmJoinRequest};
use bollard::query_parameters::{ImportImageOptions, LeaveSwarmOptions};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::support::{self, GAME_IMAGE};

/// One node engine of a test cluster.
pub struct Node {
    /// The node's hostname, also its network namespace's name.
    pub name: String,
    /// Its address on the cluster's /24 (players reach its host-mode ports there).
    pub addr: String,
    /// Its engine's socket, `unix:///...` (a file on the shared filesystem).
    pub socket: String,
    /// Its own folder (engine data, config, and bind-mount sources of its servers).
    pub dir: PathBuf,
    /// Its Swarm node id.
    pub id: String,
    /// Its `gameslot` generic resources.
    pub gameslots: u32,
    cgroup_parent: String,
    child: Option<Child>,
}

impl Node {
    /// A client on this node's own engine.
    pub fn docker(&self) -> Docker {
        let path = self.socket.trim_start_matches("unix://");
        Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION)
            .expect("client on the node's engine")
    }
}

/// A running test swarm; dropping it removes everything it made.
pub struct Cluster {
    /// The `k` of `10.250.<k>.0/24`.
    pub k: u8,
    pub root: PathBuf,
    pub nodes: Vec<Node>,
    switch: String,
    host_if: String,
    /// How long starting took (engines up, swarm formed, images loaded).
    pub start_time: Duration,
}

/// Why this machine cannot run a test swarm, if it cannot.
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

/// Starts a cluster with one node per entry of `gameslots` (the first is the manager), or says
/// why it cannot and returns `None` (the test then skips).
pub async fn start(gameslots: &[u32]) -> Option<Cluster> {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED: this machine cannot run a test swarm: {why}");
        return None;
    }
    support::ensure_image().await;
    let began = Instant::now();
    let (k, switch) = claim_subnet();
    let root = PathBuf::from(format!("/tmp/peon-swarm-{k}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("cluster root");
    let mut c = Cluster {
        k,
        root: root.clone(),
        nodes: Vec::new(),
        switch: switch.clone(),
        host_if: format!("peonsw{k}h"),
        start_time: Duration::ZERO,
    };
    // The switch: a bridge inside its own namespace; the host's leg is a routed veth.
    ip(&["-n", &switch, "link", "set", "lo", "up"]);
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &switch, "link", "set", "br0", "up"]);
    ip(&[
        "link", "add", &c.host_if, "type", "veth", "peer", "name", "host", "netns", &switch,
    ]);
    ip(&["-n", &switch, "link", "set", "host", "master", "br0", "up"]);
    ip(&[
        "addr",
        "add",
        &format!("10.250.{k}.254/24"),
        "dev",
        &c.host_if,
    ]);
    ip(&["link", "set", &c.host_if, "up"]);

    for (i, slots) in gameslots.iter().enumerate() {
        let n = i + 1;
        let name = format!("peonsw{k}n{n}");
        let addr = format!("10.250.{k}.{n}");
        ip(&["netns", "add", &name]);
        ip(&[
            "-n",
            &switch,
            "link",
            "add",
            &format!("p{n}"),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &name,
        ]);
        ip(&[
            "-n",
            &switch,
            "link",
            "set",
            &format!("p{n}"),
            "master",
            "br0",
            "up",
        ]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        let dir = root.join(format!("n{n}"));
        let mut node = Node {
            name: name.clone(),
            addr,
            socket: format!("unix://{}/docker.sock", dir.display()),
            dir,
            id: String::new(),
            gameslots: *slots,
            cgroup_parent: name.clone(),
            child: None,
        };
        node.child = Some(spawn_engine(&node));
        c.nodes.push(node);
    }
    for node in &c.nodes {
        let path = node.socket.trim_start_matches("unix://").to_owned();
        support::wait_for(Duration::from_secs(30), "a node engine answers", || {
            let path = path.clone();
            async move {
                let d = Docker::connect_with_unix(&path, 10, bollard::API_DEFAULT_VERSION).ok()?;
                d.version().await.ok().map(|_| ())
            }
        })
        .await;
    }
    form_swarm(&mut c).await;
    load_image(&c).await;
    c.start_time = began.elapsed();
    Some(c)
}

impl Cluster {
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// A client on the manager's engine.
    pub fn docker(&self) -> Docker {
        self.manager().docker()
    }

    /// The host's own address on the cluster's /24.
    pub fn host_addr(&self) -> String {
        format!("10.250.{}.254", self.k)
    }

    pub fn node_by_id(&self, id: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
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
    pub async fn restart_engine(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i}'s engine is still running");
        let _ = std::fs::remove_file(node.socket.trim_start_matches("unix://"));
        let _ = std::fs::remove_file(node.dir.join("docker.pid"));
        node.child = Some(spawn_engine(node));
        let path = node.socket.trim_start_matches("unix://").to_owned();
        support::wait_for(
            Duration::from_secs(60),
            "the restarted engine answers",
            || {
                let path = path.clone();
                async move {
                    let d =
                        Docker::connect_with_unix(&path, 10, bollard::API_DEFAULT_VERSION).ok()?;
                    d.version().await.ok().map(|_| ())
                }
            },
        )
        .await;
    }

    /// Waits until the manager sees every node `ready`.
    pub async fn wait_ready(&self) {
        let d = self.docker();
        let want = self.nodes.len();
        support::wait_for(Duration::from_secs(60), "every node Ready", || {
            let d = d.clone();
            async move {
                let nodes = d.list_nodes(None).await.ok()?;
                let ready = nodes
                    .iter()
                    .filter(|n| {
                        n.status.as_ref().and_then(|s| s.state)
                            == Some(bollard::models::NodeState::READY)
                    })
                    .count();
                (ready == want).then_some(())
            }
        })
        .await;
    }

    fn teardown(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(node.dir.join("dockerd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- {} dockerd.log (last lines) ---", node.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let sockets: Vec<String> = self.nodes.iter().rev().map(|n| n.socket.clone()).collect();
        // Swarm leave on each engine (workers first), in a runtime of its own: Drop may run on
        // a test's runtime thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                for s in sockets {
                    let path = s.trim_start_matches("unix://").to_owned();
                    if let Ok(d) =
                        Docker::connect_with_unix(&path, 10, bollard::API_DEFAULT_VERSION)
                    {
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
            if let Some(child) = node.child.as_mut() {
                // SAFETY: kill with a pid we started; no memory is touched.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
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
            remove_cgroups(&node.cgroup_parent);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Claims a free `k` by creating its switch namespace (creation fails when it exists).
fn claim_subnet() -> (u8, String) {
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
                return (k, switch);
            }
            let _ = quiet(&["netns", "del", &switch]);
        }
    }
    panic!("no free 10.250.<k>.0/24 for a test cluster");
}

/// Runs `ip <args>`, panicking with its message when it fails.
fn ip(args: &[&str]) {
    if let Err(e) = quiet(args) {
        panic!("ip {}: {e}", args.join(" "));
    }
}

fn quiet(args: &[&str]) -> Result<(), String> {
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

/// Starts a node's dockerd inside its namespace, with its own hostname, `/etc/docker`, config
/// file, data and exec roots, socket, cgroup parent and generic resources, and the cgroup
/// hierarchies mounted again (`ip netns exec` remounts /sys).
fn spawn_engine(node: &Node) -> Child {
    let dir = &node.dir;
    for sub in ["etc", "data", "x"] {
        std::fs::create_dir_all(dir.join(sub)).expect("node dirs");
    }
    let config = serde_json::json!({
        "data-root": dir.join("data"),
        "exec-root": dir.join("x"),
        "pidfile": dir.join("docker.pid"),
        "hosts": [node.socket],
        "cgroup-parent": node.cgroup_parent,
        "storage-driver": "vfs",
        "node-generic-resources": [format!("gameslot={}", node.gameslots)],
        "log-driver": "json-file",
        "mtu": 1400
    });
    let config_path = dir.join("daemon.json");
    std::fs::write(&config_path, config.to_string()).expect("node daemon.json");
    let cgroups = cgroup_mounts();
    let script = format!(
        "set -e\nhostname {name}\nmount --bind {etc} /etc/docker\n{cgroups}\
         export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1\nexec dockerd --config-file {config}\n",
        name = node.name,
        etc = dir.join("etc").display(),
        config = config_path.display(),
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .expect("node log");
    let log2 = log.try_clone().expect("node log");
    Command::new("ip")
        .args([
            "netns", "exec", &node.name, "unshare", "--uts", "sh", "-c", &script,
        ])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .expect("start a node's dockerd")
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

/// Node 1 inits the swarm, the others join as workers; records each node's id.
async fn form_swarm(c: &mut Cluster) {
    let manager = c.nodes[0].docker();
    let maddr = c.nodes[0].addr.clone();
    manager
        .init_swarm(SwarmInitRequest {
            listen_addr: Some(format!("{maddr}:2377")),
            advertise_addr: Some(maddr.clone()),
            ..Default::default()
        })
        .await
        .expect("swarm init on node 1");
    let token = manager
        .inspect_swarm()
        .await
        .expect("swarm inspect")
        .join_tokens
        .and_then(|t| t.worker)
        .expect("worker join token");
    for node in &c.nodes[1..] {
        node.docker()
            .join_swarm(SwarmJoinRequest {
                listen_addr: Some(format!("{}:2377", node.addr)),
                advertise_addr: Some(node.addr.clone()),
                remote_addrs: Some(vec![format!("{maddr}:2377")]),
                join_token: Some(token.clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{} joins the swarm: {e}", node.name));
    }
    for node in &mut c.nodes {
        let info = node.docker().info().await.expect("node info");
        node.id = info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty())
            .expect("node id");
    }
    c.wait_ready().await;
}

/// The stand-in game image as a `docker save` archive, exported once per test process.
async fn image_archive() -> bytes::Bytes {
    static ARCHIVE: OnceCell<bytes::Bytes> = OnceCell::const_new();
    ARCHIVE
        .get_or_init(|| async {
            let main = Docker::connect_with_unix(
                support::DOCKER.trim_start_matches("unix://"),
                120,
                bollard::API_DEFAULT_VERSION,
            )
            .expect("main engine");
            let mut out = Vec::new();
            let mut s = main.export_image(GAME_IMAGE);
            while let Some(chunk) = s.next().await {
                out.extend_from_slice(&chunk.expect("export the game image"));
            }
            bytes::Bytes::from(out)
        })
        .await
        .clone()
}

/// Loads the stand-in game image into every node's engine.
async fn load_image(c: &Cluster) {
    let archive = image_archive().await;
    for node in &c.nodes {
        let d = node.docker();
        let mut s = d.import_image(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            bollard::body_full(archive.clone()),
            None,
        );
        while let Some(r) = s.next().await {
            r.unwrap_or_else(|e| panic!("load the game image into {}: {e}", node.name));
        }
    }
}

/// Removes a cgroup folder (and its children) from every hierarchy.
fn remove_cgroups(name: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let p = root.join(name);
        if p.is_dir() {
            rmdir_tree(&p);
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

/// Labels `peon-test=<id>` so a test's services can be told apart and removed.
pub fn test_labels(id: &str) -> HashMap<String, String> {
    HashMap::from([("peon-test".to_owned(), id.to_owned())])
}
