//! The peon agent (cluster mode, issue 12) against the main engine, without a swarm: a real
//! `peon agent` process on 127.0.0.1:<free port> with its own data dir and secret, driven by
//! peon's own `AgentClient`. Requests without the cluster secret are refused; a busybox game's
//! console, logs, stats and kill go through the agent; a directory goes in, the game writes,
//! it comes back with a matching checksum; a damaged or cut push leaves the old directory as it
//! was; a directory moves between two agents.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use peon::agent::auth::Secret;
use peon::agent::client::{AgentClient, AgentClientError, copy_dir};
use peon::agent::framing;
use peon::docker::{ContainerSpec, Engine, labels};
use peon::names::Uid;
use peon::runtime::{Limits, NodeContainers};
use peon::service::relocate::{MoveOps, Side, move_server};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::support::{self, DOCKER, GAME_IMAGE, GAME_SCRIPT, wait_for};

/// A `peon agent` process; killed, and its containers removed, on drop.
struct AgentProc {
    child: std::process::Child,
    addr: String,
    secret: String,
    instance: String,
    log: PathBuf,
    tmp: tempfile::TempDir,
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        support::cleanup_instance_blocking(&self.instance);
    }
}

impl AgentProc {
    async fn start() -> AgentProc {
        let tmp = tempfile::tempdir().unwrap();
        let instance = support::unique("agent");
        let secret = format!("test-secret-{}", support::unique("s"));
        let secret_file = tmp.path().join("cluster.secret");
        std::fs::write(&secret_file, &secret).unwrap();
        let log = tmp.path().join("agent.log");
        let port = support::free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_peon"))
            .args(["agent", "--listen", &addr, "--docker-host", DOCKER])
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .arg("--secret-file")
            .arg(&secret_file)
            .args(["--instance", &instance])
            .env("RUST_LOG", "info")
            .env_remove("PEON_CLUSTER_SECRET")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let a = AgentProc {
            child,
            addr,
            secret,
            instance,
            log,
            tmp,
        };
        let c = a.client();
        wait_for(Duration::from_secs(20), "the agent to answer", || async {
            c.ping().await.ok()
        })
        .await;
        a
    }

    fn client(&self) -> AgentClient {
        AgentClient::new(&self.addr, Secret::new(&self.secret).unwrap()).unwrap()
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn server_dir(&self, uid: &Uid) -> PathBuf {
        self.data()
            .join("servers")
            .join(uid.game())
            .join(uid.name())
    }

    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.data().join("servers/.staging"))
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    }
}

