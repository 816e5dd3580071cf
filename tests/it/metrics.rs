//! Metrics: `/metrics` behind the key and on the key-less metrics listener, in a form
//! `promtool check metrics` accepts (Debian's `prometheus` package), and scraped by a real
//! Prometheus started by the test.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{Daemon, Opts, free_port, wait_for};

/// Runs `promtool check metrics` on `text`; panics with its output when it finds a problem.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: install Debian's prometheus package (scripts/ensure-deps)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server on a free 127.0.0.1 port scraping `target` every second, with its
/// config and storage in a temporary directory; killed and removed on drop.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: peon\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the prometheus config");
        let port = free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "prometheus is missing: install Debian's prometheus package (scripts/ensure-deps)",
            );
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn metrics_pass_promtool_and_a_real_prometheus_scrapes_the_servers() {
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let d = Daemon::start_with(Opts {
        metrics_listen: Some(listen),
        stats_interval: Some(1),
        ..Opts::default()
    })
    .await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.m");
    d.create_running(&uid).await;

    // Behind the key on the API, and without it on the metrics address.
    let res = d
        .http
        .get(format!("{}/metrics", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = d.get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let open = format!("http://{listen}/metrics");
    let ready = format!(r#"peon_server_ready{{uid="{uid}"}} 1"#);
    let cpu = format!(r#"peon_server_cpu_percent{{uid="{uid}"}}"#);
    let text = wait_for(Duration::from_secs(20), "the server's metrics", || async {
        let res = d.http.get(&open).send().await.ok()?;
        let ct = res.headers().get("content-type")?.to_str().ok()?.to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let text = res.text().await.ok()?;
        (text.contains(&ready) && text.contains(&cpu)).then_some(text)
    })
    .await;
    for want in [
        format!(r#"peon_server_state{{uid="{uid}",game="{game}",state="running"}} 1"#),
        format!(r#"peon_server_exits_total{{uid="{uid}",class="crash"}} 0"#),
        format!(r#"peon_server_memory_bytes{{uid="{uid}"}}"#),
        r#"peon_jobs_total{kind="create",result="succeeded"} 1"#.to_owned(),
        r#"peon_http_requests_total{method="PUT",route="/server/create/{uid}",status="200"} 1"#
            .to_owned(),
        "peon_engine_connected 1".to_owned(),
    ] {
        assert!(text.contains(&want), "{want} missing in:\n{text}");
    }
    promtool_check(&text);

    let prom = Prometheus::start(&listen.to_string());
    let query = format!(
        "{}/api/v1/query?query=peon_server_ready{{uid=\"{uid}\"}}",
        prom.url
    );
    let started = Instant::now();
    let series = wait_for(
        Duration::from_secs(30),
        "Prometheus to scrape peon",
        || async {
            let v: serde_json::Value = d.http.get(&query).send().await.ok()?.json().await.ok()?;
            let r = v["data"]["result"].as_array()?.first()?.clone();
            Some(r)
        },
    )
    .await;
    println!("Prometheus had the series after {:?}", started.elapsed());
    assert_eq!(series["metric"]["job"], "peon", "{series}");
    assert_eq!(series["value"][1], "1", "{series}");
    drop(prom);
    d.cleanup().await;
}
