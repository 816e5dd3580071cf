//! Prometheus metrics (text format 0.0.4), with the `prometheus-client` crate.
//!
//! Two kinds of series:
//!
//! - counted as things happen ([`Metrics`]'s recording methods): API requests and their
//!   latency by route template, jobs by kind and result, backups, the engine connection;
//! - read at scrape time from the live model through a source the service installs
//!   ([`Metrics::set_servers`]): each server's state, readiness, restarts, exits by class,
//!   CPU and memory (the last sample of the service's stats sampler: a scrape makes no engine
//!   call), players when known.
//!
//! This module imports nothing of peon's: the service feeds it plain values.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The states a server's `peon_server_state` series are given for (one is 1, the others 0).
pub const STATES: [&str; 10] = [
    "missing",
    "created",
    "starting",
    "running",
    "unhealthy",
    "stopping",
    "exited",
    "paused",
    "restarting",
    "dead",
];

/// One server as a scrape sees it.
#[derive(Debug, Clone, Default)]
pub struct ServerSample {
    pub uid: String,
    pub game: String,
    /// PEON's `server_state`.
    pub state: String,
    /// Running and ready.
    pub ready: bool,
    /// Automatic restarts since the daemon started.
    pub restarts: u64,
    /// Exits since the daemon started, by class (every class, zeros included).
    pub exits: Vec<(&'static str, u64)>,
    /// The last stats sample, while the game runs.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// Players online and the maximum, when the game reports them.
    pub players: Option<u32>,
    pub max_players: Option<u32>,
}

type Source = Box<dyn Fn() -> Vec<ServerSample> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn job_histogram() -> Histogram {
    // 50 ms to about 14 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

fn size_histogram() -> Histogram {
    // 1 MiB to 64 GiB.
    Histogram::new(exponential_buckets(1_048_576.0, 4.0, 9))
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    jobs: Family<JobLabels, Counter>,
    job_seconds: Family<JobLabels, Histogram, fn() -> Histogram>,
    backups: Family<JobLabels, Counter>,
    backup_bytes: Family<KindLabels, Histogram, fn() -> Histogram>,
    backup_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    engine_connected: Gauge,
    servers: Arc<Servers>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("peon");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests by method, route template and status",
            requests.clone(),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "API request latency (until the response head) by method and route template",
            latency.clone(),
        );
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs ended, by kind and result", jobs.clone());
        let job_seconds: Family<JobLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(job_histogram);
        registry.register(
            "job_duration_seconds",
            "Job durations by kind and result",
            job_seconds.clone(),
        );
        let backups = Family::<JobLabels, Counter>::default();
        registry.register(
            "backups",
            "Backups ended, by kind and result",
            backups.clone(),
        );
        let backup_bytes: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(size_histogram);
        registry.register(
            "backup_size_bytes",
            "Sizes of the backups made, by kind",
            backup_bytes.clone(),
        );
        let backup_seconds: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(job_histogram);
        registry.register(
            "backup_duration_seconds",
            "Backup durations by kind",
            backup_seconds.clone(),
        );
        let engine_connected = Gauge::default();
        registry.register(
            "engine_connected",
            "1 while the daemon follows the container engine's event stream",
            engine_connected.clone(),
        );
        let servers = Arc::new(Servers::default());
        registry.register_collector(Box::new(servers.clone()));
        Metrics {
            registry,
            requests,
            latency,
            jobs,
            job_seconds,
            backups,
            backup_bytes,
            backup_seconds,
            engine_connected,
            servers,
        }
    }

    /// Installs what a scrape reads the servers from (once).
    pub fn set_servers(&self, f: impl Fn() -> Vec<ServerSample> + Send + Sync + 'static) {
        let _ = self.servers.source.set(Box::new(f));
    }

    /// One API request: `route` is the matched template without the base path (`unmatched`
    /// when none matched).
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// A job ended: `result` is `succeeded` or `failed`.
    pub fn job_done(&self, kind: &str, result: &str, seconds: f64) {
        let l = JobLabels {
            kind: kind.to_owned(),
            result: result.to_owned(),
        };
        self.jobs.get_or_create(&l).inc();
        self.job_seconds.get_or_create(&l).observe(seconds);
    }

    /// A backup ended (for the backup code to call): its kind (e.g. `full`, `world`), its size
    /// in bytes (ignored when it failed), how long it took, and whether it succeeded.
    pub fn backup_done(&self, kind: &str, bytes: u64, seconds: f64, ok: bool) {
        let result = if ok { "succeeded" } else { "failed" };
        self.backups
            .get_or_create(&JobLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        let k = KindLabels {
            kind: kind.to_owned(),
        };
        if ok {
            #[allow(clippy::cast_precision_loss)]
            self.backup_bytes.get_or_create(&k).observe(bytes as f64);
        }
        self.backup_seconds.get_or_create(&k).observe(seconds);
    }

    /// Whether the daemon follows the engine's event stream now.
    pub fn engine_connected(&self, connected: bool) {
        self.engine_connected.set(i64::from(connected));
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }
}

/// The per-server families, read from the live model at scrape time.
#[derive(Default)]
struct Servers {
    source: OnceLock<Source>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Servers")
    }
}

/// A value a scrape reads, as the crate's const metrics do.
struct Value<T>(T, MetricType);

impl EncodeMetric for Value<i64> {
    fn encode(
        &self,
        mut e: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        match self.1 {
            MetricType::Counter => {
                #[allow(clippy::cast_sign_loss)]
                let v = self.0.max(0) as u64;
                e.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
            }
            _ => e.encode_gauge(&self.0),
        }
    }
    fn metric_type(&self) -> MetricType {
        self.1
    }
}

