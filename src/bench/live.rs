//! `peon bench live`: in one run against the release daemon (this executable started as `peon
//! serve`, like `peon bench api`), the figures that matter in use, each beside its goal and,
//! where there is one, the engine's own figure:
//!
//! 1. idle resident memory (no servers);
//! 2. `GET /servers` requests per second with 10 running servers, under `wrk` (4 connections,
//!    2 threads);
//! 3. console round trip over the WebSocket `GET /ws/console/{uid}`: a command sent as a text
//!    frame until the game's `console: <command>` line comes back as a `log` frame;
//! 4. a burst of lines from the game (its `burst N` console command) while `GET /servers` is
//!    timed, and how many lines reached the WebSocket client (or its `throttled` notice);
//! 5. `GET /servers` median with 100 servers against the engine's own list call.
//!
//! The console rows say "n/a: route not available" when the daemon answers 404 there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::common::{Daemon, EngineArgs, Fixture, KEY, mib, timed_get};
use super::{ms, percentile};

/// Options of the live benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveBench {
    /// Servers for the list latency row.
    #[arg(long, default_value_t = 100)]
    pub servers: usize,
    /// Requests per latency measurement.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Seconds of wrk load for the throughput row.
    #[arg(long, default_value_t = 10)]
    pub wrk_seconds: u64,
    /// Console commands timed, one at a time.
    #[arg(long, default_value_t = 200)]
    pub commands: usize,
    /// Lines the game prints in the burst row.
    #[arg(long, default_value_t = 20_000)]
    pub burst: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Running servers during the throughput and console rows.
const THROUGHPUT_SERVERS: usize = 10;
/// The server whose console is used.
const CONSOLE_UID: &str = "bench.s0";
/// How long one console command may take to come back.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// The burst is over when no line came for this long.
const BURST_QUIET: Duration = Duration::from_secs(3);
/// What the rows say when the daemon has no console route.
const NO_ROUTE: &str = "n/a: route not available";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One line of the table.
struct Row {
    metric: String,
    peon: String,
    engine: String,
    goal: &'static str,
    /// `None`: not measured.
    met: Option<bool>,
    note: String,
}

impl Row {
    fn new(metric: impl Into<String>, goal: &'static str) -> Row {
        Row {
            metric: metric.into(),
            peon: String::new(),
            engine: "-".into(),
            goal,
            met: None,
            note: String::new(),
        }
    }

    fn unmeasured(mut self, why: impl Into<String>) -> Row {
        self.peon = why.into();
        self.met = None;
        self
    }
}

/// Runs the benchmark and prints the table.
pub async fn run(opts: LiveBench) -> Result<(), String> {
    let fixture = Fixture::prepare(&opts.engine, opts.servers.max(THROUGHPUT_SERVERS)).await?;
    let result = measure(&opts, &fixture).await;
    fixture.cleanup().await;
    print_table(&result?);
    Ok(())
}

async fn measure(opts: &LiveBench, fixture: &Fixture) -> Result<Vec<Row>, String> {
    let mut d = fixture.start_daemon().await?;
    eprintln!("peon bench live: daemon pid {}", d.pid);
    let mut rows = Vec::new();

    // Measured first, printed last.
    let mut idle = Row::new("idle memory (no servers)", "<= 12 MiB");
    match d.rss_kib() {
        Some(kib) => {
            idle.peon = format!("{} RSS", mib(kib));
            idle.met = Some(kib <= 12 * 1024);
        }
        None => idle = idle.unmeasured("n/a: no /proc"),
    }

    eprintln!("creating {THROUGHPUT_SERVERS} servers");
    d.grow_to(THROUGHPUT_SERVERS).await?;
    rows.push(throughput(&d, opts.wrk_seconds).await);

    match console(&d.base, CONSOLE_UID).await {
        Ok(Some(mut ws)) => {
            rows.push(round_trips(&mut ws, opts.commands).await);
            rows.extend(burst(&d.http, d.url("/servers"), &mut ws, opts.burst).await);
            let _ = ws.close(None).await;
        }
        absent => {
            let why = match absent {
                Err(e) => format!("error: {e}"),
                _ => NO_ROUTE.to_owned(),
            };
            rows.push(Row::new("console round trip p99", "< 50 ms").unmeasured(why.clone()));
            rows.push(Row::new("GET /servers p50 during a burst", "< 10 ms").unmeasured(why));
        }
    }

    eprintln!("creating {} servers", opts.servers);
    d.grow_to(opts.servers).await?;
    eprintln!(
        "GET /servers and the engine's list, {} times each",
        opts.requests
    );
    let mut list = d.time_get("/servers", opts.requests).await?;
    let mut eng = fixture.time_engine_list(opts.requests).await?;
    let (p, e) = (percentile(&mut list, 0.5), percentile(&mut eng, 0.5));
    let ratio = p.as_secs_f64() / e.as_secs_f64().max(1e-9);
    let mut row = Row::new(
        format!("GET /servers p50, {} servers", d.made()),
        "<= 0.5x engine",
    );
    row.peon = format!("{} ms", ms(p));
    row.engine = format!("{} ms (list)", ms(e));
    row.met = Some(ratio <= 0.5);
    row.note = format!("{ratio:.2}x");
    rows.insert(0, row);

    rows.push(idle);
    let mut row = Row::new(format!("memory with {} servers", d.made()), "-");
    row.peon = d
        .rss_kib()
        .map_or_else(|| "n/a".into(), |k| format!("{} RSS", mib(k)));
    rows.push(row);
    Ok(rows)
}

