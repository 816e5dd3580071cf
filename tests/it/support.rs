//! Test harness: a real peon daemon on 127.0.0.1:0 with its own data dir and instance label,
//! the busybox stand-in game image, test plans, and waiting with deadlines. Everything a test
//! creates is removed when its `Daemon` is dropped.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use peon::config::{ServeArgs, Settings};
use peon::docker::{Engine, labels};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// The stand-in game image every test plan uses.
pub const GAME_IMAGE: &str = "peon-test/game:latest";
/// The busybox game script (the bundled demo plan's `server_start`).
pub const GAME_SCRIPT: &str = include_str!("../../plans/demo/actions/server_start");

pub const DOCKER: &str = "unix:///var/run/docker.sock";

static IMAGE: OnceCell<()> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call: lowercase, valid as a game id or server name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{:x}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port that was free a moment ago, never handed out twice in one test process (two
/// tests picking ports before either binds would otherwise get the same one).
pub fn free_port() -> u16 {
    // Ports below the kernel's ephemeral range (32768-60999 here): a port taken from that range
    // (bind to :0) can be handed to some other process's outgoing connection before the test's
    // game binds it. Picked at random per process, checked free for TCP and UDP.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut x = seed ^ n.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 31;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 29;
        let port = 20_000 + (x % 12_000) as u16;
        let free = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
            && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok();
        if !free {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// With `PEON_TEST_LOG=<file>`, the daemons' logs (all tests together) go to that file.
fn init_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(path) = std::env::var("PEON_TEST_LOG") else {
            return;
        };
        let Ok(file) = std::fs::File::create(&path) else {
            return;
        };
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file)),
            )
            .with(
                tracing_subscriber::filter::Targets::new()
                    .with_target("peon", tracing::Level::DEBUG),
            )
            .try_init();
    });
}

/// Builds the stand-in game image once per test process (skipped when it exists).
pub async fn ensure_image() {
    IMAGE
        .get_or_init(|| async {
            let engine = Engine::new(DOCKER);
            if engine
                .image_env(GAME_IMAGE)
                .await
                .expect("docker reachable")
                .is_some()
            {
                return;
            }
            let busybox = std::fs::read("/bin/busybox")
                .expect("/bin/busybox is missing: install Debian's busybox-static");
            let ctx = peon::docker::busybox_game_context(&busybox).expect("build context");
            engine
                .build_image(GAME_IMAGE, ctx)
                .await
                .expect("build the test game image");
        })
        .await;
}

/// The stand-in game image with peon's query responder (`tools/query-responder`), tagged by a
/// hash of the responder's source so that a changed responder makes a new image.
pub async fn ensure_query_image() -> String {
    static QUERY_IMAGE: OnceCell<String> = OnceCell::const_new();
    QUERY_IMAGE
        .get_or_init(|| async {
            ensure_image().await;
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let src = std::fs::read(root.join("tools/query-responder/src/main.rs"))
                .expect("responder source");
            let hash = src.iter().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
            });
            let tag = format!("peon-test/game-query:{hash:016x}");
            let engine = Engine::new(DOCKER);
            if engine.image_env(&tag).await.expect("docker").is_some() {
                return tag;
            }
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"))
                .join("query-responder");
            let out = tokio::process::Command::new(env!("CARGO"))
                .args(["build", "--release", "--target", "x86_64-unknown-linux-gnu"])
                .arg("--manifest-path")
                .arg(root.join("tools/query-responder/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .output()
                .await
                .expect("run cargo");
            assert!(
                out.status.success(),
                "building the query responder failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let bin =
                std::fs::read(target.join("x86_64-unknown-linux-gnu/release/peon-query-responder"))
                    .expect("the responder binary");
            let dockerfile =
                format!("FROM {GAME_IMAGE}\nCOPY peon-query-responder /bin/peon-query-responder\n");
            let mut ar = tar::Builder::new(Vec::new());
            for (name, data) in [
                ("Dockerfile", dockerfile.as_bytes()),
                ("peon-query-responder", bin.as_slice()),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o755);
                h.set_cksum();
                ar.append_data(&mut h, name, data).expect("tar");
            }
            engine
                .build_image(&tag, ar.into_inner().expect("tar"))
                .await
                .expect("build the query test image");
            tag
        })
        .await
        .clone()
}

