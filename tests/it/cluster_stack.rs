//! `config/peon-stack.yml` deployed for real on the test swarm (ignored by default, like the
//! compose test; `scripts/test` runs it with `--include-ignored`): peon's image built by
//! scripts/build-image from the test's own binary and loaded into every node's engine, a
//! Docker secret on the manager, then `docker -H <manager> stack deploy` under a unique stack
//! name, instance, key, port and secret name. The nodes share one filesystem, so the test gives
//! each node a folder of its own, `<tmp>/<node hostname>/`, with a link to the node's engine
//! socket and the agent's data dir, and points the stack at them with Swarm's
//! `{{.Node.Hostname}}` template (expanded on each node in mount paths and environment).
//!
//! Shown: the manager's API answers at node 1's address on its host-mode port; an agent runs
//! on every node (each answers a signed ping at its node's address with its own data dir, and
//! runs there without the image's health check); a game server created through the API on a
//! worker runs on that worker, its directory in the worker's data dir; its console works
//! through the worker's agent; the manager passes the image's health check. Then `docker stack
//! rm`, the game's service, the secret and the image are removed, also when the test fails
//! (the swarm itself goes with the harness). Also: the file's defaults (`docker stack config`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster_harness;
use crate::support::{self, DOCKER, free_port, game_plan, repo, sh, unique, wait_for, write_plan};

const BIN: &str = env!("CARGO_BIN_EXE_peon");

/// Everything the test makes outside the swarm's own teardown: the stack, peon's game
/// services (not part of the stack), the secret, the image on the main engine. Removed by
/// [`Stack::remove`], or on drop when the test failed before.
struct Stack {
    /// The manager node's engine, `unix:///...`.
    socket: String,
    name: String,
    secret: String,
    instance: String,
    tag: String,
    removed: bool,
}

impl Stack {
    /// The docker CLI on the manager's engine.
    fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(["-H", &self.socket])
            .stdin(Stdio::null());
        c
    }

    /// Service ids on the manager with this label.
    fn services(&self, label: &str) -> Vec<String> {
        let (_, out, _) =
            sh(self
                .docker()
                .args(["service", "ls", "-q", "--filter", &format!("label={label}")]));
        out.split_whitespace().map(str::to_owned).collect()
    }

    /// The last lines of the stack's services' logs (for a failure's message).
    fn logs(&self) -> String {
        let mut s = String::new();
        for svc in ["peon", "peon-agent"] {
            let (_, out, err) = sh(self.docker().args([
                "service",
                "logs",
                "--tail",
                "30",
                "--no-task-ids",
                &format!("{}_{svc}", self.name),
            ]));
            s.push_str(&format!("--- {}_{svc} ---\n{out}{err}", self.name));
        }
        s
    }

    /// `docker stack rm`, peon's game services, the secret, the image; then checks that the
    /// manager has none of them left.
    fn remove(&mut self) -> Result<(), String> {
        self.removed = true;
        let mut errors = Vec::new();
        let (ok, out, err) = sh(self
            .docker()
            .args(["stack", "rm", "--detach=false", &self.name]));
        if !ok {
            errors.push(format!("docker stack rm: {out}{err}"));
        }
        let games = self.services(&format!("peon.instance={}", self.instance));
        if !games.is_empty() {
            let _ = sh(self.docker().args(["service", "rm"]).args(&games));
        }
        let (ok, out, err) = sh(self.docker().args(["secret", "rm", &self.secret]));
        if !ok {
            errors.push(format!("docker secret rm: {out}{err}"));
        }
        let (ok, out, err) = sh(Command::new("docker")
            .args(["-H", DOCKER, "rmi", "-f", &self.tag])
            .stdin(Stdio::null()));
        if !ok {
            errors.push(format!("docker rmi: {out}{err}"));
        }
        let left = self.services(&format!("com.docker.stack.namespace={}", self.name));
        if !left.is_empty() {
            errors.push(format!("services left after stack rm: {left:?}"));
        }
        let (_, secrets, _) = sh(self
            .docker()
            .args(["secret", "ls", "--format", "{{.Name}}"]));
        if secrets.lines().any(|l| l == self.secret) {
            errors.push(format!("the secret {} is left", self.secret));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.removed {
            eprintln!("{}", self.logs());
        }
        if !self.removed
            && let Err(e) = self.remove()
        {
            eprintln!("cluster_stack teardown: {e}");
        }
    }
}