/// `wrk -t2 -c4` on `GET /servers`.
async fn throughput(d: &Daemon, seconds: u64) -> Row {
    let row = Row::new(
        format!("GET /servers req/s, {THROUGHPUT_SERVERS} servers (wrk -c4 -t2)"),
        ">= 10000",
    );
    eprintln!("wrk: {seconds} s on GET /servers");
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c4", &format!("-d{seconds}s"), "-H"])
        .arg(format!("X-Api-Key: {KEY}"))
        .arg(d.url("/servers"))
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return row.unmeasured("n/a: wrk is not installed (apt-get install wrk)");
        }
        Err(e) => return row.unmeasured(format!("error: cannot run wrk: {e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_wrk(&text) {
        Some((rps, non_2xx)) => {
            let mut row = row;
            row.peon = format!("{rps:.0}");
            row.met = Some(rps >= 10_000.0 && non_2xx == 0);
            if non_2xx > 0 {
                row.note = format!("{non_2xx} answers not 2xx");
            }
            row
        }
        None => row.unmeasured(format!(
            "error: no Requests/sec in wrk's output: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Requests per second and the count of non-2xx/3xx answers from wrk's report.
fn parse_wrk(out: &str) -> Option<(f64, u64)> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let bad = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((rps, bad))
}

/// Opens the console of `uid` below `base` (`http://host:port/api/v1`) and waits for its
/// `connected` frame; `None` when the daemon has no such route (404).
async fn console(base: &str, uid: &str) -> Result<Option<Ws>, String> {
    let url = format!("{}/ws/console/{uid}", base.replacen("http://", "ws://", 1));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("X-Api-Key", HeaderValue::from_static(KEY));
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(r)) if r.status() == 404 => return Ok(None),
        Err(tungstenite::Error::Http(r)) => {
            let body = r
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            return Err(format!("{url}: {} {body}", r.status()));
        }
        Err(e) => return Err(format!("{url}: {e}")),
    };
    let connected = tokio::time::timeout(COMMAND_TIMEOUT, async {
        loop {
            match next_frame(&mut ws).await? {
                Frame::Other(v) if v["type"] == "connected" => return Ok(()),
                _ => {}
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => Ok(Some(ws)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no `connected` frame".into()),
    }
}

/// A text frame from the console.
enum Frame {
    /// `{"type":"log","data":...}`.
    Log(String),
    /// An error frame that speaks of throttling.
    Throttled,
    /// Any other frame, as JSON (`Null` when it is not JSON).
    Other(Value),
}

async fn next_frame(ws: &mut Ws) -> Result<Frame, String> {
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the console closed".into()),
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(c) => return Err(format!("the console closed: {c:?}")),
            _ => continue,
        };
        let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        return Ok(match v["type"].as_str() {
            Some("log") => Frame::Log(v["data"].as_str().unwrap_or_default().to_owned()),
            Some("error") if text.as_str().contains("throttl") => Frame::Throttled,
            _ => Frame::Other(v),
        });
    }
}

/// Sends `ping-<n>` one at a time; the time until `console: ping-<n>` comes back.
async fn round_trips(ws: &mut Ws, commands: usize) -> Row {
    let row = Row::new(
        format!("console round trip p99 ({commands} commands)"),
        "< 50 ms",
    );
    eprintln!("console: {commands} round trips");
    let mut times = Vec::with_capacity(commands);
    for n in 0..commands {
        let want = format!("console: ping-{n}");
        let t = Instant::now();
        if let Err(e) = ws.send(Message::text(format!("ping-{n}"))).await {
            return row.unmeasured(format!("error: send: {e}"));
        }
        let back = tokio::time::timeout(COMMAND_TIMEOUT, async {
            loop {
                if let Frame::Log(l) = next_frame(ws).await? {
                    if l.trim_end().ends_with(&want) {
                        return Ok::<_, String>(());
                    }
                }
            }
        })
        .await;
        match back {
            Ok(Ok(())) => times.push(t.elapsed()),
            Ok(Err(e)) => return row.unmeasured(format!("error after {n} commands: {e}")),
            Err(_) => {
                return row.unmeasured(format!(
                    "error: ping-{n} did not come back within {}s",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
        }
    }
    let p99 = percentile(&mut times, 0.99);
    let mut row = row;
    row.peon = format!("{} ms", ms(p99));
    row.met = Some(p99 < Duration::from_millis(50));
    row.note = format!("p50 {} ms", ms(percentile(&mut times, 0.5)));
    row
}

/// `burst <lines>` on the console while a second task times `GET list_url` (the daemon's
/// `/servers`); the lines that reach this client (or the throttled notice).
async fn burst(http: &reqwest::Client, list_url: String, ws: &mut Ws, lines: usize) -> Vec<Row> {
    let mut lat_row = Row::new(
        format!("GET /servers p50 during a {lines}-line burst"),
        "< 10 ms",
    );
    let mut got_row = Row::new("burst lines delivered", "all, or throttled notice");
    eprintln!("console: burst of {lines} lines");
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let (stop, http, url) = (stop.clone(), http.clone(), list_url);
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                times.push(timed_get(&http, &url).await?);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, String>(times)
        })
    };
    let started = Instant::now();
    let mut delivered = 0usize;
    let mut throttled = false;
    let mut error = None;
    if let Err(e) = ws.send(Message::text(format!("burst {lines}"))).await {
        error = Some(format!("send: {e}"));
    }
    let mut last = Instant::now();
    while error.is_none() && delivered < lines {
        match tokio::time::timeout(BURST_QUIET, next_frame(ws)).await {
            Ok(Ok(Frame::Log(l))) if l.starts_with("burst ") => {
                delivered += 1;
                last = Instant::now();
            }
            Ok(Ok(Frame::Throttled)) => throttled = true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error = Some(e),
            Err(_) => break,
        }
    }
    let took = last.duration_since(started);
    stop.store(true, Ordering::Relaxed);
    match timer.await {
        Ok(Ok(mut times)) => {
            let p50 = percentile(&mut times, 0.5);
            lat_row.peon = format!("{} ms", ms(p50));
            lat_row.met = Some(p50 < Duration::from_millis(10));
            lat_row.note = format!("{} requests", times.len());
        }
        Ok(Err(e)) => lat_row = lat_row.unmeasured(format!("error: {e}")),
        Err(e) => lat_row = lat_row.unmeasured(format!("error: {e}")),
    }
    got_row.peon = format!("{delivered}/{lines} in {:.2} s", took.as_secs_f64());
    got_row.met = Some(delivered == lines || throttled);
    got_row.note = match (&error, throttled) {
        (Some(e), _) => format!("error: {e}"),
        (None, true) => "throttled notice".into(),
        (None, false) => String::new(),
    };
    vec![lat_row, got_row]
}

fn print_table(rows: &[Row]) {
    let w = |f: fn(&Row) -> &str, head: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .chain([head.len()])
            .max()
            .unwrap_or(0)
    };
    let (wm, wp, we, wg) = (
        w(|r| &r.metric, "metric"),
        w(|r| &r.peon, "peon"),
        w(|r| &r.engine, "engine"),
        w(|r| r.goal, "goal"),
    );
    println!();
    println!(
        "{:wm$} | {:wp$} | {:we$} | {:wg$} | met?",
        "metric", "peon", "engine", "goal"
    );
    println!("{}", "-".repeat(wm + wp + we + wg + 17));
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "n/a",
        };
        let note = if r.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.note)
        };
        println!(
            "{:wm$} | {:wp$} | {:we$} | {:wg$} | {met}{note}",
            r.metric, r.peon, r.engine, r.goal
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console server speaking the daemon's protocol on 127.0.0.1: a `connected` frame, then
    /// each text frame echoed back as the game would, `console: <line>` in a `log` frame. It
    /// answers 404 for the uid `missing`, like a daemon without the route, and 401 without
    /// `X-Api-Key`.
    #[allow(
        clippy::result_large_err,
        reason = "the handshake callback's error type is tungstenite's"
    )]
    async fn fake_console() -> String {
        use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
        use tokio_tungstenite::tungstenite::http::StatusCode;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let check = |req: &Request, resp: Response| {
                        let status = if req.uri().path().ends_with("/missing") {
                            StatusCode::NOT_FOUND
                        } else if req.headers().get("x-api-key").is_none() {
                            StatusCode::UNAUTHORIZED
                        } else {
                            return Ok(resp);
                        };
                        let mut e = ErrorResponse::new(None);
                        *e.status_mut() = status;
                        Err(e)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
                        return;
                    };
                    let frame = |v: Value| Message::text(v.to_string());
                    let _ = ws
                        .send(frame(serde_json::json!({"type": "connected"})))
                        .await;
                    while let Some(Ok(Message::Text(t))) = ws.next().await {
                        let mut lines = vec![format!("console: {}", t.as_str())];
                        if let Some(n) = t.as_str().strip_prefix("burst ") {
                            let n: usize = n.parse().unwrap();
                            lines.extend((0..n).map(|i| format!("burst {i}")));
                        }
                        for line in lines {
                            let v = serde_json::json!({"type": "log", "data": line});
                            let _ = ws.send(frame(v)).await;
                        }
                    }
                });
            }
        });
        format!("http://{addr}/api/v1")
    }

    #[tokio::test]
    async fn console_round_trips_are_timed() {
        let base = fake_console().await;
        let mut ws = console(&base, "bench.s0").await.unwrap().unwrap();
        let row = round_trips(&mut ws, 20).await;
        // Whether the goal is met depends on the machine: only that it was judged is checked.
        assert!(row.met.is_some(), "{}", row.peon);
        assert!(row.peon.ends_with(" ms"), "{}", row.peon);
    }

    #[tokio::test]
    async fn a_burst_is_counted_while_the_list_is_timed() {
        let base = fake_console().await;
        let app = axum::Router::new().route("/servers", axum::routing::get(|| async { "[]" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let list_url = format!("http://{}/servers", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut ws = console(&base, "bench.s0").await.unwrap().unwrap();
        let http = crate::http::client_builder().build().unwrap();
        let rows = burst(&http, list_url, &mut ws, 2000).await;
        // The latency row is judged against its goal (not asserted: it depends on the machine).
        assert!(rows[0].met.is_some(), "{}", rows[0].peon);
        assert!(rows[0].peon.ends_with(" ms"), "{}", rows[0].peon);
        assert!(
            rows[1].peon.starts_with("2000/2000 in "),
            "{}",
            rows[1].peon
        );
        assert_eq!(rows[1].met, Some(true));
    }

    #[tokio::test]
    async fn a_missing_console_route_is_not_an_error() {
        let base = fake_console().await;
        assert!(console(&base, "missing").await.unwrap().is_none());
    }

    #[test]
    fn wrk_reports_are_read() {
        let out = "Running 10s test @ http://127.0.0.1:5000/api/v1/servers\n  2 threads and 4 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   250.00us  100.00us   5.00ms   90.00%\n  120000 requests in 10.00s, 50.00MB read\nRequests/sec:  12000.50\nTransfer/sec:      5.00MB\n";
        assert_eq!(parse_wrk(out), Some((12000.5, 0)));
        let bad = "  Non-2xx or 3xx responses: 42\nRequests/sec:   900.00\n";
        assert_eq!(parse_wrk(bad), Some((900.0, 42)));
        assert_eq!(parse_wrk("wrk: connection refused"), None);
    }
}