/// A plan for the stand-in game with one port group per entry of `groups`.
pub fn game_plan(game: &str, groups: &[&[u16]]) -> Value {
    let ports: Vec<Value> = groups
        .iter()
        .map(|g| {
            Value::Array(
                g.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let name = if i == 0 {
                            "PORT".to_owned()
                        } else {
                            format!("PORT_{i}")
                        };
                        json!({ name: [p.to_string(), "tcp"] })
                    })
                    .collect(),
            )
        })
        .collect();
    json!({
        "metadata": {
            "game_uid": game, "warcamp": "default", "version": "1.0.0",
            "description": format!("test game {game}"), "mode": "steamcmd",
            "hostname": format!("peon.warcamp.{game}"), "image": GAME_IMAGE
        },
        "ports": ports,
        "environment": {"STEAM_ID": "0", "SERVER_NAME": null, "MOTD": "hello", "PASSWORD": ""},
        "volumes": {
            "~!/actions": "/actions",
            "~!/data": "/home/steam/steamcmd/data",
            "~!/config": "/home/steam/config",
            "~!/user": "/home/steam/user"
        }
    })
}

/// Options of a test daemon.
#[derive(Clone, Default)]
pub struct Opts {
    pub stop_timeout: Option<u64>,
    pub docker_host: Option<String>,
    pub plans_url: Option<String>,
    /// Lockout thresholds: wrong keys before slowing, before locking; lock seconds.
    pub auth: Option<(u32, u32, u64)>,
    /// The address of the key-less metrics listener (kept across restarts).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds between stats samples.
    pub stats_interval: Option<u64>,
    /// Webhook delivery attempts and first back-off (ms).
    pub hooks: Option<(u32, u64)>,
    /// A configuration file.
    pub config: Option<PathBuf>,
    /// An S3-compatible backup target: endpoint and bucket (any keys are accepted).
    pub s3: Option<(String, String)>,
    /// Cluster mode (`docker_host` is then a Swarm manager's engine).
    pub cluster: bool,
}

/// A running test daemon.
pub struct Daemon {
    pub root: String,
    pub base: String,
    pub key: String,
    pub instance: String,
    pub data: PathBuf,
    pub http: reqwest::Client,
    opts: Opts,
    tmp: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub engine: Arc<Engine>,
}