/// The containers on node `n`'s own engine labelled `label` (`key=value`).
async fn containers_on(
    n: &peon::bench::swarm::Node,
    label: &str,
) -> Vec<bollard::models::ContainerSummary> {
    n.docker()
        .expect("client on a node's engine")
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            filters: Some(std::collections::HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
            ..Default::default()
        }))
        .await
        .expect("list containers")
}

/// An HTTP call to the deployed API with the key; (status, JSON body or null).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).header("X-Api-Key", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({ "error": e.to_string() })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds the image and deploys the stack on a test swarm: cargo test --test it -- --ignored cluster_stack"]
async fn the_stack_file_deploys_a_manager_and_an_agent_per_node_that_run_a_game_on_a_worker() {
    let has_stack = Command::new("docker")
        .args(["stack", "deploy", "--help"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_stack {
        eprintln!("SKIPPED: the docker CLI has no `stack deploy`");
        return;
    }
    let Some(cluster) = cluster_harness::start(&[1, 1, 1]).await else {
        return;
    };
    let id = unique("peonstack");
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let mut stack = Stack {
        socket: cluster.manager().socket.clone(),
        name: id.clone(),
        secret: format!("{id}_secret"),
        instance: id.clone(),
        tag: format!("peon-it/{id}:latest"),
        removed: false,
    };

    // The image, from this test's own binary, on the main engine and then on every node.
    let t = Instant::now();
    let (ok, out, err) = sh(Command::new(repo().join("scripts/build-image"))
        .args(["--tag", &stack.tag, "--binary", BIN])
        .stdin(Stdio::null()));
    assert!(ok, "build-image failed:\n{out}\n{err}");
    let built = t.elapsed();
    let t = Instant::now();
    if let Err(e) = cluster.load_image(DOCKER, &stack.tag).await {
        panic!("loading {} into the nodes: {e}", stack.tag);
    }
    let loaded = t.elapsed();

    // Each node's folder, as `{{.Node.Hostname}}` names it: its engine's socket (a link to
    // the harness's) and its agent's data dir.
    for n in &cluster.nodes {
        let dir = root.join(&n.name);
        std::fs::create_dir_all(dir.join("stackdata")).expect("node folder");
        std::os::unix::fs::symlink(
            n.socket.trim_start_matches("unix://"),
            dir.join("docker.sock"),
        )
        .expect("link to the node's socket");
    }
    let node_data = |name: &str| root.join(name).join("stackdata");
    // The manager's data dir, with the test game's plan.
    let manager_dir = root.join("manager");
    let game = unique("sg");
    write_plan(
        &manager_dir.join("plans"),
        &game,
        &game_plan(&game, &[&[free_port()]]),
    );

    // The cluster secret, a Docker secret on the manager.
    let secret = peon::agent::auth::Secret::generate().expect("a secret");
    let mut create = stack
        .docker()
        .args(["secret", "create", &stack.secret, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker secret create");
    {
        use std::io::Write;
        let mut stdin = create.stdin.take().expect("stdin");
        stdin
            .write_all(secret.as_bytes())
            .expect("write the secret");
    }
    let o = create.wait_with_output().expect("docker secret create");
    assert!(
        o.status.success(),
        "docker secret create: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let api_port = free_port();
    let key = format!("key-{id}");
    let template_root = root.join("{{.Node.Hostname}}");
    let t = Instant::now();
    let (ok, out, err) = sh(stack
        .docker()
        .current_dir(repo())
        .args([
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            "config/peon-stack.yml",
            &stack.name,
        ])
        .env("PEON_IMAGE", &stack.tag)
        .env("PEON_API_KEY", &key)
        .env("PEON_INSTANCE", &stack.instance)
        .env("PEON_PORT", api_port.to_string())
        .env("PEON_CLUSTER_SECRET_NAME", &stack.secret)
        .env("PEON_MANAGER_DIR", &manager_dir)
        .env("PEON_NODE_DIR", template_root.join("stackdata"))
        .env("PEON_DOCKER_SOCKET", template_root.join("docker.sock"))
        .env("RUST_LOG", "info"));
    assert!(ok, "docker stack deploy failed:\n{out}\n{err}");

    // The manager's API at node 1's address, on its host-mode port.
    let api = format!("http://{}:{api_port}", cluster.manager().addr);
    let http = peon::http::client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let health = support::wait_healthy(
        &http,
        &format!("{api}/health"),
        Duration::from_secs(120),
        "the manager's API",
    )
    .await;
    let api_up = t.elapsed();
    eprintln!("cluster_stack: manager healthy: {health}");

    // An agent on every node: each answers a signed ping at its node's address with the data
    // dir Swarm's template gave that node.
    let secret = peon::agent::auth::Secret::new(&secret).expect("secret");
    for n in &cluster.nodes {
        let client = peon::agent::client::AgentClient::new(
            &format!("{}:{}", n.addr, peon::agent::DEFAULT_PORT),
            secret.clone(),
        )
        .expect("agent client");
        let info = wait_for(
            Duration::from_secs(60),
            &format!("{}'s agent", n.name),
            || {
                let c = client.clone();
                async move { c.info().await.ok() }
            },
        )
        .await;
        assert_eq!(
            Path::new(&info.data_dir),
            node_data(&n.name),
            "{}'s agent has its own data dir",
            n.name
        );
    }
    let agents_up = t.elapsed();
    // ... running on that node's own engine, without the image's health check (which asks the
    // manager's API and would have Swarm replace every agent).
    let agent_label = format!("com.docker.swarm.service.name={}_peon-agent", stack.name);
    for n in &cluster.nodes {
        let list = containers_on(n, &agent_label).await;
        assert_eq!(list.len(), 1, "one agent on {}: {list:?}", n.name);
        let c = n
            .docker()
            .expect("node engine")
            .inspect_container(list[0].id.as_deref().unwrap_or_default(), None)
            .await
            .expect("inspect the agent");
        let check = c.config.and_then(|c| c.healthcheck).and_then(|h| h.test);
        assert_eq!(check, Some(vec!["NONE".to_owned()]), "{}", n.name);
    }

    // A game server on a worker, through the API.
    let worker = &cluster.nodes[1];
    let uid = format!("{game}.w");
    let base = format!("{api}/api/v1");
    let v = wait_for(
        Duration::from_secs(60),
        "the server created on the worker",
        || async {
            let (s, v) = call(
                &http,
                reqwest::Method::PUT,
                format!("{base}/server/create/{uid}"),
                &key,
                Some(json!({"SERVER_NAME": "Stack", "node": worker.id})),
            )
            .await;
            // 409 while the manager does not reach the worker's agent yet.
            assert!(s == 200 || s == 409, "create: {s} {v}");
            (s == 200).then_some(v)
        },
    )
    .await;
    assert_eq!(v["node"]["id"], worker.id.as_str(), "{v}");
    assert_eq!(
        v["node"]["data_dir"].as_str().map(PathBuf::from),
        Some(node_data(&worker.name)),
        "{v}"
    );
    let (s, v) = call(
        &http,
        reqwest::Method::PUT,
        format!("{base}/server/start/{uid}"),
        &key,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200, "start: {v}");
    assert_eq!(v["container_state"], "running", "{v}");
    let running = t.elapsed();

    // It runs on the worker, and nowhere else.
    for n in &cluster.nodes {
        let list = containers_on(n, &format!("peon.uid={uid}")).await;
        let want = usize::from(n.id == worker.id);
        assert_eq!(list.len(), want, "the game's containers on {}", n.name);
    }
    // Its directory is on the worker's own data dir: the game writes its world there.
    let (g, name) = uid.split_once('.').expect("uid");
    let dir_on = |n: &str| node_data(n).join("servers").join(g).join(name);
    let boots = dir_on(&worker.name).join("user/boots");
    wait_for(Duration::from_secs(30), "the game's world file", || {
        let ok = boots.is_file();
        async move { ok.then_some(()) }
    })
    .await;
    for n in &cluster.nodes {
        if n.id != worker.id {
            assert!(!dir_on(&n.name).exists(), "no copy on {}", n.name);
        }
    }

    // The console, through the worker's agent: a command sent through the API and a line
    // typed into the WebSocket console both come back from the game.
    let mut console = support::Console::try_connect_to(&base, &uid, &key)
        .await
        .unwrap_or_else(|s| panic!("console upgrade refused with {s}"));
    wait_for(Duration::from_secs(30), "the console attached", || async {
        let (s, _) = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/server/command/{uid}"),
            &key,
            Some(json!({"command": "through-the-stack"})),
        )
        .await;
        (s == 200).then_some(())
    })
    .await;
    console.wait_line("console: through-the-stack").await;
    console.send("typed-in-the-console").await;
    console.wait_line("console: typed-in-the-console").await;
    let console_ok = t.elapsed();

    // The manager passes the image's health check (`peon health`, every 30 s), so Swarm
    // keeps it; the agents are still the first ones (none was replaced).
    let manager_label = format!("com.docker.swarm.service.name={}_peon", stack.name);
    let manager = cluster.manager();
    wait_for(Duration::from_secs(120), "the manager healthy", || async {
        let list = containers_on(manager, &manager_label).await;
        let id = list.first()?.id.clone()?;
        let c = manager
            .docker()
            .ok()?
            .inspect_container(&id, None)
            .await
            .ok()?;
        let status = c.state?.health?.status?;
        assert_ne!(
            status,
            bollard::models::HealthStatusEnum::UNHEALTHY,
            "the manager's health check failed"
        );
        (status == bollard::models::HealthStatusEnum::HEALTHY).then_some(())
    })
    .await;
    let healthy = t.elapsed();
    for n in &cluster.nodes {
        assert_eq!(containers_on(n, &agent_label).await.len(), 1, "{}", n.name);
    }

    let (s, v) = call(
        &http,
        reqwest::Method::DELETE,
        format!("{base}/server/destroy/{uid}"),
        &key,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200, "destroy: {v}");

    let t = Instant::now();
    let removed = stack.remove();
    let torn = t.elapsed();
    assert_eq!(removed, Ok(()));
    eprintln!(
        "MEASURED cluster_stack: image built {:.1}s, loaded into 3 nodes {:.1}s; from `docker \
         stack deploy`: manager API up {:.1}s, 3 agents answer {:.1}s, game running on a worker \
         {:.1}s, console through its agent {:.1}s, manager healthy (image health check) {:.1}s; \
         stack rm and clean-up {:.1}s",
        built.as_secs_f64(),
        loaded.as_secs_f64(),
        api_up.as_secs_f64(),
        agents_up.as_secs_f64(),
        running.as_secs_f64(),
        console_ok.as_secs_f64(),
        healthy.as_secs_f64(),
        torn.as_secs_f64()
    );
}

/// The stack file as `docker stack deploy` reads it (`docker stack config`, the CLI only):
/// with nothing but the key set, the defaults are a real cluster's; without the key, refused.
#[test]
fn the_stack_file_defaults_are_a_real_clusters() {
    let config = |key: Option<&str>| {
        let mut c = Command::new("docker");
        c.current_dir(repo())
            .args(["stack", "config", "-c", "config/peon-stack.yml"])
            .stdin(Stdio::null());
        for v in [
            "PEON_API_KEY",
            "PEON_IMAGE",
            "PEON_NODE_DIR",
            "PEON_MANAGER_DIR",
            "PEON_DOCKER_SOCKET",
            "PEON_PORT",
            "PEON_AGENT_PORT",
            "PEON_CLUSTER_SECRET_NAME",
        ] {
            c.env_remove(v);
        }
        if let Some(k) = key {
            c.env("PEON_API_KEY", k);
        }
        c.output()
    };
    let Ok(o) = config(Some("k")) else {
        eprintln!("SKIPPED: no docker CLI");
        return;
    };
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() && !text.contains("services:") {
        eprintln!(
            "SKIPPED: `docker stack config` is not available: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        return;
    }
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let count = |l: &str| lines.iter().filter(|x| **x == l).count();
    assert_eq!(count("source: /var/run/docker.sock"), 2, "{text}");
    assert_eq!(count("source: /srv/peon"), 1, "{text}");
    assert_eq!(count("target: /srv/peon"), 1, "{text}");
    assert_eq!(count("PEON_DATA_DIR: /srv/peon"), 1, "{text}");
    assert_eq!(count("source: /srv/peon-manager"), 1, "{text}");
    assert_eq!(count("PEON_HOST_DIR: /srv/peon-manager"), 1, "{text}");
    assert_eq!(count("published: 5000"), 1, "{text}");
    assert_eq!(count("published: 8470"), 1, "{text}");
    assert_eq!(count("PEON_AGENT_PORT: \"8470\""), 1, "{text}");
    assert_eq!(count("name: peon_cluster_secret"), 1, "{text}");
    assert_eq!(
        count("disable: true"),
        1,
        "the agent's health check: {text}"
    );
    assert_eq!(count("image: peon:latest"), 2, "{text}");

    let o = config(None).expect("docker stack config");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("set PEON_API_KEY"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
