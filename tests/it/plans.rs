//! Plans: updating from a plan source served by a local HTTP server (tarball and base-URL
//! forms) or a local folder, what `GET /plans`, `PUT /plans` and `GET /plan` answer, creating a
//! server from every fixture plan against the real engine, the 400 of each unrunnable plan, the
//! `peon plan check` linter, and the agreement of the JSON Schema with the plan model.
//!
//! Fixture plans: the project's own `tests/fixtures/plans/` (every format variation) and, when
//! present, the real community plans in `../shared/fixtures/warplans/` (skipped with a message
//! otherwise). Their ports are rewritten to free ones so that tests can run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode as AxStatus, header};
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{self, Daemon, GAME_IMAGE, Opts, free_port, unique, wait_for};

/// A plans repository in memory: relative path → (content, executable).
type Repo = BTreeMap<String, (Vec<u8>, bool)>;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's own test plans.
fn own_fixtures() -> PathBuf {
    manifest().join("tests/fixtures/plans")
}

/// The real community plans, when the shared folder is beside the repository.
fn warplans() -> Option<PathBuf> {
    let dir = manifest().join("../shared/fixtures/warplans");
    let found = dir.join("plans.json").is_file().then_some(dir);
    if found.is_none() {
        println!(
            "SKIPPED: ../shared/fixtures/warplans is absent; only the project's own plans are used"
        );
    }
    found
}

fn read_repo(dir: &Path) -> Repo {
    fn walk(base: &Path, dir: &Path, out: &mut Repo) {
        for e in std::fs::read_dir(dir).expect("read fixture dir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                walk(base, &p, out);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let exec = e.metadata().expect("meta").permissions().mode() & 0o111 != 0;
                let rel = p
                    .strip_prefix(base)
                    .expect("rel")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, (std::fs::read(&p).expect("read"), exec));
            }
        }
    }
    let mut out = Repo::new();
    walk(dir, dir, &mut out);
    out
}

fn plan_games(repo: &Repo) -> Vec<String> {
    repo.keys()
        .filter_map(|k| k.strip_suffix("/plan.json"))
        .map(str::to_owned)
        .collect()
}

fn plan_doc(repo: &Repo, game: &str) -> Value {
    serde_json::from_slice(&repo[&format!("{game}/plan.json")].0).expect("plan json")
}

fn set_plan(repo: &mut Repo, game: &str, doc: &Value) {
    repo.insert(
        format!("{game}/plan.json"),
        (serde_json::to_vec_pretty(doc).expect("json"), false),
    );
}

/// Gives every port of every plan a distinct port that is free on this host.
fn rewrite_ports(repo: &mut Repo) {
    let mut used = BTreeSet::new();
    for game in plan_games(repo) {
        let mut doc = plan_doc(repo, &game);
        let mut map: BTreeMap<String, u16> = BTreeMap::new();
        if let Some(groups) = doc.get_mut("ports").and_then(Value::as_array_mut) {
            for g in groups.iter_mut().filter_map(Value::as_array_mut) {
                for entry in g.iter_mut().filter_map(Value::as_object_mut) {
                    for spec in entry.values_mut().filter_map(Value::as_array_mut) {
                        let old = spec[0].as_str().unwrap_or_default().to_owned();
                        let new = *map.entry(old).or_insert_with(|| {
                            loop {
                                let p = free_port();
                                if used.insert(p) {
                                    break p;
                                }
                            }
                        });
                        spec[0] = Value::String(new.to_string());
                    }
                }
            }
        }
        set_plan(repo, &game, &doc);
    }
}

/// A gzipped tarball of the repo under one top folder, as GitHub serves archives.
fn repo_targz(repo: &Repo, top: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (rel, (bytes, exec)) in repo {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(if *exec { 0o755 } else { 0o644 });
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("{top}/{rel}"), bytes.as_slice())
            .expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gz")
}

fn write_repo(repo: &Repo, dir: &Path) {
    for (rel, (bytes, exec)) in repo {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
        if *exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
}

/// A request the plan server saw.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    conditional: bool,
    status: u16,
}

#[derive(Default)]
struct Served {
    tarball: Vec<u8>,
    files: Repo,
    etag: String,
    version: u32,
    fail: bool,
    hits: Vec<Hit>,
}

