//! Rollouts to a plan version: the plan is refreshed from a plan source on 127.0.0.1, every
//! server gets the new plan's files, its config rebuilt (the host's settings kept, new settings at
//! their defaults, removed ones dropped) and the new plan's image, its world kept. A plan version
//! whose start action fails in a later batch takes every server back to its old plan files and
//! config, byte for byte, and its old image, world intact.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode as AxStatus;
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Daemon, GAME_SCRIPT, Opts, free_port, game_plan, unique, wait_for};
use crate::updates::{Images, good};

const LONG: Duration = Duration::from_secs(240);

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A plan source in the base-URL form (`/base/plans.json`, `/base/<game>/plan.json`,
/// `/base/<game>/actions/<name>`) on 127.0.0.1.
pub(crate) struct Source {
    addr: String,
    files: Files,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(files): State<Files>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches("/base/").to_owned();
    match files.lock().expect("files").get(&path) {
        Some(b) => (AxStatus::OK, b.clone()).into_response(),
        None => AxStatus::NOT_FOUND.into_response(),
    }
}

impl Source {
    pub(crate) async fn start() -> Source {
        let files: Files = Arc::default();
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(files.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Source { addr, files, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/base/", self.addr)
    }

    /// Serves `plan` (and `script` as its start action) as the only plan.
    pub(crate) fn serve_plan(&self, game: &str, plan: &Value, script: &str) {
        let mut f = self.files.lock().expect("files");
        f.insert(
            "plans.json".into(),
            serde_json::to_vec(&json!([{"title": game, "game_uid": game, "plan_url": null}]))
                .expect("json"),
        );
        f.insert(
            format!("{game}/plan.json"),
            serde_json::to_vec_pretty(plan).expect("json"),
        );
        f.insert(
            format!("{game}/actions/server_start"),
            script.as_bytes().to_vec(),
        );
    }
}

async fn running_image(d: &Daemon, uid: &str) -> String {
    use peon::runtime::Runtime;
    Runtime::inspect(d.engine.as_ref(), &format!("peon.warcamp.{uid}"))
        .await
        .expect("inspect")
        .expect("container")
        .image_id
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
}

fn server<'a>(r: &'a Value, uid: &str) -> &'a Value {
    r["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["uid"] == uid))
        .unwrap_or_else(|| panic!("{uid} is not in the rollout: {r}"))
}

/// A daemon whose plans come from `src`, serving `plan` at version 1.0.0; `n` servers of it
/// running (the first with the host's own MOTD), each with a treasure in its world.
async fn setup(
    images: &mut Images,
    src: &Source,
    n: usize,
) -> (Daemon, String, Value, String, Vec<String>) {
    let d = Daemon::start_with(Opts {
        plans_url: Some(src.url()),
        ..Default::default()
    })
    .await;
    let u = unique("pv");
    let v1_tag = format!("peon-test/{u}:v1");
    let v1_id = images.build(&d.engine, &v1_tag, &good(&u, 1)).await;
    let game = unique("pg");
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let groups: Vec<&[u16]> = ports.iter().map(std::slice::from_ref).collect();
    let mut plan = game_plan(&game, &groups);
    plan["metadata"]["image"] = json!(v1_tag);
    src.serve_plan(&game, &plan, GAME_SCRIPT);
    let (s, v) = d.put("/plans", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let uids: Vec<String> = (0..n).map(|i| format!("{game}.s{i}")).collect();
    for (i, uid) in uids.iter().enumerate() {
        images.keep(format!("peon-known-good/{uid}").replacen('.', ":", 1));
        let mut body = json!({"SERVER_NAME": format!("host-{i}")});
        if i == 0 {
            body["MOTD"] = json!("the host's own motd");
        }
        let (s, v) = d.put(&format!("/server/create/{uid}"), body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        std::fs::write(
            d.server_dir(uid).join("user/treasure"),
            format!("gold of {uid}"),
        )
        .unwrap();
    }
    (d, game, plan, v1_id, uids)
}

async fn run_rollout(d: &Daemon, body: Value) -> Value {
    let (s, r) = d.post("/rollouts", body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    wait_for(LONG, "the rollout to end", || async {
        let (_, r) = d.get(&format!("/rollout/{id}")).await;
        (r["state"] != "running").then_some(r)
    })
    .await
}

#[tokio::test]
async fn a_rollout_to_a_newer_plan_version_keeps_host_settings_and_worlds() {
    let mut images = Images::new();
    let src = Source::start().await;
    let (d, game, plan, v1_id, uids) = setup(&mut images, &src, 3).await;

    // Not served yet: refused before anything changes, naming the version there is.
    let (s, v) = d
        .post(
            "/rollouts",
            json!({"game": game, "target": {"plan_version": "2.0.0"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["info"].as_str().unwrap().contains("1.0.0"), "{v}");

    // Version 2.0.0: a new image, a new setting, one dropped, a new default MOTD, a new script.
    let u = unique("pv2");
    let v2_tag = format!("peon-test/{u}:v2");
    let v2_id = images.build(&d.engine, &v2_tag, &good(&u, 2)).await;
    let mut v2 = plan.clone();
    v2["metadata"]["version"] = json!("2.0.0");
    v2["metadata"]["image"] = json!(v2_tag);
    v2["environment"]["NEW_SETTING"] = json!("fresh");
    v2["environment"]["MOTD"] = json!("motd of plan two");
    v2["environment"]
        .as_object_mut()
        .unwrap()
        .remove("PASSWORD");
    let script2 = format!("{GAME_SCRIPT}\n# plan 2.0.0\n");
    src.serve_plan(&game, &v2, &script2);

    let r = run_rollout(
        &d,
        json!({"game": game, "target": {"plan_version": "2.0.0"}, "batch_percent": 50,
            "success_timeout": 60, "watch": 1}),
    )
    .await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["target_plan_version"], "2.0.0", "{r}");
    assert_eq!(r["last_known_good"], "1.0.0", "{r}");
    assert_eq!(r["batches"], 2, "{r}");
    for (i, uid) in uids.iter().enumerate() {
        assert_eq!(server(&r, uid)["state"], "updated", "{r}");
        assert_eq!(server(&r, uid)["from_plan_version"], "1.0.0", "{r}");
        let dir = d.server_dir(uid);
        let cfg = read_json(&dir.join("config.json"));
        let env = &cfg["environment"];
        assert_eq!(env["SERVER_NAME"], format!("host-{i}"), "{cfg}");
        assert_eq!(env["NEW_SETTING"], "fresh", "{cfg}");
        assert!(env.get("PASSWORD").is_none(), "{cfg}");
        let motd = if i == 0 {
            "the host's own motd"
        } else {
            "motd of plan two"
        };
        assert_eq!(env["MOTD"], motd, "{cfg}");
        assert_eq!(cfg["metadata"]["version"], "2.0.0", "{cfg}");
        let state = read_json(&dir.join(".peon.json"));
        assert_eq!(state["plan_version"], "2.0.0", "{state}");
        assert_eq!(state["last_update"]["plan_version"], "1.0.0", "{state}");
        assert_eq!(state["last_update"]["to_plan_version"], "2.0.0", "{state}");
        assert_eq!(state["last_update"]["result"], "updated", "{state}");
        assert_eq!(
            std::fs::read_to_string(dir.join("actions/server_start")).unwrap(),
            script2
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("user/treasure")).unwrap(),
            format!("gold of {uid}")
        );
        let v = d
            .wait_server(uid, LONG, |v| v["server_state"] == "running")
            .await;
        let img = running_image(&d, uid).await;
        assert_eq!(img, v2_id, "{v}");
        assert_ne!(img, v1_id);
    }
    // The job says from which plan version to which.
    let (_, jobs) = d.get(&format!("/jobs?uid={}&kind=update", uids[1])).await;
    let steps: Vec<&str> = jobs[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(steps.contains(&"plan 1.0.0 -> 2.0.0"), "{jobs}");
    // A single update to a plan version the source does not serve changes nothing.
    let cfg = std::fs::read(d.server_dir(&uids[0]).join("config.json")).unwrap();
    let (s, v) = d
        .put(
            &format!("/server/update/{}", uids[0]),
            json!({"mode": "image", "plan_version": "9.9.9"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["info"].as_str().unwrap().contains("2.0.0"), "{v}");
    assert_eq!(
        std::fs::read(d.server_dir(&uids[0]).join("config.json")).unwrap(),
        cfg
    );
    d.cleanup().await;
}

#[tokio::test]
async fn a_bad_plan_version_rolls_every_server_back_to_its_old_plan_byte_for_byte() {
    let mut images = Images::new();
    let src = Source::start().await;
    let (d, game, plan, v1_id, uids) = setup(&mut images, &src, 3).await;
    // Everything of the plan a server has before, byte for byte.
    let files = ["config.json", "plan.json", "actions/server_start"];
    let before: Vec<Vec<Vec<u8>>> = uids
        .iter()
        .map(|uid| {
            files
                .iter()
                .map(|f| std::fs::read(d.server_dir(uid).join(f)).unwrap())
                .collect()
        })
        .collect();
    // Version 3.0.0 (its own image) cannot start on a world with a `bad` file: the last
    // server's, in the second batch.
    let u = unique("pv3");
    let v3_tag = format!("peon-test/{u}:v3");
    let v3_id = images.build(&d.engine, &v3_tag, &good(&u, 3)).await;
    let mut v3 = plan.clone();
    v3["metadata"]["version"] = json!("3.0.0");
    v3["metadata"]["image"] = json!(v3_tag);
    v3["environment"]["NEW_SETTING"] = json!("three");
    let script3 = GAME_SCRIPT.replacen(
        "\n",
        "\nif [ -e /home/steam/user/bad ]; then echo plan 3 refuses this world; exit 3; fi\n",
        1,
    );
    src.serve_plan(&game, &v3, &script3);
    std::fs::write(d.server_dir(&uids[2]).join("user/bad"), "").unwrap();

    let r = run_rollout(
        &d,
        json!({"uids": uids, "target": {"plan_version": "3.0.0"}, "batch_percent": 50,
            "success_timeout": 60, "watch": 1}),
    )
    .await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["last_known_bad"], "3.0.0", "{r}");
    assert_eq!(r["last_known_good"], "1.0.0", "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("batch 2"),
        "{r}"
    );
    assert_eq!(server(&r, &uids[0])["state"], "rolled_back", "{r}");
    assert_eq!(server(&r, &uids[1])["state"], "rolled_back", "{r}");
    assert_eq!(server(&r, &uids[2])["state"], "failed", "{r}");
    for (i, uid) in uids.iter().enumerate() {
        let dir = d.server_dir(uid);
        for (j, f) in files.iter().enumerate() {
            assert_eq!(
                std::fs::read(dir.join(f)).unwrap(),
                before[i][j],
                "{uid}: {f} is not back byte for byte"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("user/treasure")).unwrap(),
            format!("gold of {uid}")
        );
        let state = read_json(&dir.join(".peon.json"));
        assert_eq!(state["plan_version"], "1.0.0", "{state}");
        let v = d
            .wait_server(uid, LONG, |v| v["server_state"] == "running")
            .await;
        let img = running_image(&d, uid).await;
        assert_eq!(img, v1_id, "{uid}: {v}");
        assert_ne!(img, v3_id);
    }
    d.cleanup().await;
}

#[tokio::test]
async fn a_plan_update_cut_short_by_a_daemon_kill_is_rolled_back_to_the_old_plan() {
    use crate::resilience::{Cleanup, spawn_daemon};
    crate::support::ensure_image().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_owned();
    let instance = unique("pk");
    let _guard = Cleanup(instance.clone());
    let key = "plan-kill-key";
    let game = unique("pk");
    let plan = game_plan(&game, &[&[free_port()]]);
    let plans = data.join("plans");
    crate::support::write_plan(&plans, &game, &plan);
    std::fs::write(plans.join("plans.json"), "[]").unwrap();
    let uid = format!("{game}.cut");
    // The rollback pins the server with a known-good tag: it goes at the end.
    let mut images = Images::new();
    images.keep(format!("peon-known-good/{game}:cut"));
    let http = peon::http::client_builder().build().unwrap();
    let get = |base: String, path: String| {
        let req = http.get(format!("{base}{path}")).header("X-Api-Key", key);
        async move {
            let r = req.send().await.ok()?;
            r.json::<Value>().await.ok()
        }
    };

    let (first, base) = spawn_daemon(&data, &instance, key).await;
    let r = http
        .put(format!("{base}/server/create/{uid}"))
        .header("X-Api-Key", key)
        .json(&json!({"SERVER_NAME": "cut"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let dir = data.join("servers").join(&game).join("cut");
    std::fs::write(dir.join("user/treasure"), "gold").unwrap();
    let files = ["config.json", "plan.json", "actions/server_start"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    // This host already holds version 2.0.0: no plan source is asked.
    let mut v2 = plan.clone();
    v2["metadata"]["version"] = json!("2.0.0");
    v2["environment"]["NEW_SETTING"] = json!("fresh");
    crate::support::write_plan(&plans, &game, &v2);
    std::fs::write(
        plans.join(&game).join("actions/server_start"),
        format!("{GAME_SCRIPT}\n# plan 2.0.0\n"),
    )
    .unwrap();
    let update = {
        let req = http
            .put(format!("{base}/server/update/{uid}"))
            .header("X-Api-Key", key)
            .json(&json!({"mode": "image", "plan_version": "2.0.0", "watch": "5m"}));
        tokio::spawn(async move {
            let _ = req.send().await;
        })
    };
    wait_for(LONG, "the plan update to watch the new version", || {
        let f = get(base.clone(), format!("/jobs?uid={uid}&kind=update"));
        async move {
            let jobs = f.await?;
            let steps = jobs.get(0)?.get("steps")?.as_array()?.clone();
            steps
                .iter()
                .any(|s| s["name"] == "watch" && s["state"] == "running")
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        read_json(&dir.join("config.json"))["environment"]["NEW_SETTING"],
        "fresh"
    );
    drop(first); // SIGKILL
    update.abort();

    let (_second, base) = spawn_daemon(&data, &instance, key).await;
    let v = wait_for(LONG, "the interrupted update to be rolled back", || {
        let f = get(base.clone(), format!("/server/get/{uid}"));
        async move {
            let v = f.await?;
            (v["last_update"]["result"] == "rolled_back" && v["server_state"] == "running")
                .then_some(v)
        }
    })
    .await;
    assert_eq!(v["last_update"]["to_plan_version"], "2.0.0", "{v}");
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), b, "{f} is not back");
    }
    assert_eq!(read_json(&dir.join(".peon.json"))["plan_version"], "1.0.0");
    assert_eq!(
        std::fs::read_to_string(dir.join("user/treasure")).unwrap(),
        "gold"
    );
}