/// A digest of a tree: every path (sorted), its kind and mode, and its content or link target.
fn tree_digest(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode();
            let mut v = format!("{mode:o}:").into_bytes();
            if md.file_type().is_symlink() {
                v.extend(std::fs::read_link(&p).unwrap().to_string_lossy().bytes());
            } else if md.is_dir() {
                walk(root, &p, out);
            } else {
                v.extend(std::fs::read(&p).unwrap());
            }
            out.insert(rel, v);
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    let mut h = Sha256::new();
    for (k, v) in m {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(&v);
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// A server directory with the busybox game in it and a world file, framed for a push.
fn framed_dir(world: &str) -> (tempfile::TempDir, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let s = d.path().join("srv");
    for sub in ["actions", "config", "data", "user"] {
        std::fs::create_dir_all(s.join(sub)).unwrap();
    }
    std::fs::write(s.join("actions/server_start"), GAME_SCRIPT).unwrap();
    std::fs::write(s.join("user/world.txt"), world).unwrap();
    std::fs::write(s.join("user/big.bin"), vec![42u8; 3 << 20]).unwrap();
    std::os::unix::fs::symlink("world.txt", s.join("user/current")).unwrap();
    std::fs::write(s.join("config.json"), "{}").unwrap();
    let (mut out, st) =
        peon::backup::pack(&s, &peon::backup::glob::Globs::new::<&str>(&[]), Vec::new()).unwrap();
    out.extend(framing::trailer(&st.sha256));
    (d, out)
}

fn chunks(b: Vec<u8>) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let parts: Vec<Result<Bytes, std::io::Error>> = b
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(parts)
}

#[tokio::test]
async fn an_agent_refuses_requests_without_the_cluster_secret() {
    let a = AgentProc::start().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/agent/v1/ping", a.addr);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["err_code"], "agent.auth");

    // A signature made with another secret.
    let wrong = AgentClient::new(&a.addr, Secret::new("not-the-cluster-secret").unwrap()).unwrap();
    match wrong.ping().await {
        Err(AgentClientError::Unauthorized { info, .. }) => {
            assert!(info.contains("does not match"), "{info}")
        }
        other => panic!("a wrong secret must be refused, got {other:?}"),
    }
    // Requests signed by hand: the right secret, `t` seconds ago, with a nonce.
    let secret = Secret::new(&a.secret).unwrap();
    let signed = |path: &str, signed_path: &str, ago: i64, nonce: &str| {
        let t = peon::agent::auth::now() - ago;
        http.get(format!("http://{}{path}", a.addr))
            .header(peon::agent::auth::TIME_HEADER, t.to_string())
            .header(peon::agent::auth::NONCE_HEADER, nonce)
            .header(
                peon::agent::auth::SIGNATURE_HEADER,
                secret.sign("GET", signed_path, t, nonce),
            )
            .send()
    };
    let ping = "/agent/v1/ping";
    // Ten minutes old.
    let r = signed(ping, ping, 600, &peon::agent::auth::nonce())
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("clock"));
    // A signature for another path does not open this one.
    let r = signed(
        "/agent/v1/server/g.a/dir",
        ping,
        0,
        &peon::agent::auth::nonce(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    // A good request is let in once; the same request again (a replay) is refused.
    let nonce = peon::agent::auth::nonce();
    let t = peon::agent::auth::now();
    let replayable = || {
        http.get(&url)
            .header(peon::agent::auth::TIME_HEADER, t.to_string())
            .header(peon::agent::auth::NONCE_HEADER, nonce.as_str())
            .header(
                peon::agent::auth::SIGNATURE_HEADER,
                secret.sign("GET", ping, t, &nonce),
            )
            .send()
    };
    assert_eq!(replayable().await.unwrap().status(), 200);
    let r = replayable().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("replayed"));
    // The console refuses too, before any upgrade.
    let uid = Uid::parse("g.a").unwrap();
    assert!(matches!(
        wrong.attach(&uid).await,
        Err(AgentClientError::Unauthorized { .. })
    ));
    // The right one is let in; the secret never reaches the log.
    assert!(!a.client().ping().await.unwrap().is_empty());
    let log = std::fs::read_to_string(&a.log).unwrap();
    assert!(log.contains("request refused"), "{log}");
    assert!(
        !log.contains(&a.secret),
        "the agent logged the secret:\n{log}"
    );
}

#[tokio::test]
async fn a_game_on_an_agents_node_console_logs_stats_kill_and_its_world_comes_back() {
    support::ensure_image().await;
    let a = AgentProc::start().await;
    let c = a.client();
    let uid = Uid::new(&support::unique("ag"), "alpha").unwrap();
    // No container yet: none, for inspect and for the seam.
    assert!(c.inspect(&uid).await.unwrap().is_none());

    // The directory goes in through the agent.
    let (_src, framed) = framed_dir("the pushed world");
    let pushed = c.push_dir(&uid, chunks(framed.clone())).await.unwrap();
    assert_eq!(pushed.bytes as usize, framed.len() - framing::TRAILER_LEN);
    let dir = a.server_dir(&uid);
    assert_eq!(
        std::fs::read_to_string(dir.join("user/world.txt")).unwrap(),
        "the pushed world"
    );

    // The game runs from it on the node's engine.
    let engine = Engine::new(DOCKER);
    let name = uid.container_name();
    let spec = ContainerSpec {
        name: name.clone(),
        hostname: uid.name().to_owned(),
        image: GAME_IMAGE.to_owned(),
        env: vec![
            format!("SERVER_NAME={uid}"),
            format!("PORT={}", support::free_port()),
        ],
        binds: vec![
            format!("{}:/actions", dir.join("actions").display()),
            format!("{}:/home/steam/user", dir.join("user").display()),
        ],
        ports: vec![],
        publish_ip: "127.0.0.1".into(),
        labels: HashMap::from([
            (labels::INSTANCE.to_owned(), a.instance.clone()),
            (labels::UID.to_owned(), uid.to_string()),
        ]),
        network: "none".into(),
        user: None,
        stop_timeout: Duration::from_secs(5),
        limits: Limits::default(),
    };
    engine.create_container(&spec).await.unwrap();
    // The console is attached before the start, so the boot lines come through too.
    let node: &dyn NodeContainers = &c;
    let mut console = node.attach(&name).await.unwrap();
    engine.start_container(&name).await.unwrap();
    let mut seen = String::new();
    let mut read_until = async |needle: &str, seen: &mut String| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !seen.contains(needle) {
            let next = tokio::time::timeout_at(deadline, console.output.next())
                .await
                .unwrap_or_else(|_| panic!("no [{needle}] on the console; saw:\n{seen}"));
            match next {
                Some(Ok(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
                other => panic!("the console ended ({other:?}) before [{needle}]; saw:\n{seen}"),
            }
        }
    };
    read_until("game: listening", &mut seen).await;
    console.input.write_all(b"save\n").await.unwrap();
    console.input.flush().await.unwrap();
    read_until("console: save", &mut seen).await;
    read_until("game: saved", &mut seen).await;

    // Inspect, logs and stats through the agent.
    let d = c.inspect(&uid).await.unwrap().expect("the container");
    assert!(d.running);
    assert_eq!(d.name.trim_start_matches('/'), name);
    let lines = wait_for(Duration::from_secs(10), "the save in the logs", || async {
        let l = node.logs(&name, 50).await.ok()?;
        l.iter().any(|x| x.contains("game: saved")).then_some(l)
    })
    .await;
    assert!(lines.iter().any(|l| l.contains("booting")), "{lines:?}");
    let st = c
        .stats(&uid)
        .await
        .unwrap()
        .expect("stats of a running game");
    assert!(st.memory_bytes > 0, "{st:?}");

    // Kill through the agent; the console ends with the game.
    node.kill(&name, "SIGKILL").await.unwrap();
    wait_for(Duration::from_secs(20), "the game to die", || async {
        let d = c.inspect(&uid).await.ok()??;
        (!d.running).then_some(())
    })
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(_)) = console.output.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the console must end when the game dies");

    // The world the game wrote comes back whole: pulled, unpacked with its sum checked, and
    // the same tree as on the node.
    assert!(dir.join("user/last_save").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("user/boots"))
            .unwrap()
            .trim(),
        "1"
    );
    let mut stream = c.pull_dir(&uid).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    let back = tempfile::tempdir().unwrap();
    let r = framing::unpack_framed(&got[..], back.path()).unwrap();
    let expected_sha = format!(
        "{:x}",
        Sha256::digest(&got[..got.len() - framing::TRAILER_LEN])
    );
    assert_eq!(r.sha256, expected_sha);
    assert_eq!(
        std::fs::read_to_string(dir.join("user/world.txt")).unwrap(),
        "the pushed world"
    );
    assert_eq!(
        std::fs::read_link(back.path().join("user/current")).unwrap(),
        Path::new("world.txt")
    );

    // A directory is not replaced or removed under a running game; a stopped one's is.
    engine.start_container(&name).await.unwrap();
    assert!(matches!(
        c.delete_dir(&uid).await,
        Err(AgentClientError::Busy(_))
    ));
    let (_other, framed) = framed_dir("not while it runs");
    match c.push_dir(&uid, chunks(framed)).await {
        Err(AgentClientError::Busy(m)) => assert!(m.contains("running"), "{m}"),
        other => panic!("a push under a running game must be refused, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("user/world.txt")).unwrap(),
        "the pushed world"
    );
    engine.kill_container(&name, "SIGKILL").await.unwrap();
    wait_for(Duration::from_secs(20), "the game to die again", || async {
        let d = c.inspect(&uid).await.ok()??;
        (!d.running).then_some(())
    })
    .await;
    assert!(c.delete_dir(&uid).await.unwrap());
    assert!(!dir.exists());
    assert!(matches!(
        c.pull_dir(&uid).await,
        Err(AgentClientError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_damaged_or_cut_push_leaves_the_old_directory_intact() {
    let a = AgentProc::start().await;
    let c = a.client();
    let uid = Uid::new(&support::unique("ag"), "beta").unwrap();
    let (_old_src, old) = framed_dir("the old world");
    c.push_dir(&uid, chunks(old)).await.unwrap();
    let dir = a.server_dir(&uid);
    let before = tree_digest(&dir);
    let (_new_src, new) = framed_dir("the new world");
    let body = new.len() - framing::TRAILER_LEN;

    let unchanged = async |what: &str| {
        wait_for(
            Duration::from_secs(20),
            "the agent to clear its staging",
            || async { a.staging_is_empty().then_some(()) },
        )
        .await;
        assert_eq!(
            tree_digest(&dir),
            before,
            "after {what}, the old directory changed"
        );
    };

    // A flipped byte inside the archive.
    let mut bad = new.clone();
    bad[body / 2] ^= 0xff;
    let e = c.push_dir(&uid, chunks(bad)).await.unwrap_err();
    assert!(matches!(e, AgentClientError::Damaged(_)), "{e:?}");
    assert!(e.to_string().contains("old directory is unchanged"), "{e}");
    unchanged("a damaged archive").await;

    // A whole archive with a trailer naming another sum.
    let mut wrong = new[..body].to_vec();
    wrong.extend(framing::trailer(&"0".repeat(64)));
    let e = c.push_dir(&uid, chunks(wrong)).await.unwrap_err();
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    unchanged("a wrong sum").await;

    // The stream ends before its trailer.
    let e = c
        .push_dir(&uid, chunks(new[..body].to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(e, AgentClientError::Damaged(_)), "{e:?}");
    unchanged("a missing trailer").await;

    // The sender fails halfway: the request is cut off.
    let half: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&new[..body / 2])),
        Err(std::io::Error::other("the source went away")),
    ];
    assert!(
        c.push_dir(&uid, futures_util::stream::iter(half))
            .await
            .is_err()
    );
    unchanged("a cut transfer").await;

    // A large archive damaged at its start: the agent refuses it while the rest still arrives,
    // and the sender gets the refusal, not a broken connection.
    let big = {
        let d = tempfile::tempdir().unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(24 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(d.path().join("noise"), noise).unwrap();
        let (out, _) = peon::backup::pack(
            d.path(),
            &peon::backup::glob::Globs::new::<&str>(&[]),
            Vec::new(),
        )
        .unwrap();
        out
    };
    let mut bad = big.clone();
    bad[1] ^= 0xff;
    bad.extend(framing::trailer(&"0".repeat(64)));
    let e = c.push_dir(&uid, chunks(bad)).await.unwrap_err();
    assert!(matches!(e, AgentClientError::Damaged(_)), "{e:?}");
    unchanged("a large damaged archive").await;

    // A whole one replaces it.
    c.push_dir(&uid, chunks(new)).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("user/world.txt")).unwrap(),
        "the new world"
    );
    assert!(a.staging_is_empty());
}

#[tokio::test]
async fn a_directory_moves_between_two_agents_with_its_checksum() {
    let (from, to) = (AgentProc::start().await, AgentProc::start().await);
    let uid = Uid::new(&support::unique("ag"), "gamma").unwrap();
    let (_src, framed) = framed_dir("a world that moves");
    let pushed = from.client().push_dir(&uid, chunks(framed)).await.unwrap();
    let src_digest = tree_digest(&from.server_dir(&uid));

    let copied = copy_dir(&from.client(), &to.client(), &uid).await.unwrap();
    // The target checked the source's sum; the tree is the same; the source is untouched.
    assert_eq!(copied.sha256.len(), 64);
    assert_eq!(copied.bytes, pushed.bytes);
    assert_eq!(tree_digest(&to.server_dir(&uid)), src_digest);
    assert_eq!(tree_digest(&from.server_dir(&uid)), src_digest);
    // A target that does not take the secret refuses the copy and keeps what it had.
    let stranger = AgentClient::new(&to.addr, Secret::new(&from.secret).unwrap()).unwrap();
    assert!(copy_dir(&from.client(), &stranger, &uid).await.is_err());
    assert_eq!(tree_digest(&to.server_dir(&uid)), src_digest);
}

/// The cluster side of a move, recorded; `fail` names the operation that fails.
struct FakeCluster {
    calls: std::sync::Mutex<Vec<String>>,
    fail: &'static str,
}

impl FakeCluster {
    fn run(&self, call: String) -> Result<(), peon::service::ServiceError> {
        let failed = call.starts_with(self.fail);
        self.calls.lock().unwrap().push(call.clone());
        if failed {
            Err(peon::service::ServiceError::Failed(format!(
                "{call} refused"
            )))
        } else {
            Ok(())
        }
    }
}

impl MoveOps for FakeCluster {
    fn stop<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, Result<(), peon::service::ServiceError>> {
        Box::pin(async move { self.run(format!("stop {uid}")) })
    }
    fn pin<'a>(
        &'a self,
        uid: &'a Uid,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), peon::service::ServiceError>> {
        Box::pin(async move { self.run(format!("pin {uid} {node}")) })
    }
    fn start<'a>(&'a self, uid: &'a Uid) -> BoxFuture<'a, Result<(), peon::service::ServiceError>> {
        Box::pin(async move { self.run(format!("start {uid}")) })
    }
}

#[tokio::test]
async fn a_move_copies_the_world_and_a_failed_one_leaves_it_on_the_old_node() {
    let (a, b) = (AgentProc::start().await, AgentProc::start().await);
    let (ca, cb) = (a.client(), b.client());
    let from = Side {
        node: "node-a",
        agent: &ca,
    };
    let to = Side {
        node: "node-b",
        agent: &cb,
    };

    // The start on the new node fails: back on the old node, its world untouched, no copy left.
    let uid = Uid::new(&support::unique("mv"), "one").unwrap();
    let (_src, framed) = framed_dir("a world to move");
    ca.push_dir(&uid, chunks(framed)).await.unwrap();
    let digest = tree_digest(&a.server_dir(&uid));
    let cluster = FakeCluster {
        calls: Default::default(),
        fail: "start",
    };
    let e = move_server(&cluster, &uid, from, to, true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("and on the way back"), "{e}");
    assert_eq!(
        *cluster.calls.lock().unwrap(),
        [
            format!("stop {uid}"),
            format!("pin {uid} node-b"),
            format!("start {uid}"),
            format!("stop {uid}"),
            format!("pin {uid} node-a"),
            format!("start {uid}"),
        ]
    );
    assert_eq!(tree_digest(&a.server_dir(&uid)), digest);
    assert!(
        !b.server_dir(&uid).exists(),
        "the copy on the new node is removed"
    );

    // A move of a directory the old node does not have: refused before any re-pin.
    let ghost = Uid::new(&support::unique("mv"), "ghost").unwrap();
    let cluster = FakeCluster {
        calls: Default::default(),
        fail: "none",
    };
    assert!(
        move_server(&cluster, &ghost, from, to, false)
            .await
            .is_err()
    );
    assert!(cluster.calls.lock().unwrap().is_empty());

    // A move that works: the world on the new node, the same tree, the old copy gone.
    let moved = move_server(&cluster, &uid, from, to, true).await.unwrap();
    assert_eq!(moved.sha256.len(), 64);
    assert_eq!(tree_digest(&b.server_dir(&uid)), digest);
    assert!(!a.server_dir(&uid).exists());
    assert_eq!(
        *cluster.calls.lock().unwrap(),
        [
            format!("stop {uid}"),
            format!("pin {uid} node-b"),
            format!("start {uid}"),
        ]
    );
}