/// A plan source on 127.0.0.1: `/plans.tar.gz` (the tarball form) and `/base/...` (the
/// base-URL form), with ETags, 304 answers, and a switch to fail.
struct PlanServer {
    addr: String,
    state: Arc<Mutex<Served>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PlanServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_plans(State(st): State<Arc<Mutex<Served>>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let inm = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(to) = match path.as_str() {
        "/redirect-file" => Some("file:///etc/passwd"),
        "/redirect-ok" => Some("/plans.tar.gz"),
        _ => None,
    } {
        return (AxStatus::FOUND, [(header::LOCATION, to)]).into_response();
    }
    let ims = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = st.lock().expect("state");
    let etag = s.etag.clone();
    // `/lm/plans.tar.gz`: the same archive with Last-Modified instead of an ETag.
    if path == "/lm/plans.tar.gz" {
        let stamp = format!("Wed, 21 Oct 2015 07:{:02}:00 GMT", s.version % 60);
        let (status, body) = if ims.as_deref() == Some(stamp.as_str()) {
            (AxStatus::NOT_MODIFIED, Vec::new())
        } else {
            (AxStatus::OK, s.tarball.clone())
        };
        s.hits.push(Hit {
            path,
            conditional: ims.is_some(),
            status: status.as_u16(),
        });
        return (status, [(header::LAST_MODIFIED, stamp)], body).into_response();
    }
    let (status, body, tagged): (AxStatus, Vec<u8>, bool) = if s.fail {
        (AxStatus::INTERNAL_SERVER_ERROR, b"boom".to_vec(), false)
    } else if path == "/plans.tar.gz" {
        (AxStatus::OK, s.tarball.clone(), true)
    } else if let Some(rel) = path.strip_prefix("/base/") {
        match s.files.get(rel) {
            Some((b, _)) => (AxStatus::OK, b.clone(), rel == "plans.json"),
            None => (AxStatus::NOT_FOUND, Vec::new(), false),
        }
    } else {
        (AxStatus::NOT_FOUND, Vec::new(), false)
    };
    let (status, body) = if tagged && inm.as_deref() == Some(etag.as_str()) {
        (AxStatus::NOT_MODIFIED, Vec::new())
    } else {
        (status, body)
    };
    s.hits.push(Hit {
        path,
        conditional: inm.is_some(),
        status: status.as_u16(),
    });
    let mut headers = HeaderMap::new();
    if tagged && let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, body).into_response()
}

impl PlanServer {
    async fn start(repo: &Repo) -> PlanServer {
        let state = Arc::new(Mutex::new(Served::default()));
        let app = axum::Router::new()
            .fallback(serve_plans)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let s = PlanServer { addr, state, task };
        s.set_repo(repo);
        s
    }

    fn tarball_url(&self) -> String {
        format!("http://{}/plans.tar.gz", self.addr)
    }

    fn base_url(&self) -> String {
        format!("http://{}/base/", self.addr)
    }

    /// Serves `repo` (a new ETag).
    fn set_repo(&self, repo: &Repo) {
        let mut s = self.state.lock().expect("state");
        s.tarball = repo_targz(repo, "peon-plans-main");
        s.files = repo.clone();
        s.version += 1;
        s.etag = format!("\"v{}\"", s.version);
    }

    /// Serves these bytes as the tarball (a new ETag).
    fn set_tarball(&self, bytes: Vec<u8>) {
        let mut s = self.state.lock().expect("state");
        s.tarball = bytes;
        s.version += 1;
        s.etag = format!("\"v{}\"", s.version);
    }

    fn fail(&self, on: bool) {
        self.state.lock().expect("state").fail = on;
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().expect("state").hits.clone()
    }
}