impl Daemon {
    pub async fn start() -> Daemon {
        Self::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Daemon {
        init_log();
        ensure_image().await;
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().to_owned();
        let mut d = Daemon {
            root: String::new(),
            base: String::new(),
            key: format!("key-{}", unique("k")),
            instance: unique("t"),
            data,
            http: peon::http::client_builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("http client"),
            opts,
            tmp: Some(tmp),
            shutdown: None,
            task: None,
            engine: Arc::new(Engine::new(DOCKER)),
        };
        d.launch().await;
        d
    }

    pub fn settings(&self) -> Settings {
        let args = ServeArgs {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            data_dir: Some(self.data.clone()),
            api_key: Some(self.key.clone()),
            instance: Some(self.instance.clone()),
            publish_address: Some("127.0.0.1".into()),
            stop_timeout: Some(self.opts.stop_timeout.unwrap_or(10)),
            docker_host: Some(
                self.opts
                    .docker_host
                    .clone()
                    .unwrap_or_else(|| DOCKER.into()),
            ),
            plans_url: self.opts.plans_url.clone(),
            auth_slow_after: self.opts.auth.map(|a| a.0),
            auth_lock_after: self.opts.auth.map(|a| a.1),
            auth_lock_secs: self.opts.auth.map(|a| a.2),
            metrics_listen: self.opts.metrics_listen,
            stats_interval: self.opts.stats_interval,
            hook_attempts: self.opts.hooks.map(|h| h.0),
            hook_backoff_ms: self.opts.hooks.map(|h| h.1),
            config: self.opts.config.clone(),
            s3_endpoint: self.opts.s3.as_ref().map(|s| s.0.clone()),
            s3_bucket: self.opts.s3.as_ref().map(|s| s.1.clone()),
            s3_access_key: self.opts.s3.as_ref().map(|_| "test-access".into()),
            s3_secret_key: self.opts.s3.as_ref().map(|_| "test-secret".into()),
            cluster: Some(self.opts.cluster),
            ..Default::default()
        };
        Settings::resolve(&args).expect("settings")
    }

    async fn launch(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let settings = self.settings();
        self.task = Some(tokio::spawn(async move {
            peon::daemon::launch(settings, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("daemon runs");
        }));
        self.shutdown = Some(tx);
        self.root = format!("http://{addr}");
        self.base = format!("{}/api/v1", self.root);
    }

    /// Stops the daemon gracefully; servers keep running.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Stops and starts the daemon on the same data dir (a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub fn plans_dir(&self) -> PathBuf {
        self.data.join("plans")
    }

    pub fn server_dir(&self, uid: &str) -> PathBuf {
        let (g, n) = uid.split_once('.').expect("uid");
        self.data.join("servers").join(g).join(n)
    }

    /// Writes a plan folder (plan.json and the game script) into the daemon's plans dir.
    pub fn add_plan(&self, game: &str, plan: &Value) {
        write_plan(&self.plans_dir(), game, plan);
    }

    /// A new game with its own plan: one port group per entry, each port free.
    pub fn new_game(&self, groups: usize) -> (String, Vec<u16>) {
        let game = unique("g");
        let ports: Vec<u16> = (0..groups).map(|_| free_port()).collect();
        let gs: Vec<&[u16]> = ports.iter().map(std::slice::from_ref).collect();
        self.add_plan(&game, &game_plan(&game, &gs));
        (game, ports)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.key, method, path, body).await
    }

    /// [`Daemon::call`] with another key.
    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Api-Key", key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, Some(body)).await
    }

    /// Sends `PUT <path>` with an empty body in a task of its own; the task yields the status.
    pub fn put_in_background(&self, path: &str) -> tokio::task::JoinHandle<StatusCode> {
        let req = self
            .http
            .put(format!("{}{path}", self.base))
            .header("X-Api-Key", &self.key)
            .json(&json!({}));
        tokio::spawn(async move { req.send().await.expect("request").status() })
    }

    /// Creates and starts `<game>.<name>`, asserting success.
    pub async fn create_running(&self, uid: &str) -> Value {
        let (s, v) = self
            .put(
                &format!("/server/create/{uid}"),
                json!({"SERVER_NAME": "Test"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "create {uid}: {v}");
        assert_eq!(v["container_state"], "running", "{v}");
        v
    }

    /// Polls `GET /server/get/<uid>` until `pred` holds or the deadline passes.
    pub async fn wait_server(
        &self,
        uid: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/server/get/{uid}");
        let deadline = Instant::now() + within;
        loop {
            let (_, v) = self.get(&path).await;
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for server {uid}; last seen: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes every container and network of this daemon's instance.
    pub async fn cleanup(&self) {
        cleanup_instance(&self.engine, &self.instance).await;
    }
}

/// Writes `<plans>/<game>/plan.json` and `actions/server_start`.
pub fn write_plan(plans: &Path, game: &str, plan: &Value) {
    let dir = plans.join(game);
    std::fs::create_dir_all(dir.join("actions")).expect("plan dir");
    std::fs::write(
        dir.join("plan.json"),
        serde_json::to_vec_pretty(plan).expect("json"),
    )
    .expect("write plan");
    std::fs::write(dir.join("actions/server_start"), GAME_SCRIPT).expect("write script");
}

/// Removes containers and networks labelled with `instance`.
pub async fn cleanup_instance(engine: &Engine, instance: &str) {
    if let Ok(cs) = engine.list_labelled(labels::INSTANCE, instance).await {
        for c in cs {
            let _ = engine.remove_container(&c.name).await;
        }
    }
    if let Ok(ns) = engine.networks_labelled(labels::INSTANCE, instance).await {
        for n in ns {
            let _ = engine.remove_network(&n).await;
        }
    }
}

/// [`cleanup_instance`] from synchronous code (a `Drop`, which cannot await): runs on a thread
/// with its own runtime.
pub fn cleanup_instance_blocking(instance: &str) {
    let instance = instance.to_owned();
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(cleanup_instance(&Engine::new(DOCKER), &instance));
        }
    })
    .join();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        cleanup_instance_blocking(&self.instance);
        drop(self.tmp.take());
    }
}

