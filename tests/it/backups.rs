//! Backups against the real engine: a live backup asks the game to save, a restore brings back
//! every file, a corrupted archive (local or S3) is refused before the game is stopped,
//! retention, a scheduled backup, signed links, the job records, a full disk (a real tmpfs)
//! before and during a backup, and the debris of a crashed backup.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{Console, Daemon, free_port, game_plan, unique, wait_for};

/// A game whose plan saves before a backup and leaves `user/cache` out.
fn backup_game(d: &Daemon) -> String {
    let game = unique("g");
    let mut plan = game_plan(&game, &[&[free_port()]]);
    plan["backup"] = json!({
        "save_command": ["save"],
        "save_done": "game: saved",
        "exclude": ["user/cache"]
    });
    d.add_plan(&game, &plan);
    game
}

/// sha256 of every regular file under `root`, by relative path.
fn checksums(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                walk(root, &p, out);
            } else if md.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let h = Sha256::digest(std::fs::read(&p).unwrap());
                out.insert(rel, format!("{h:x}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Downloads a backup's archive; checks its sha256 against the header and the record.
async fn download(d: &Daemon, uid: &str, info: &Value) -> Vec<u8> {
    let res = d
        .http
        .get(format!(
            "{}/server/backup/{uid}/{}",
            d.base,
            info["id"].as_str().unwrap()
        ))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let header = res.headers()["x-backup-sha256"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = res.bytes().await.unwrap().to_vec();
    let sha = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(sha, header);
    assert_eq!(sha, info["sha256"], "{info}");
    assert_eq!(bytes.len() as u64, info["bytes"].as_u64().unwrap());
    bytes
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Files the stand-in game rewrites when it boots or stops (and peon's own state file).
const REWRITTEN: [&str; 7] = [
    ".peon.json",
    "config/server_name",
    "config/port",
    "config/state",
    "user/boots",
    "user/last_save",
    "data/.installed",
];

#[tokio::test]
async fn a_live_backup_saves_first_and_a_restore_brings_back_every_file() {
    let d = Daemon::start().await;
    let game = backup_game(&d);
    let uid = format!("{game}.world");
    d.create_running(&uid).await;
    let dir = d.server_dir(&uid);
    write(&dir, "user/world/region.dat", &vec![42u8; 300_000]);
    write(&dir, "user/world/level.dat", b"level");
    write(&dir, "user/cache/tmp.bin", b"cache");

    let mut console = Console::connect(&d, &uid).await;
    let (s, info) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    console.wait_line("console: save").await;
    assert_eq!(info["live"], true, "{info}");
    assert_eq!(info["reason"], "manual");
    assert!(info["files"].as_u64().unwrap() >= 4, "{info}");
    let archive = download(&d, &uid, &info).await;

    // What the archive holds, unpacked apart.
    let tmp = tempfile::tempdir().unwrap();
    peon::backup::unpack(&archive[..], tmp.path()).unwrap();
    let want = checksums(tmp.path());
    assert!(want.contains_key("user/world/region.dat"), "{want:?}");
    assert!(
        !want.keys().any(|k| k.starts_with("user/cache")),
        "excluded: {want:?}"
    );

    // Corrupt the world, then restore.
    write(&dir, "user/world/region.dat", b"garbage");
    std::fs::remove_file(dir.join("user/world/level.dat")).unwrap();
    let (s, v) = d
        .post(
            &format!("/server/restore/{uid}/{}", info["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["container_state"], "running", "started again: {v}");
    let got = checksums(&dir);
    for (rel, sum) in &want {
        if REWRITTEN.contains(&rel.as_str()) {
            continue;
        }
        assert_eq!(got.get(rel), Some(sum), "{rel} differs after the restore");
    }
    for rel in got.keys() {
        assert!(
            want.contains_key(rel) || REWRITTEN.contains(&rel.as_str()),
            "{rel} is not in the backup"
        );
    }

    // The restore took a safety backup of the corrupted state first.
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    let reasons: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["manual", "safety"], "{list}");

    // Both are jobs with steps.
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=restore")).await;
    let job = &jobs[0];
    assert_eq!(job["state"], "succeeded", "{jobs}");
    let steps: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "check space",
            "unpack and verify",
            "sync",
            "stop",
            "safety backup",
            "swap",
            "start"
        ],
        "{job}"
    );
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=backup")).await;
    let steps: Vec<&str> = jobs[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["check space", "save", "archive", "prune"], "{jobs}");
    d.cleanup().await;
}

#[tokio::test]
async fn a_restore_of_a_corrupted_archive_leaves_the_server_as_it_was() {
    let d = Daemon::start().await;
    let game = backup_game(&d);
    let uid = format!("{game}.bad");
    d.create_running(&uid).await;
    let dir = d.server_dir(&uid);
    write(&dir, "user/world/region.dat", &vec![7u8; 200_000]);
    let (s, info) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let id = info["id"].as_str().unwrap();
    let (g, n) = uid.split_once('.').unwrap();
    let archive = d
        .data
        .join("backups")
        .join(g)
        .join(n)
        .join(format!("{id}.tar.zst"));
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&archive, bytes).unwrap();

    write(&dir, "user/world/after.dat", b"made after the backup");
    let before = checksums(&dir.join("user/world"));
    let (s, v) = d
        .post(&format!("/server/restore/{uid}/{id}"), json!({}))
        .await;
    assert!(s.is_server_error(), "{s}: {v}");
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["info"].as_str().unwrap().contains("damaged"), "{v}");
    assert_eq!(
        checksums(&dir.join("user/world")),
        before,
        "the world is unchanged"
    );
    let v = d
        .wait_server(&uid, Duration::from_secs(30), |v| {
            v["container_state"] == "running"
        })
        .await;
    assert_eq!(v["container_state"], "running");
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=restore")).await;
    assert_eq!(jobs[0]["state"], "failed", "{jobs}");
    let steps: Vec<(&str, &str)> = jobs[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("check space", "succeeded"),
            ("unpack and verify", "failed")
        ],
        "checked before the game was stopped: {jobs}"
    );
    assert!(v["last_exit"].is_null(), "never stopped: {v}");
    // Nothing half-made is left in staging.
    let staging = d.data.join("servers/.staging");
    assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);
    d.cleanup().await;
}

#[tokio::test]
async fn retention_keeps_what_the_policy_says_and_background_backups_are_jobs() {
    let d = Daemon::start().await;
    let game = backup_game(&d);
    let uid = format!("{game}.keep");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d
        .put(
            &format!("/server/backup-policy/{uid}"),
            json!({"keep_last": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["backup_policy"], json!({"keep_last": 2}));
    let (s, v) = d
        .put(
            &format!("/server/backup-policy/{uid}"),
            json!({"keep_all": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    let mut ids = Vec::new();
    for _ in 0..4 {
        let (s, v) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["live"], false, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    let kept: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, &ids[2..], "{list}");

    // In the background: 202, a Location, and the job ends with a backup listed.
    let res = d
        .http
        .post(format!("{}/server/backup/{uid}?wait=false", d.base))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("/job/"), "{location}");
    let job_id = res.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = wait_for(Duration::from_secs(30), "the background backup", || async {
        let (_, j) = d.get(&format!("/job/{job_id}")).await;
        (j["state"] == "succeeded").then_some(j)
    })
    .await;
    assert_eq!(job["kind"], "backup");
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // Delete one; an unknown id is a 404.
    let (s, v) = d
        .delete(&format!("/server/backup/{uid}/{}", ids[3]), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = d
        .delete(&format!("/server/backup/{uid}/{}", ids[3]), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = d.get(&format!("/server/backup/{uid}/..%2F..%2Fx")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    d.cleanup().await;
}

#[tokio::test]
async fn a_scheduled_backup_fires_as_a_job_of_the_schedule() {
    let d = Daemon::start().await;
    let game = backup_game(&d);
    let uid = format!("{game}.cron");
    d.create_running(&uid).await;
    let (s, v) = d
        .post(
            &format!("/server/schedules/{uid}"),
            json!({"action": "backup", "cron": "*/2 * * * * *"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let job = wait_for(Duration::from_secs(30), "a scheduled backup", || async {
        let (_, j) = d
            .get(&format!("/jobs?uid={uid}&kind=backup&state=succeeded"))
            .await;
        j.as_array().and_then(|a| a.first().cloned())
    })
    .await;
    assert_eq!(job["requester"], "schedule", "{job}");
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    assert_eq!(list[0]["reason"], "scheduled", "{list}");
    assert_eq!(list[0]["live"], true, "{list}");
    let (_, v) = d.get(&format!("/server/schedules/{uid}")).await;
    let id = v["schedules"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = d
        .delete(&format!("/server/schedules/{uid}/{id}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    d.cleanup().await;
}

#[tokio::test]
async fn a_signed_save_link_works_without_the_key_until_it_expires() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.link");
    d.create_running(&uid).await;
    let ask = |ttl: u64| {
        d.http
            .get(format!("{}/server/save/{uid}?expires_in={ttl}", d.base))
            .header("X-Api-Key", &d.key)
            .header("Accept", "application/json")
            .send()
    };
    let res = ask(600).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    let url = v["download_url"].as_str().unwrap().to_owned();
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(url.starts_with(&d.base), "{url} is under {}", d.base);

    // No key needed.
    let res = d.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.bytes().await.unwrap();
    assert_eq!(&bytes[..2], b"PK", "a zip");

    // A changed signature, path or expiry is refused.
    let (head, sig) = url.rsplit_once("sig=").unwrap();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    for bad in [
        format!("{head}sig={flipped}{}", &sig[1..]),
        url.replacen(".zip?", "x.zip?", 1),
        url.replacen("expires=", "expires=1", 1),
    ] {
        let res = d.http.get(&bad).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{bad}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["status"], "error", "{v}");
    }

    // A link past its expiry is gone.
    let res = ask(1).await.unwrap();
    let v: Value = res.json().await.unwrap();
    let short = v["download_url"].as_str().unwrap().to_owned();
    let v = wait_for(Duration::from_secs(10), "the link to expire", || async {
        let res = d.http.get(&short).send().await.unwrap();
        (res.status() == StatusCode::GONE).then_some(())?;
        Some(res.json::<Value>().await.unwrap())
    })
    .await;
    assert_eq!(v["err_code"], "link.expired", "{v}");

    // The zip form still answers PEON's clients.
    let res = d
        .http
        .get(format!("{}/server/save/{uid}", d.base))
        .header("X-Api-Key", &d.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/zip");
    d.cleanup().await;
}

/// A real S3-compatible server (moto, from PyPI) on a free 127.0.0.1 port, killed on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Moto {
        // The bucket is made with this process's own reqwest client: its TLS provider first
        // (a test run alone has no daemon that did it already).
        peon::http::init_tls();
        let port = free_port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run moto_server ({e}): install it with `pip install 'moto[server]'` \
                     (scripts/ensure-deps does)"
                )
            });
        let m = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_for(Duration::from_secs(30), "moto_server to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        m
    }

    /// Creates a bucket (moto takes unsigned requests).
    async fn bucket(&self, name: &str) {
        let res = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "create bucket: {}", res.status());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_s3_target_round_trips_without_a_local_copy() {
    let moto = Moto::start().await;
    let bucket = unique("b");
    moto.bucket(&bucket).await;
    let d = Daemon::start_with(crate::support::Opts {
        s3: Some((moto.endpoint.clone(), bucket.clone())),
        ..Default::default()
    })
    .await;
    let game = backup_game(&d);
    let uid = format!("{game}.s3");
    d.create_running(&uid).await;
    let dir = d.server_dir(&uid);
    write(&dir, "user/world/region.dat", &vec![9u8; 2_000_000]);
    let (s, v) = d
        .put(
            &format!("/server/backup-policy/{uid}"),
            json!({"target": "s3"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["backup_target"], "s3", "{v}");

    let (s, info) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(info["target"], "s3", "{info}");
    let (g, n) = uid.split_once('.').unwrap();
    let local = d.data.join("backups").join(g).join(n);
    assert!(
        !local.exists() || std::fs::read_dir(&local).unwrap().count() == 0,
        "no local copy"
    );
    let archive = download(&d, &uid, &info).await;
    let tmp = tempfile::tempdir().unwrap();
    peon::backup::unpack(&archive[..], tmp.path()).unwrap();
    let want = checksums(tmp.path());

    write(&dir, "user/world/region.dat", b"garbage");
    let id = info["id"].as_str().unwrap();
    let (s, v) = d
        .post(&format!("/server/restore/{uid}/{id}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = checksums(&dir);
    assert_eq!(got["user/world/region.dat"], want["user/world/region.dat"]);

    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    let targets: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["s3", "s3"],
        "the backup and the safety backup: {list}"
    );
    let (s, _) = d
        .delete(&format!("/server/backup/{uid}/{id}"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    d.cleanup().await;
}

/// Runs the `peon` binary against `d`; returns its exit code and standard output.
async fn peon(d: &Daemon, args: &[&str]) -> (i32, String) {
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_peon"))
        .args(args)
        .env_remove("PEON_CONFIG")
        .env("PEON_URL", &d.root)
        .env("PEON_API_KEY", &d.key)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run peon");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "peon {args:?}: {out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), out)
}

#[tokio::test]
async fn the_cli_backs_up_lists_downloads_restores_and_sets_the_policy() {
    let d = Daemon::start().await;
    let game = backup_game(&d);
    let uid = format!("{game}.cli");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, out) = peon(&d, &["server", "backup", &uid, "--json"]).await;
    let b: Value = serde_json::from_str(&out).unwrap();
    let id = b["id"].as_str().unwrap().to_owned();
    let (_, out) = peon(&d, &["server", "backups", &uid]).await;
    assert!(out.starts_with("ID"), "{out}");
    assert!(out.contains(&id), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.tar.zst");
    let (_, out) = peon(
        &d,
        &[
            "server",
            "backup-download",
            &uid,
            &id,
            "-o",
            file.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["sha256"], b["sha256"], "{v}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        b["bytes"].as_u64().unwrap()
    );
    let (_, out) = peon(&d, &["server", "backup-policy", &uid, "--keep-daily", "7"]).await;
    assert!(out.contains("daily 7"), "{out}");
    let (_, out) = peon(&d, &["server", "restore", &uid, &id, "--json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["uid"], uid.as_str(), "{v}");
    let (_, out) = peon(&d, &["server", "backup-delete", &uid, &id]).await;
    assert!(out.contains("deleted"), "{out}");
    d.cleanup().await;
}

#[tokio::test]
async fn save_answers_the_zip_unless_json_alone_is_asked_for() {
    let d = Daemon::start().await;
    let (game, _) = d.new_game(1);
    let uid = format!("{game}.accept");
    let (s, v) = d
        .put(
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "x", "start_later": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for (accept, zip) in [
        ("application/json, text/plain, */*", true),
        ("application/zip, application/json", true),
        ("application/json", false),
    ] {
        let res = d
            .http
            .get(format!("{}/server/save/{uid}", d.base))
            .header("X-Api-Key", &d.key)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ct == "application/zip", zip, "{accept}: {ct}");
    }
}

/// A small tmpfs mounted over `path` (we run as root), unmounted on drop.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs (needs root): {st}");
        Tmpfs {
            path: path.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The names of the files in a server's local backup folder (none when it does not exist).
fn backup_files(d: &Daemon, uid: &str) -> Vec<String> {
    let (g, n) = uid.split_once('.').unwrap();
    match std::fs::read_dir(d.data.join("backups").join(g).join(n)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn job_steps(job: &Value) -> Vec<(String, String)> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_full_backup_disk_refuses_before_starting_and_a_disk_filled_midway_leaves_nothing() {
    let d = Daemon::start().await;
    // The game's save writes 32 MiB of noise: past the space check, more than the disk holds.
    let game = backup_game(&d);
    let script = crate::support::GAME_SCRIPT.replace(
        r#"save) date > "$WORLD/last_save"; echo "game: saved" ;;"#,
        r#"save) head -c 33554432 /dev/urandom > "$WORLD/noise.bin"; echo "game: saved" ;;"#,
    );
    assert_ne!(
        script,
        crate::support::GAME_SCRIPT,
        "the save line was found"
    );
    std::fs::write(
        d.plans_dir().join(&game).join("actions/server_start"),
        script,
    )
    .unwrap();
    let uid = format!("{game}.full");
    d.create_running(&uid).await;
    let _disk = Tmpfs::mount(&d.data.join("backups"), 24);
    let dir = d.server_dir(&uid);

    // 12 MiB of world + the 16 MiB headroom > 24 MiB: refused before anything is written.
    let noise: Vec<u8> = (0..12u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&dir, "user/world/big.dat", &noise);
    let (s, v) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert_eq!(v["err_code"], "backup.nospace", "{v}");
    assert!(
        v["info"]
            .as_str()
            .unwrap()
            .contains("Not enough free space"),
        "{v}"
    );
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=backup")).await;
    assert_eq!(
        job_steps(&jobs[0]),
        [("check space".to_owned(), "failed".to_owned())],
        "{jobs}"
    );
    assert!(
        backup_files(&d, &uid).is_empty(),
        "{:?}",
        backup_files(&d, &uid)
    );

    // A small world passes the check; the save then fills the disk while the archive streams.
    std::fs::remove_file(dir.join("user/world/big.dat")).unwrap();
    let (s, v) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert_eq!(
        v["info"], "The disk filled up while writing the backup; nothing was kept.",
        "{v}"
    );
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=backup")).await;
    let steps = job_steps(&jobs[0]);
    assert_eq!(
        steps.last().unwrap(),
        &("archive".to_owned(), "failed".to_owned()),
        "{jobs}"
    );
    assert!(
        steps
            .iter()
            .any(|(n, st)| n == "check space" && st == "succeeded")
    );
    // No archive, no temporary file, no record: nothing that looks like a backup.
    assert!(
        backup_files(&d, &uid).is_empty(),
        "{:?}",
        backup_files(&d, &uid)
    );
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    assert_eq!(list, json!([]), "{list}");
    // The disk is whole again, and the game still runs.
    let free = peon::backup::space::free_bytes(&d.data.join("backups")).unwrap();
    assert!(free > 23 << 20, "{free} bytes free");
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["container_state"], "running", "{v}");
    d.cleanup().await;
}

#[tokio::test]
async fn an_unfinished_backup_left_by_a_crash_is_removed_at_the_next_start() {
    let mut d = Daemon::start().await;
    let game = backup_game(&d);
    let uid = format!("{game}.crash");
    d.create_running(&uid).await;
    let (s, info) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let id = info["id"].as_str().unwrap();
    let (g, n) = uid.split_once('.').unwrap();
    let folder = d.data.join("backups").join(g).join(n);
    // What a crash mid-backup leaves: the archive under its temporary name, and the temporary
    // file of an atomic write.
    let half = folder.join(".20260101-000000-000abcd.tar.zst.tmp-1a2b3c");
    std::fs::write(&half, b"half an archive").unwrap();
    let half_json = folder.join(".20260101-000000-000abcd.json.tmp-4d5e6f");
    std::fs::write(&half_json, b"{").unwrap();
    d.restart().await;
    d.wait_server(&uid, Duration::from_secs(30), |v| v["uid"] == uid.as_str())
        .await;
    let mut left = backup_files(&d, &uid);
    left.sort();
    assert_eq!(
        left,
        [format!("{id}.json"), format!("{id}.tar.zst")],
        "only the finished backup is left"
    );
    let (_, list) = d.get(&format!("/server/backups/{uid}")).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id);
    d.cleanup().await;
}

#[tokio::test]
async fn a_damaged_s3_archive_is_refused_before_the_game_is_stopped() {
    let moto = Moto::start().await;
    let bucket = unique("b");
    moto.bucket(&bucket).await;
    let d = Daemon::start_with(crate::support::Opts {
        s3: Some((moto.endpoint.clone(), bucket.clone())),
        ..Default::default()
    })
    .await;
    let game = backup_game(&d);
    let uid = format!("{game}.s3bad");
    d.create_running(&uid).await;
    let dir = d.server_dir(&uid);
    write(&dir, "user/world/region.dat", &vec![5u8; 500_000]);
    let (s, v) = d
        .put(
            &format!("/server/backup-policy/{uid}"),
            json!({"target": "s3"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, info) = d.post(&format!("/server/backup/{uid}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    let id = info["id"].as_str().unwrap();

    // One bit flipped in the middle of the stored object (moto takes unsigned writes).
    let mut bytes = download(&d, &uid, &info).await;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let (g, n) = uid.split_once('.').unwrap();
    let res = reqwest::Client::new()
        .put(format!("{}/{bucket}/{g}/{n}/{id}.tar.zst", moto.endpoint))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "overwrite: {}", res.status());

    write(&dir, "user/world/after.dat", b"made after the backup");
    let before = checksums(&dir.join("user/world"));
    let (s, v) = d
        .post(&format!("/server/restore/{uid}/{id}"), json!({}))
        .await;
    assert!(s.is_server_error(), "{s}: {v}");
    let msg = v["info"].as_str().unwrap();
    assert!(msg.contains("damaged"), "a clear error: {v}");
    let (_, jobs) = d.get(&format!("/jobs?uid={uid}&kind=restore")).await;
    assert_eq!(
        job_steps(&jobs[0]),
        [
            ("check space".to_owned(), "succeeded".to_owned()),
            ("unpack and verify".to_owned(), "failed".to_owned())
        ],
        "refused before the stop: {jobs}"
    );
    assert_eq!(checksums(&dir.join("user/world")), before);
    let (_, v) = d.get(&format!("/server/get/{uid}")).await;
    assert_eq!(v["container_state"], "running", "never stopped: {v}");
    assert!(v["last_exit"].is_null(), "never stopped: {v}");
    let staging = d.data.join("servers/.staging");
    assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);
    d.cleanup().await;
}

/// S3 as the daemon's default target (configuration file): a server without its own target
/// backs up to the bucket; one whose policy says `local` keeps its backups on the host.
#[tokio::test]
async fn s3_as_the_default_target_with_a_local_override() {
    let moto = Moto::start().await;
    let bucket = unique("b");
    moto.bucket(&bucket).await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("peon.toml");
    std::fs::write(&cfg, "backup_target = \"s3\"\n").unwrap();
    let d = Daemon::start_with(crate::support::Opts {
        s3: Some((moto.endpoint.clone(), bucket.clone())),
        config: Some(cfg),
        ..Default::default()
    })
    .await;
    // Two games: each plan has its own port.
    let (remote, local) = (
        format!("{}.remote", backup_game(&d)),
        format!("{}.local", backup_game(&d)),
    );
    for uid in [&remote, &local] {
        d.create_running(uid).await;
        write(
            &d.server_dir(uid),
            "user/world/region.dat",
            &vec![3u8; 300_000],
        );
    }
    let (s, v) = d
        .put(
            &format!("/server/backup-policy/{local}"),
            json!({"target": "local"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, info) = d.post(&format!("/server/backup/{remote}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(info["target"], "s3", "the daemon's default: {info}");
    let (g, n) = remote.split_once('.').unwrap();
    let on_host = d.data.join("backups").join(g).join(n);
    assert!(
        !on_host.exists() || std::fs::read_dir(&on_host).unwrap().count() == 0,
        "no local copy of an S3 backup"
    );
    // The archive in the bucket is the server's world.
    let archive = download(&d, &remote, &info).await;
    let tmp = tempfile::tempdir().unwrap();
    peon::backup::unpack(&archive[..], tmp.path()).unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("user/world/region.dat")).unwrap(),
        vec![3u8; 300_000]
    );

    let (s, info) = d.post(&format!("/server/backup/{local}"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{info}");
    assert_eq!(info["target"], "local", "the server's override: {info}");
    let (g, n) = local.split_once('.').unwrap();
    let on_host = d.data.join("backups").join(g).join(n);
    let files: Vec<_> = std::fs::read_dir(&on_host)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.zst"))
        .collect();
    assert_eq!(files.len(), 1, "one local archive in {}", on_host.display());
    d.cleanup().await;
}