/// Tags the test game image with every image name the plans use.
async fn tag_images(d: &Daemon, repo: &Repo) {
    let images: BTreeSet<String> = plan_games(repo)
        .iter()
        .filter_map(|g| {
            plan_doc(repo, g)
                .pointer("/metadata/image")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    for image in images {
        d.engine
            .tag_image(GAME_IMAGE, &image)
            .await
            .unwrap_or_else(|e| panic!("tag {image}: {e}"));
    }
}

/// The container as the engine describes it (JSON as the Docker API writes it).
async fn inspect_raw(name: &str) -> Value {
    let docker = bollard::Docker::connect_with_unix(
        support::DOCKER.trim_start_matches("unix://"),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("docker")
    .negotiate_version()
    .await
    .expect("negotiate");
    let r = docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .expect("inspect");
    serde_json::to_value(r).expect("json")
}

fn titles(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|p| p["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .expect("list")
        .iter()
        .map(|s| s.as_str().expect("str").to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn tarball_source_update_unchanged_failed_and_malicious() {
    let mut repo = read_repo(&own_fixtures());
    rewrite_ports(&mut repo);
    let server = PlanServer::start(&repo).await;
    let d = Daemon::start_with(Opts {
        plans_url: Some(server.tarball_url()),
        ..Default::default()
    })
    .await;

    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["unchanged"], false);
    assert_eq!(
        sorted(&v["added"]),
        ["fx-files", "fx-groups", "fx-protocols", "fx-unlisted"]
    );
    assert_eq!(
        sorted(&v["removed"]),
        ["demo"],
        "the bundled plan is replaced"
    );
    assert_eq!(v["new_recipies"]["fx-groups"]["title"], "alpha groups");
    assert_eq!(v["new_recipies"]["fx-unlisted"]["in_registry"], false);
    // The odd action names and the plan's data folder came with the archive.
    let plans = d.plans_dir();
    assert!(plans.join("fx-files/actions/pre-start.hook").is_file());
    assert!(plans.join("fx-files/data/readme.txt").is_file());

    // Sorted by title without regard to case; the folder missing from plans.json is listed.
    let (s, list) = d.get("/plans").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(
        titles(&list),
        [
            "alpha groups",
            "Beta protocols",
            "fx-unlisted",
            "Zeta files"
        ]
    );
    let unlisted = &list[2];
    assert_eq!(unlisted["game_uid"], "fx-unlisted");
    assert_eq!(unlisted["in_registry"], false);
    assert_eq!(list[0]["in_registry"], true);

    // An unchanged source costs exactly one conditional request, answered 304.
    let before = server.hits().len();
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["unchanged"], true, "{v}");
    let hits = server.hits();
    assert_eq!(hits.len(), before + 1, "{hits:?}");
    let last = hits.last().expect("hit");
    assert!(last.conditional && last.status == 304, "{last:?}");

    // A failing source: 502 naming the URL; the plans stay.
    server.fail(true);
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["err_code"], "plan.source");
    assert!(
        v["info"].as_str().unwrap().contains(&server.tarball_url()),
        "{v}"
    );
    assert_eq!(titles(&d.get("/plans").await.1), titles(&list));
    server.fail(false);

    // Malicious or broken archives are refused; the previous plans stay in place and in use.
    use tar::EntryType as T;
    let valid_start: [(&str, T, &[u8]); 2] = [
        ("evil-main/plans.json", T::Regular, b"[]"),
        ("evil-main/g/plan.json", T::Regular, b"{}"),
    ];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_targz(
                &[
                    &valid_start[..],
                    &[("evil-main/../../escaped", T::Regular, b"x")],
                ]
                .concat(),
            ),
            "'..'",
        ),
        (
            raw_targz(
                &[
                    &valid_start[..],
                    &[("/tmp/peon-absolute", T::Regular, b"x")],
                ]
                .concat(),
            ),
            "absolute",
        ),
        (
            raw_targz(&[&valid_start[..], &[("evil-main/g/link", T::Symlink, b"")]].concat()),
            "symbolic link",
        ),
        (
            raw_targz(&[&valid_start[..], &[("evil-main/g/hard", T::Link, b"")]].concat()),
            "hard link",
        ),
        (
            raw_targz(&[("x-main/readme", T::Regular, b"hi")]),
            "no plans.json",
        ),
        (b"this is not a tarball".to_vec(), "refused"),
    ];
    for (bytes, why) in cases {
        server.set_tarball(bytes);
        let (s, v) = d.put("/plans", json!({})).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{why}: {v}");
        assert_eq!(v["err_code"], "plan.rejected", "{why}: {v}");
        assert!(v["info"].as_str().unwrap().contains(why), "{why}: {v}");
        assert_eq!(titles(&d.get("/plans").await.1), titles(&list), "{why}");
        let (s, _) = d.get("/plan/fx-groups").await;
        assert_eq!(s, StatusCode::OK, "{why}: the previous plans are in use");
    }
    assert!(!d.data.join("escaped").exists() && !d.data.parent().unwrap().join("escaped").exists());
    assert!(!Path::new("/tmp/peon-absolute").exists());
    // Nothing is left beside the plans dir.
    let leftovers: Vec<String> = std::fs::read_dir(&d.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".plans"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A real change: one plan changed, one removed, one added.
    let mut next = repo.clone();
    let mut doc = plan_doc(&next, "fx-files");
    doc["metadata"]["version"] = json!("1.1.0");
    set_plan(&mut next, "fx-files", &doc);
    next.retain(|k, _| !k.starts_with("fx-unlisted/"));
    let extra = plan_doc(&repo, "fx-groups");
    set_plan(&mut next, "fx-new", &extra);
    server.set_repo(&next);
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(sorted(&v["changed"]), ["fx-files"], "{v}");
    assert_eq!(sorted(&v["removed"]), ["fx-unlisted"], "{v}");
    assert_eq!(sorted(&v["added"]), ["fx-new"], "{v}");
    assert_eq!(v["new_recipies"].as_object().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn fetcher_limits_redirects_and_names_the_url() {
    use peon::plans::fetch::{Fetched, Fetcher};
    let repo = read_repo(&own_fixtures());
    let server = PlanServer::start(&repo).await;
    let f = Fetcher::new(Duration::from_secs(5)).expect("client");
    let url = |p: &str| reqwest::Url::parse(&format!("http://{}{p}", server.addr)).unwrap();

    // A redirect to http(s) is followed; one to another scheme is refused, naming the URL.
    match f.get(&url("/redirect-ok"), None).await.expect("followed") {
        Fetched::Body { bytes, validators } => {
            assert!(bytes.starts_with(&[0x1f, 0x8b]), "gzip");
            assert!(validators.etag.is_some());
        }
        other => panic!("{other:?}"),
    }
    let err = f
        .get(&url("/redirect-file"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/redirect-file"), "{err}");
    assert!(err.contains("non-HTTP(S)"), "{err}");

    // The size limit.
    let small = Fetcher::new(Duration::from_secs(5))
        .unwrap()
        .with_limit(100);
    let err = small
        .get(&url("/plans.tar.gz"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds the limit of 100 bytes"), "{err}");

    // 404 is "missing", not an error; a refused connection names the URL.
    assert!(matches!(
        f.get(&url("/nothing"), None).await,
        Ok(Fetched::Missing)
    ));
    let closed =
        reqwest::Url::parse(&format!("http://127.0.0.1:{}/plans.tar.gz", free_port())).unwrap();
    let err = f.get(&closed, None).await.unwrap_err().to_string();
    assert!(err.contains(closed.as_str()), "{err}");
}

/// A .tar.gz with raw header paths (which `tar::Builder` would refuse to write).
fn raw_targz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (path, kind, content) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        let regular = *kind == tar::EntryType::Regular;
        h.set_size(if regular { content.len() as u64 } else { 0 });
        if !regular {
            h.set_link_name("/etc/passwd").expect("link");
        }
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        if regular {
            tar.extend_from_slice(content);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gz");
    gz.finish().expect("gz")
}

#[tokio::test]
async fn last_modified_alone_makes_updates_conditional() {
    let repo = read_repo(&own_fixtures());
    let server = PlanServer::start(&repo).await;
    let d = Daemon::start_with(Opts {
        plans_url: Some(format!("http://{}/lm/plans.tar.gz", server.addr)),
        ..Default::default()
    })
    .await;
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!((s, &v["unchanged"]), (StatusCode::OK, &json!(false)), "{v}");
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!((s, &v["unchanged"]), (StatusCode::OK, &json!(true)), "{v}");
    let hits = server.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits[1].conditional && hits[1].status == 304, "{hits:?}");
    // A newer archive (a new Last-Modified) is fetched again.
    let mut next = repo.clone();
    next.retain(|k, _| !k.starts_with("fx-unlisted/"));
    server.set_repo(&next);
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(sorted(&v["removed"]), ["fx-unlisted"], "{v}");
}

#[tokio::test]
async fn base_url_source_update_and_refresh_before_create() {
    let mut repo = read_repo(&own_fixtures());
    rewrite_ports(&mut repo);
    let server = PlanServer::start(&repo).await;
    let d = Daemon::start_with(Opts {
        plans_url: Some(server.base_url()),
        ..Default::default()
    })
    .await;
    tag_images(&d, &repo).await;

    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The base-URL form knows the games from plans.json: the unlisted folder is not fetched.
    assert_eq!(
        sorted(&v["added"]),
        ["fx-files", "fx-groups", "fx-protocols"],
        "{v}"
    );
    let script = d.plans_dir().join("fx-groups/actions/server_start");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&script)
        .expect("action fetched")
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "actions are executable");

    // Unchanged: one conditional request for plans.json.
    let before = server.hits().len();
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!((s, &v["unchanged"]), (StatusCode::OK, &json!(true)), "{v}");
    let hits = server.hits();
    assert_eq!(hits.len(), before + 1, "{hits:?}");
    assert!(hits[before].path.ends_with("plans.json") && hits[before].status == 304);

    // The source now holds a newer fx-groups: creating a server fetches it first.
    let mut next = repo.clone();
    let mut doc = plan_doc(&next, "fx-groups");
    doc["metadata"]["version"] = json!("1.1.0");
    doc["environment"]["MOTD"] = json!("from the newer plan");
    set_plan(&mut next, "fx-groups", &doc);
    server.set_repo(&next);
    let uid = format!("fx-groups.{}", unique("s"));
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dir = d.server_dir(&uid);
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["environment"]["MOTD"], "from the newer plan");
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join(".peon.json")).unwrap()).unwrap();
    assert_eq!(state["plan_version"], "1.1.0");

    // The source fails: create goes on with the local plan.
    server.fail(true);
    let uid = format!("fx-protocols.{}", unique("s"));
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "ADMIN_PASSWORD": "a", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        server
            .hits()
            .iter()
            .any(|h| h.path.ends_with("fx-protocols/plan.json") && h.status == 500),
        "the refresh was tried"
    );
}

#[tokio::test]
async fn local_source_first_update_on_an_empty_install() {
    let d = Daemon::start_with(Opts {
        plans_url: Some(format!("file://{}", own_fixtures().display())),
        ..Default::default()
    })
    .await;
    // Once the daemon answers it has seeded its bundled plans; remove them all.
    let (s, v) = d.get("/plans").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    std::fs::remove_dir_all(d.plans_dir()).expect("empty the install");
    let (s, v) = d.get("/plans").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["plans"], 4, "{v}");
    assert_eq!(v["new_recipies"].as_object().unwrap().len(), 4, "{v}");
    let (s, list) = d.get("/plans").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");

    // The whole plan.
    let (s, full) = d.get("/plan/fx-protocols?full=true").await;
    assert_eq!(s, StatusCode::OK, "{full}");
    assert_eq!(full["image"], "peon-test/plans-alt:v2");
    assert_eq!(full["ports"][0].as_array().unwrap().len(), 4);
    assert_eq!(full["ports"][0][2]["protocol"], "all");
    assert_eq!(full["ports"][0][2]["protocols"], json!(["tcp", "udp"]));
    assert_eq!(full["environment"]["SERVER_NAME"], Value::Null);
    assert_eq!(full["environment"]["PASSWORD"], "");
    assert_eq!(full["required"], json!(["SERVER_NAME", "ADMIN_PASSWORD"]));
    assert_eq!(full["volumes"][1]["source"], "~!/data");
    assert_eq!(full["actions"], json!(["server_start"]));
    // PEON's settings answer: required keys with "", then defaults, then description.
    let (s, settings) = d.get("/plan/fx-protocols").await;
    assert_eq!(s, StatusCode::OK);
    let keys: Vec<&String> = settings.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "SERVER_NAME",
            "ADMIN_PASSWORD",
            "PASSWORD",
            "MOTD",
            "description"
        ]
    );
    assert_eq!(settings["PASSWORD"], "");
    let (_, files) = d.get("/plan/fx-files?full=true").await;
    assert_eq!(
        files["actions"],
        json!(["UPDATE_now", "pre-start.hook", "server_start"])
    );
    assert_eq!(files["files"][0]["target"], "/home/steam/server.cfg");
}