/// Polls `probe` until it yields a value, failing the test after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects to 127.0.0.1:`port` and returns what the game says.
pub async fn game_greeting(port: u16) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf).trim().to_owned()).filter(|s| !s.is_empty())
}

/// Copies a directory tree (test setup).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).expect("copy");
        }
    }
}

/// A WebSocket console client, as the PEON WebUI's backend connects.
pub struct Console {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Every frame received so far.
    pub frames: Vec<Value>,
}

impl Console {
    /// Connects with the daemon's key; panics unless the upgrade succeeds.
    pub async fn connect(d: &Daemon, uid: &str) -> Console {
        match Self::try_connect(d, uid, &d.key).await {
            Ok(c) => c,
            Err(status) => panic!("console upgrade for {uid} refused with {status}"),
        }
    }

    /// Connects with `key`; the HTTP status when the upgrade is refused.
    pub async fn try_connect(d: &Daemon, uid: &str, key: &str) -> Result<Console, u16> {
        Self::try_connect_to(&d.base, uid, key).await
    }

    /// Connects to the daemon whose API is at `base` (`http://<addr>/api/v1`) with `key`; the
    /// HTTP status when the upgrade is refused.
    pub async fn try_connect_to(base: &str, uid: &str, key: &str) -> Result<Console, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/ws/console/{uid}", base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().expect("request");
        req.headers_mut()
            .insert("X-Api-Key", key.parse().expect("header"));
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Console {
                ws,
                frames: Vec::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("console connect: {e}"),
        }
    }

    /// The next text frame as it came, unparsed (for fast readers).
    pub async fn next_raw(&mut self, within: Duration) -> Option<String> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next JSON frame within `within`; `None` on timeout or when the socket closed.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                    self.frames.push(v.clone());
                    return Some(v);
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Reads frames until a log line contains `needle` (20 s at most); returns the line.
    pub async fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            let f = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("no console line with {needle:?}"));
            if f["type"] == "log" && f["data"].as_str().is_some_and(|l| l.contains(needle)) {
                return f["data"].as_str().unwrap_or_default().to_owned();
            }
        }
    }

    /// Sends a console command.
    pub async fn send(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("send");
    }
}

/// A reader of `GET /events` (Server-Sent Events).
pub struct Events {
    res: reqwest::Response,
    buf: String,
}

impl Events {
    pub async fn open(d: &Daemon, uid: Option<&str>) -> Events {
        Self::open_as(d, uid, &d.key).await
    }

    /// [`Events::open`] with another key.
    pub async fn open_as(d: &Daemon, uid: Option<&str>, key: &str) -> Events {
        let q = uid.map(|u| format!("?uid={u}")).unwrap_or_default();
        let res = reqwest::Client::new()
            .get(format!("{}/events{q}", d.base))
            .header("X-Api-Key", key)
            .send()
            .await
            .expect("events");
        assert_eq!(res.status(), StatusCode::OK);
        Events {
            res,
            buf: String::new(),
        }
    }

    /// The next event within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("JSON event"));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.res.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }

    /// Reads events until one satisfies `pred` (within `within`), returning it.
    pub async fn wait(
        &mut self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            match self.next(left).await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("timed out after {within:?} waiting for the event: {what}"),
            }
        }
    }
}

/// The repository's folder.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command, returning (success, stdout, stderr).
pub fn sh(cmd: &mut std::process::Command) -> (bool, String, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Waits until a daemon's `/health` at `url` answers with its engine reachable (`"docker":
/// true`), and returns that answer.
pub async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    within: Duration,
    what: &str,
) -> Value {
    wait_for(within, what, || async {
        let v: Value = http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["docker"] == true).then_some(v)
    })
    .await
}
