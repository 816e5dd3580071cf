//! Webhooks against local HTTP receivers started by the tests: a crash reaches a generic
//! receiver (signature checked) and a Discord-shaped one, a slow receiver delays no other
//! hook, a failing one gets retries then a dead letter, and a receiver that was down during a
//! crash gets the message after it returns, across a daemon restart.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{Daemon, Opts, free_port, wait_for};

/// How a receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    Ok,
    Fail,
    Slow(Duration),
}

/// One request a receiver got.
#[derive(Clone)]
struct Got {
    headers: HeaderMap,
    raw: Vec<u8>,
    body: Value,
    at: Instant,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    /// Requests that got their answer (a slow receiver answers late).
    answered: Arc<Mutex<usize>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), mode).await
    }

    async fn start_on(addr: SocketAddr, mode: Mode) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let answered: Arc<Mutex<usize>> = Arc::default();
        let state = (got.clone(), answered.clone(), mode);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Receiver {
            url,
            got,
            answered,
            task: Arc::new(task),
        }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for a message of `event` about `uid`.
    async fn wait(&self, event: &str, uid: &str, within: Duration) -> Got {
        wait_for(
            within,
            &format!("a {event} message at {}", self.url),
            || async {
                self.got().into_iter().find(|g| {
                    header(&g.headers, "x-peon-event") == event
                        && (g.body["uid"] == uid
                            || g.body["embeds"][0]["title"]
                                .as_str()
                                .is_some_and(|t| t.starts_with(uid)))
                })
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

type RState = (Arc<Mutex<Vec<Got>>>, Arc<Mutex<usize>>, Mode);

async fn receive(
    State((got, answered, mode)): State<RState>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> AxStatus {
    got.lock().unwrap().push(Got {
        headers,
        raw: raw.to_vec(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    let status = match mode {
        Mode::Ok => AxStatus::NO_CONTENT,
        Mode::Fail => AxStatus::INTERNAL_SERVER_ERROR,
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            AxStatus::OK
        }
    };
    *answered.lock().unwrap() += 1;
    status
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

async fn add_hook(d: &Daemon, body: Value) {
    let (s, v) = d.post("/hooks", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v.get("secret").is_none(), "{v}");
}

async fn crash(d: &Daemon, uid: &str) -> Instant {
    let (s, v) = d
        .post(
            &format!("/server/command/{uid}"),
            json!({"command": "crash"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    Instant::now()
}

fn fast_retries() -> Opts {
    Opts {
        hooks: Some((3, 100)),
        ..Opts::default()
    }
}

#[tokio::test]
async fn a_crash_reaches_a_signed_receiver_and_a_discord_one_while_a_slow_one_waits() {
    let d = Daemon::start_with(fast_retries()).await;
    let generic = Receiver::start(Mode::Ok).await;
    let discord = Receiver::start(Mode::Ok).await;
    let slow = Receiver::start(Mode::Slow(Duration::from_secs(30))).await;
    add_hook(&d, json!({"id": "slow", "url": slow.url, "events": ["*"]})).await;
    add_hook(
        &d,
        json!({"id": "ops", "url": generic.url, "events": ["crashed"], "secret": "s3cret"}),
    )
    .await;
    add_hook(
        &d,
        json!({"id": "chat", "url": discord.url, "events": ["crashed", "gave_up"], "format": "discord"}),
    )
    .await;
    let (_, v) = d.get("/hooks").await;
    assert!(!v.to_string().contains("s3cret"), "{v}");
    assert_eq!(v[1]["signed"], true, "{v}");
    assert_eq!(v[0]["format"], "discord", "{v}");

    let (game, _) = d.new_game(1);
    let uid = format!("{game}.hook");
    d.create_running(&uid).await;
    let sent = crash(&d, &uid).await;

    let g = generic.wait("crashed", &uid, Duration::from_secs(5)).await;
    println!(
        "the crash reached the generic receiver after {:?}",
        g.at - sent
    );
    assert_eq!(
        header(&g.headers, "x-peon-signature"),
        sign("s3cret", &g.raw)
    );
    assert!(!header(&g.headers, "x-peon-delivery").is_empty());
    assert_eq!(g.body["event"], "crashed");
    assert_eq!(g.body["data"]["exit"]["class"], "crash", "{}", g.body);
    let lines: Vec<&str> = g.body["last_lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("game: crashing")),
        "{lines:?}"
    );

    let c = discord.wait("crashed", &uid, Duration::from_secs(5)).await;
    println!(
        "the crash reached the Discord receiver after {:?}",
        c.at - sent
    );
    let e = &c.body["embeds"][0];
    assert_eq!(e["title"], format!("{uid}: crashed"), "{}", c.body);
    assert!(e["color"].is_u64(), "{e}");
    let desc = e["description"].as_str().unwrap();
    assert!(
        desc.contains("```") && desc.contains("game: crashing"),
        "{desc}"
    );
    assert!(header(&c.headers, "x-peon-signature").is_empty());

    // The slow receiver has not answered its first message yet: it held up nobody.
    slow.wait("crashed", &uid, Duration::from_secs(5)).await;
    assert_eq!(*slow.answered.lock().unwrap(), 0);
    d.cleanup().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_then_a_dead_letter() {
    let d = Daemon::start_with(fast_retries()).await;
    let failing = Receiver::start(Mode::Fail).await;
    add_hook(
        &d,
        json!({"id": "down", "url": failing.url, "events": ["crashed"]}),
    )
    .await;
    let (s, v) = d.post("/hook/down/test", json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let detail = wait_for(Duration::from_secs(10), "the dead letter", || async {
        let (_, v) = d.get("/hook/down").await;
        (v["hook"]["status"]["dead"] == 1).then_some(v)
    })
    .await;
    let dead = &detail["dead_letters"][0];
    assert_eq!(dead["attempts"], 3, "{detail}");
    assert_eq!(dead["event"], "test", "{detail}");
    assert!(dead["error"].as_str().unwrap().contains("500"), "{detail}");
    assert_eq!(detail["hook"]["status"]["failed_attempts"], 3, "{detail}");
    assert_eq!(detail["hook"]["status"]["pending"], 0, "{detail}");
    let got = failing.got();
    assert_eq!(got.len(), 3);
    // One delivery, three attempts: the same delivery id each time.
    assert!(got.iter().all(
        |g| header(&g.headers, "x-peon-delivery") == header(&got[0].headers, "x-peon-delivery")
    ));
    let dead_file = std::fs::read_to_string(d.data.join("hooks/dead.jsonl")).unwrap();
    assert_eq!(dead_file.lines().count(), 1);
    assert_eq!(
        std::fs::read_dir(d.data.join("hooks/queue"))
            .unwrap()
            .count(),
        0
    );

    let (s, _) = d.get("/hook/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = d
        .post(
            "/hooks",
            json!({"id": "x", "url": "ftp://h/", "events": ["crashed"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = d
        .post(
            "/hooks",
            json!({"id": "x", "url": failing.url, "events": ["exploded"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = d.delete("/hook/down", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = d.get("/hooks").await;
    assert_eq!(v, json!([]));
}

#[tokio::test]
async fn a_receiver_down_during_a_crash_gets_it_after_a_daemon_restart() {
    let mut d = Daemon::start_with(Opts {
        hooks: Some((100, 200)),
        ..Opts::default()
    })
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    add_hook(
        &d,
        json!({"id": "later", "url": format!("http://{addr}/hook"), "events": ["crashed"]}),
    )
    .await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.down");
    d.create_running(&uid).await;
    crash(&d, &uid).await;
    // The delivery failed at least once and waits in the queue on disk.
    wait_for(Duration::from_secs(10), "a failed attempt", || async {
        let (_, v) = d.get("/hook/later").await;
        (v["hook"]["status"]["failed_attempts"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    d.stop().await;
    let queued = std::fs::read_dir(d.data.join("hooks/queue"))
        .unwrap()
        .count();
    assert_eq!(queued, 1);

    let receiver = Receiver::start_on(addr, Mode::Ok).await;
    d.restart().await;
    let back = Instant::now();
    let g = receiver
        .wait("crashed", &uid, Duration::from_secs(10))
        .await;
    println!("delivered {:?} after the daemon came back", g.at - back);
    assert_eq!(g.body["uid"], uid.as_str());
    wait_for(Duration::from_secs(5), "the queue to empty", || async {
        (std::fs::read_dir(d.data.join("hooks/queue")).ok()?.count() == 0).then_some(())
    })
    .await;
    d.cleanup().await;
}