/// The values a create needs: every required setting.
fn required_settings(doc: &Value) -> serde_json::Map<String, Value> {
    doc["environment"]
        .as_object()
        .map(|env| {
            env.iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| (k.clone(), json!(format!("given-{}", k.to_lowercase()))))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the created container publishes the plan's first port group, gets its settings
/// and port variables, and mounts its volumes (and the files the server dir holds).
async fn assert_container_matches(
    d: &Daemon,
    uid: &str,
    doc: &Value,
    group: usize,
    given: &serde_json::Map<String, Value>,
) {
    let c = inspect_raw(&format!("peon.warcamp.{uid}")).await;
    let env: Vec<&str> = c
        .pointer("/Config/Env")
        .and_then(Value::as_array)
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let bindings = c
        .pointer("/HostConfig/PortBindings")
        .expect("port bindings");
    let mut first_of_name = BTreeSet::new();
    for entry in doc["ports"][group].as_array().expect("group") {
        for (name, spec) in entry.as_object().unwrap() {
            let port = spec[0].as_str().unwrap();
            let protos: &[&str] = match spec[1].as_str().unwrap() {
                "tcp" => &["tcp"],
                "udp" => &["udp"],
                _ => &["tcp", "udp"],
            };
            for p in protos {
                let b = &bindings[format!("{port}/{p}")];
                assert_eq!(b[0]["HostPort"], port, "{uid} {port}/{p}: {bindings}");
            }
            if first_of_name.insert(name.to_uppercase()) {
                assert!(
                    env.contains(&format!("{}={port}", name.to_uppercase()).as_str()),
                    "{uid} {name}: {env:?}"
                );
            }
        }
    }
    for (k, v) in doc["environment"].as_object().unwrap() {
        if first_of_name.contains(k) {
            continue;
        }
        let want = match v {
            Value::Null => given[k].as_str().unwrap().to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert!(
            env.contains(&format!("{k}={want}").as_str()),
            "{uid} {k}: {env:?}"
        );
    }
    let binds: Vec<&str> = c
        .pointer("/HostConfig/Binds")
        .and_then(Value::as_array)
        .expect("binds")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dir = d.server_dir(uid);
    let mut mounts: Vec<(String, String)> = Vec::new();
    for (src, tgt) in doc["volumes"].as_object().unwrap() {
        mounts.push((src.clone(), tgt.as_str().unwrap().to_owned()));
    }
    if let Some(files) = doc.get("files").and_then(Value::as_object) {
        for (src, tgt) in files {
            let rel = src.trim_start_matches("~!/");
            if dir.join(rel).is_file() {
                mounts.push((src.clone(), tgt.as_str().unwrap().to_owned()));
            } else {
                assert!(
                    !binds
                        .iter()
                        .any(|b| b.ends_with(&format!(":{}", tgt.as_str().unwrap()))),
                    "{uid}: absent file {src} is not mounted"
                );
            }
        }
    }
    for (src, tgt) in mounts {
        let host = dir.join(src.trim_start_matches("~!/"));
        let want = format!("{}:{}", host.display(), tgt.trim());
        assert!(
            binds.contains(&want.as_str()),
            "{uid}: {want} not in {binds:?}"
        );
    }
}

#[tokio::test]
async fn create_from_every_fixture_plan() {
    let mut repo = read_repo(&own_fixtures());
    let mut warplan_games = Vec::new();
    if let Some(w) = warplans() {
        let real = read_repo(&w);
        warplan_games = plan_games(&real);
        for (k, v) in real {
            if k != "plans.json" {
                repo.insert(k, v);
            }
        }
    }
    rewrite_ports(&mut repo);
    let src = tempfile::tempdir().expect("tmp");
    write_repo(&repo, src.path());
    let d = Daemon::start_with(Opts {
        plans_url: Some(src.path().display().to_string()),
        ..Default::default()
    })
    .await;
    tag_images(&d, &repo).await;
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["invalid"].as_object().unwrap().is_empty(), "{v}");

    let games = plan_games(&repo);
    println!(
        "creating servers from {} plans ({} real community plans)",
        games.len(),
        warplan_games.len()
    );
    for game in &games {
        let doc = plan_doc(&repo, game);
        let uid = format!("{game}.{}", unique("s"));
        let given = required_settings(&doc);
        let mut body = given.clone();
        body.insert("start_later".into(), json!(true));
        let (s, v) = d
            .put(&format!("/server/create/{uid}"), Value::Object(body))
            .await;
        assert_eq!(s, StatusCode::OK, "{game}: {v}");
        assert_eq!(v["container_state"], "created", "{game}: {v}");
        assert_container_matches(&d, &uid, &doc, 0, &given).await;
        // The server records the plan version it was built from.
        let state: Value =
            serde_json::from_slice(&std::fs::read(d.server_dir(&uid).join(".peon.json")).unwrap())
                .unwrap();
        assert_eq!(state["plan_version"], doc["metadata"]["version"], "{game}");
    }

    // Run one for real. Its group is the first one free of the other servers' ports (the
    // start_later server above holds group 0); a second server then takes the other group.
    let doc = plan_doc(&repo, "fx-groups");
    let group_of = |uid: &str| -> usize {
        let config: Value =
            serde_json::from_slice(&std::fs::read(d.server_dir(uid).join("config.json")).unwrap())
                .unwrap();
        let port = config["ports"][0]["PORT"][0].clone();
        (0..2)
            .find(|g| doc["ports"][*g][0]["PORT"][0] == port)
            .expect("a group of the plan")
    };
    let first = format!("fx-groups.{}", unique("s"));
    d.create_running(&first).await;
    let g1 = group_of(&first);
    assert_eq!(g1, 1, "group 0 is configured for the start_later server");
    let port: u16 = doc["ports"][g1][0]["PORT"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let greeting = wait_for(Duration::from_secs(10), "the game to answer", || {
        support::game_greeting(port)
    })
    .await;
    assert_eq!(greeting, "hello from fx-groups");
    let second = format!("fx-groups.{}", unique("s"));
    let given = required_settings(&doc);
    let mut body = given.clone();
    body.insert("start_later".into(), json!(true));
    let (s, v) = d
        .put(&format!("/server/create/{second}"), Value::Object(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_container_matches(&d, &second, &doc, 0, &given).await;
    assert_eq!(group_of(&second), 0, "the group free of running servers");

    // The fx-files plan ships server.cfg: it is mounted at its target; the upload is absent.
    let files_uid = format!("fx-files.{}", unique("s"));
    d.create_running(&files_uid).await;
    let c = inspect_raw(&format!("peon.warcamp.{files_uid}")).await;
    let binds = c.pointer("/HostConfig/Binds").unwrap().to_string();
    assert!(binds.contains(":/home/steam/server.cfg"), "{binds}");
    assert!(!binds.contains("admins.txt"), "{binds}");
}

#[tokio::test]
async fn unrunnable_plans_answer_400_naming_plan_and_problem() {
    let d = Daemon::start().await;
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "dupmount",
            json!({"volumes": {"~!/data": "/home/steam/x", "~!/user": "/home/steam/x/"}}),
            "volumes[~!/user]",
            "mounted twice",
        ),
        (
            "bigport",
            json!({"ports": [[{"PORT": ["70000", "tcp"]}]]}),
            "ports[0][0].PORT",
            "1 to 65535",
        ),
        (
            "zeroport",
            json!({"ports": [[{"PORT": ["0", "tcp"]}]]}),
            "ports[0][0].PORT",
            "1 to 65535",
        ),
        (
            "wordport",
            json!({"ports": [[{"PORT": ["http", "tcp"]}]]}),
            "ports[0][0].PORT",
            "1 to 65535",
        ),
        (
            "proto",
            json!({"ports": [[{"PORT": ["2456", "sctp"]}]]}),
            "ports[0][0].PORT",
            "unknown protocol",
        ),
        (
            "noimage",
            json!({"metadata": {"game_uid": "x"}}),
            "metadata.image",
            "missing",
        ),
        (
            "fileout",
            json!({"files": {"~!/../../etc/shadow": "/x"}}),
            "files[~!/../../etc/shadow]",
            "leaves the server directory",
        ),
        (
            "volabs",
            json!({"volumes": {"/var/run/docker.sock": "/sock"}}),
            "volumes[/var/run/docker.sock]",
            "must start with ~!/",
        ),
        (
            "volout",
            json!({"volumes": {"~!/../..": "/host"}}),
            "volumes[~!/../..]",
            "leaves the server directory",
        ),
        (
            "rootmount",
            json!({"volumes": {"~!/data": "/"}}),
            "volumes[~!/data]",
            "root /",
        ),
        (
            "colon",
            json!({"volumes": {"~!/data": "/data:ro"}}),
            "volumes[~!/data]",
            "':'",
        ),
    ];
    for (tag, patch, field, msg) in cases {
        let game = unique(&format!("bad{tag}"));
        let mut plan = support::game_plan(&game, &[&[free_port()]]);
        for (k, v) in patch.as_object().unwrap() {
            plan[k] = v.clone();
        }
        d.add_plan(&game, &plan);
        let uid = format!("{game}.alpha");
        let (s, v) = d
            .put(
                &format!("/server/create/{uid}"),
                json!({"SERVER_NAME": "x"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{tag}: {v}");
        assert_eq!(v["err_code"], "plan.invalid", "{tag}: {v}");
        let info = v["info"].as_str().unwrap();
        assert!(
            info.contains(&format!("[{game}]")),
            "{tag}: names the plan: {info}"
        );
        assert!(
            info.contains(field) && info.contains(msg),
            "{tag}: {field} {msg}: {info}"
        );
        assert!(!d.server_dir(&uid).exists(), "{tag}: nothing left behind");
        assert!(
            d.engine
                .inspect(&format!("peon.warcamp.{uid}"))
                .await
                .unwrap()
                .is_none()
        );
        // The linter reports the same problem to the plan's author.
        let (_, full) = d.get(&format!("/plan/{game}?full=true")).await;
        assert_eq!(full["err_code"], "plan.invalid", "{tag}");
    }
}

#[test]
fn plan_check_cli_on_the_fixtures() {
    let bin = env!("CARGO_BIN_EXE_peon");
    let out = std::process::Command::new(bin)
        .args(["plan", "check"])
        .arg(own_fixtures())
        .output()
        .expect("run peon plan check");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: fx-unlisted: plans.json:"), "{text}");
    assert!(
        text.contains("checked 4 plans: 0 errors in 0 plans, 1 warnings"),
        "{text}"
    );

    if let Some(w) = warplans() {
        let out = std::process::Command::new(bin)
            .args(["plan", "check"])
            .arg(&w)
            .output()
            .expect("run peon plan check");
        let text = String::from_utf8_lossy(&out.stdout);
        println!("{text}");
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("error: starbound: actions/server_start: is missing"),
            "{text}"
        );
    }
}

/// Benchmark: 200 plans checked by the linter. Prints the time; asserts only the findings.
#[test]
fn plan_check_benchmark_200_plans() {
    let fixtures = read_repo(&own_fixtures());
    let base = plan_doc(&fixtures, "fx-protocols");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut registry = Vec::new();
    for i in 0..200 {
        let game = format!("bench{i:03}");
        let mut doc = base.clone();
        doc["metadata"]["game_uid"] = json!(game);
        if i % 10 == 0 {
            doc["volumes"]["~!/user"] = json!("/home/steam/steamcmd/data");
        }
        let dir = tmp.path().join(&game);
        std::fs::create_dir_all(dir.join("actions")).unwrap();
        std::fs::write(
            dir.join("plan.json"),
            serde_json::to_vec_pretty(&doc).unwrap(),
        )
        .unwrap();
        let script = dir.join("actions/server_start");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        registry.push(json!({"title": game, "game_uid": game, "plan_url": "u"}));
    }
    std::fs::write(
        tmp.path().join("plans.json"),
        Value::Array(registry).to_string(),
    )
    .unwrap();
    let started = Instant::now();
    let report = peon::plans::check::check_dir(tmp.path()).expect("check");
    let took = started.elapsed();
    println!(
        "BENCH plan check: {} plans in {:.1} ms",
        report.plans,
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(report.plans, 200);
    assert_eq!(report.errors(), 20, "{}", report.summary());
}

/// Every plan the model accepts, the schema accepts; every plan the schema rejects, the model
/// rejects. Run on every fixture plan and on a mutation of each unrunnable case.
#[test]
fn schema_and_model_agree_on_every_fixture() {
    use peon::plans::{model, schema};
    let mut docs: Vec<(String, Value)> = Vec::new();
    let own = read_repo(&own_fixtures());
    for g in plan_games(&own) {
        docs.push((g.clone(), plan_doc(&own, &g)));
    }
    if let Some(w) = warplans() {
        let real = read_repo(&w);
        for g in plan_games(&real) {
            docs.push((g.clone(), plan_doc(&real, &g)));
        }
    }
    let valid = docs.len();
    let base = docs[0].1.clone();
    let mutations = [
        json!({"metadata": {"image": 5}}),
        json!({"metadata": {"image": ""}}),
        json!({"ports": {"PORT": 1}}),
        json!({"ports": [[{"PORT": ["1"]}]]}),
        json!({"ports": [[{"PORT": ["1", "sctp"]}]]}),
        json!({"ports": [["PORT"]]}),
        json!({"environment": {"A": [1]}}),
        json!({"environment": []}),
        json!({"volumes": {"~!/data": 1}}),
        json!({"files": ["x"]}),
        json!({"metadata": "x"}),
    ];
    for (i, m) in mutations.iter().enumerate() {
        let mut d = base.clone();
        for (k, v) in m.as_object().unwrap() {
            if k == "metadata" && v.is_object() {
                for (mk, mv) in v.as_object().unwrap() {
                    d["metadata"][mk] = mv.clone();
                }
            } else {
                d[k] = v.clone();
            }
        }
        docs.push((format!("mutation{i}"), d));
    }
    for (i, (name, doc)) in docs.iter().enumerate() {
        let model_ok = model::parse_plan(name, doc).is_ok();
        let schema_problems = schema::check(doc);
        if model_ok {
            assert!(
                schema_problems.is_empty(),
                "{name}: the schema refuses a runnable plan: {schema_problems:?}"
            );
        }
        if !schema_problems.is_empty() {
            assert!(
                !model_ok,
                "{name}: the model accepts what the schema refuses"
            );
        }
        if i >= valid {
            assert!(
                !schema_problems.is_empty() && !model_ok,
                "{name}: both must refuse it"
            );
        }
    }
}

/// A daemon whose plans are the project's fixtures (ports made free), installed from a local
/// source, with the plans' images tagged.
async fn daemon_with_fixtures() -> (Daemon, Repo, tempfile::TempDir) {
    let mut repo = read_repo(&own_fixtures());
    rewrite_ports(&mut repo);
    let src = tempfile::tempdir().expect("tmp");
    write_repo(&repo, src.path());
    let d = Daemon::start_with(Opts {
        plans_url: Some(src.path().display().to_string()),
        ..Default::default()
    })
    .await;
    tag_images(&d, &repo).await;
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (d, repo, src)
}

/// A game container can put symbolic links into its volumes; Docker would follow them on the
/// host. peon never mounts a `files` source or a volume that is, or passes through, a link.
#[tokio::test]
async fn links_in_a_server_dir_are_never_mounted() {
    let (d, _repo, _src) = daemon_with_fixtures().await;
    let uid = format!("fx-files.{}", unique("s"));
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let name = format!("peon.warcamp.{uid}");
    let binds = |c: &Value| c.pointer("/HostConfig/Binds").unwrap().to_string();
    assert!(binds(&inspect_raw(&name).await).contains(":/home/steam/server.cfg"));

    // The shipped file becomes a link to a host file: the container is rebuilt without it.
    let dir = d.server_dir(&uid);
    let (s, v) = d.delete(&format!("/server/destroy/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    std::fs::remove_file(dir.join("server.cfg")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("server.cfg")).unwrap();
    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let b = binds(&inspect_raw(&name).await);
    assert!(!b.contains("server.cfg"), "{b}");

    // A volume replaced by a link: the start is refused, naming the volume.
    let (s, v) = d.delete(&format!("/server/destroy/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    std::fs::remove_dir_all(dir.join("user")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.join("user")).unwrap();
    let (s, v) = d.put(&format!("/server/start/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let info = v["info"].as_str().unwrap();
    assert!(
        info.contains("~!/user") && info.contains("symbolic link"),
        "{info}"
    );
    assert!(d.engine.inspect(&name).await.unwrap().is_none());
}

/// Tarball and local sources: a create first picks up the newer plan from the source; a
/// second create within the rate limit asks the source nothing.
#[tokio::test]
async fn tarball_and_local_sources_refresh_before_create_rate_limited() {
    // Tarball.
    let mut repo = read_repo(&own_fixtures());
    rewrite_ports(&mut repo);
    let server = PlanServer::start(&repo).await;
    let d = Daemon::start_with(Opts {
        plans_url: Some(server.tarball_url()),
        ..Default::default()
    })
    .await;
    tag_images(&d, &repo).await;
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut next = repo.clone();
    let mut doc = plan_doc(&next, "fx-files");
    doc["metadata"]["version"] = json!("2.0.0");
    set_plan(&mut next, "fx-files", &doc);
    server.set_repo(&next);
    let create = |game: &str| {
        let uid = format!("{game}.{}", unique("s"));
        let d = &d;
        async move {
            let (s, v) = d
                .put(
                    &format!("/server/create/{uid}"),
                    json!({"SERVER_NAME": "x", "start_later": true}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let state: Value = serde_json::from_slice(
                &std::fs::read(d.server_dir(&uid).join(".peon.json")).unwrap(),
            )
            .unwrap();
            state["plan_version"].clone()
        }
    };
    assert_eq!(create("fx-files").await, "2.0.0");
    let before = server.hits().len();
    // Another create right away: the archive is not asked again.
    assert_eq!(create("fx-files").await, "2.0.0");
    assert_eq!(server.hits().len(), before, "rate-limited");
    drop(d);

    // Local folder.
    let src = tempfile::tempdir().unwrap();
    write_repo(&repo, src.path());
    let d = Daemon::start_with(Opts {
        plans_url: Some(src.path().display().to_string()),
        ..Default::default()
    })
    .await;
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    write_repo(&next, src.path());
    let uid = format!("fx-files.{}", unique("s"));
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(d.server_dir(&uid).join(".peon.json")).unwrap())
            .unwrap();
    assert_eq!(state["plan_version"], "2.0.0");
}

/// Benchmark: a 200-plan repository served as a tarball and as a base URL. Prints the time of
/// the first update and of an unchanged one; asserts only what they report.
#[tokio::test]
async fn update_benchmark_200_plans() {
    let fixtures = read_repo(&own_fixtures());
    let base = plan_doc(&fixtures, "fx-groups");
    let script = fixtures["fx-groups/actions/server_start"].clone();
    let mut repo = Repo::new();
    let mut registry = Vec::new();
    for i in 0..200 {
        let game = format!("bench{i:03}");
        let mut doc = base.clone();
        doc["metadata"]["game_uid"] = json!(game);
        set_plan(&mut repo, &game, &doc);
        repo.insert(format!("{game}/actions/server_start"), script.clone());
        registry.push(json!({"title": game, "game_uid": game, "plan_url": "u"}));
    }
    repo.insert(
        "plans.json".into(),
        (Value::Array(registry).to_string().into_bytes(), false),
    );
    let server = PlanServer::start(&repo).await;
    for (form, url) in [
        ("tarball", server.tarball_url()),
        ("base URL", server.base_url()),
    ] {
        let d = Daemon::start_with(Opts {
            plans_url: Some(url),
            ..Default::default()
        })
        .await;
        let hits = server.hits().len();
        let t = Instant::now();
        let (s, v) = d.put("/plans", json!({})).await;
        let first = t.elapsed();
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["plans"], 200, "{form}");
        let requests = server.hits().len() - hits;
        let t = Instant::now();
        let (s, v) = d.put("/plans", json!({})).await;
        let again = t.elapsed();
        assert_eq!((s, &v["unchanged"]), (StatusCode::OK, &json!(true)), "{v}");
        println!(
            "BENCH update from a {form} of 200 plans: {:.0} ms ({requests} requests), unchanged: {:.1} ms (1 request)",
            first.as_secs_f64() * 1000.0,
            again.as_secs_f64() * 1000.0
        );
    }
}