impl EncodeMetric for Value<f64> {
    fn encode(
        &self,
        mut e: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        e.encode_gauge(&self.0)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Writes one family: `rows` are the label pairs and value of each series.
fn family<'a, V: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl Iterator<Item = (Vec<(&'a str, &'a str)>, V)>,
) -> Result<(), std::fmt::Error> {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Servers {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let all = source();
        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;
        family(
            &mut enc,
            "servers",
            "Servers known to the daemon",
            gauge,
            std::iter::once((
                Vec::new(),
                Value(i64::try_from(all.len()).unwrap_or(i64::MAX), gauge),
            )),
        )?;
        family(
            &mut enc,
            "server_state",
            "1 for the server's current state (PEON's server_state), 0 for the others",
            gauge,
            all.iter().flat_map(|s| {
                let extra = (!STATES.contains(&s.state.as_str())).then_some(s.state.as_str());
                STATES.iter().copied().chain(extra).map(move |st| {
                    (
                        vec![
                            ("uid", s.uid.as_str()),
                            ("game", s.game.as_str()),
                            ("state", st),
                        ],
                        Value(i64::from(s.state == st), gauge),
                    )
                })
            }),
        )?;
        family(
            &mut enc,
            "server_ready",
            "1 while the game runs and is ready",
            gauge,
            all.iter().map(|s| {
                (
                    vec![("uid", s.uid.as_str())],
                    Value(i64::from(s.ready), gauge),
                )
            }),
        )?;
        family(
            &mut enc,
            "server_restarts",
            "Automatic restarts since the daemon started",
            counter,
            all.iter().map(|s| {
                (
                    vec![("uid", s.uid.as_str())],
                    Value(i64::try_from(s.restarts).unwrap_or(i64::MAX), counter),
                )
            }),
        )?;
        family(
            &mut enc,
            "server_exits",
            "Exits of the game since the daemon started, by class (crash, out_of_memory, ...)",
            counter,
            all.iter().flat_map(|s| {
                s.exits.iter().map(move |(class, n)| {
                    (
                        vec![("uid", s.uid.as_str()), ("class", *class)],
                        Value(i64::try_from(*n).unwrap_or(i64::MAX), counter),
                    )
                })
            }),
        )?;
        family(
            &mut enc,
            "server_cpu_percent",
            "CPU use of the running game (100 = one core), from the last stats sample",
            gauge,
            all.iter().filter_map(|s| {
                Some((vec![("uid", s.uid.as_str())], Value(s.cpu_percent?, gauge)))
            }),
        )?;
        let bytes = |v: Option<u64>| v.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        family(
            &mut enc,
            "server_memory_bytes",
            "Memory use of the running game, from the last stats sample",
            gauge,
            all.iter().filter_map(|s| {
                Some((
                    vec![("uid", s.uid.as_str())],
                    Value(bytes(s.memory_bytes)?, gauge),
                ))
            }),
        )?;
        family(
            &mut enc,
            "server_memory_limit_bytes",
            "Memory limit of the running game, from the last stats sample",
            gauge,
            all.iter().filter_map(|s| {
                Some((
                    vec![("uid", s.uid.as_str())],
                    Value(bytes(s.memory_limit_bytes)?, gauge),
                ))
            }),
        )?;
        family(
            &mut enc,
            "server_players",
            "Players online, when the game reports them",
            gauge,
            all.iter().filter_map(|s| {
                Some((
                    vec![("uid", s.uid.as_str())],
                    Value(i64::from(s.players?), gauge),
                ))
            }),
        )?;
        family(
            &mut enc,
            "server_max_players",
            "The game's player limit, when it reports one",
            gauge,
            all.iter().filter_map(|s| {
                Some((
                    vec![("uid", s.uid.as_str())],
                    Value(i64::from(s.max_players?), gauge),
                ))
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_the_servers_of_the_source() {
        let m = Metrics::new();
        m.request("GET", "/servers", 200, 0.002);
        m.job_done("start", "succeeded", 1.5);
        m.backup_done("full", 3 << 20, 2.0, true);
        m.engine_connected(true);
        m.set_servers(|| {
            vec![ServerSample {
                uid: "demo.a".into(),
                game: "demo".into(),
                state: "running".into(),
                ready: true,
                restarts: 2,
                exits: vec![("crash", 1), ("out_of_memory", 0)],
                cpu_percent: Some(12.5),
                memory_bytes: Some(1024),
                memory_limit_bytes: None,
                players: None,
                max_players: None,
            }]
        });
        let out = m.render();
        for want in [
            r#"peon_http_requests_total{method="GET",route="/servers",status="200"} 1"#,
            r#"peon_http_request_duration_seconds_count{method="GET",route="/servers"} 1"#,
            r#"peon_jobs_total{kind="start",result="succeeded"} 1"#,
            r#"peon_backups_total{kind="full",result="succeeded"} 1"#,
            "peon_engine_connected 1",
            "peon_servers 1",
            r#"peon_server_state{uid="demo.a",game="demo",state="running"} 1"#,
            r#"peon_server_state{uid="demo.a",game="demo",state="exited"} 0"#,
            r#"peon_server_ready{uid="demo.a"} 1"#,
            r#"peon_server_restarts_total{uid="demo.a"} 2"#,
            r#"peon_server_exits_total{uid="demo.a",class="crash"} 1"#,
            r#"peon_server_cpu_percent{uid="demo.a"} 12.5"#,
            r#"peon_server_memory_bytes{uid="demo.a"} 1024"#,
        ] {
            assert!(out.contains(want), "{want} missing in:\n{out}");
        }
        // Unknown values are left out, not written as zeros.
        assert!(!out.contains("peon_server_players"), "{out}");
        assert!(!out.contains("peon_server_memory_limit_bytes{"), "{out}");
    }
}
