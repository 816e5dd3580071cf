//! Updates that can be undone: an update whose new version crashes, never gets ready, or dies
//! within the watch window is rolled back by itself, world included; a good one is kept.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use peon::docker::Engine;

use crate::support::{Daemon, Events, GAME_IMAGE, free_port, game_plan, unique, wait_for};

const LONG: Duration = Duration::from_secs(60);

/// Test images built on the stand-in game image; every tag and image goes at the end, even
/// when the test fails.
pub(crate) struct Images {
    refs: Vec<String>,
}

impl Images {
    pub(crate) fn new() -> Images {
        Images { refs: Vec::new() }
    }

    /// Builds `tag` from a Dockerfile and returns the image id.
    pub(crate) async fn build(&mut self, engine: &Engine, tag: &str, dockerfile: &str) -> String {
        let mut ar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(dockerfile.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        ar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
            .expect("tar");
        let ctx = ar.into_inner().expect("tar");
        engine.build_image(tag, ctx).await.expect("build image");
        let id = engine
            .image_id(tag)
            .await
            .expect("inspect")
            .expect("built image");
        self.refs.push(tag.to_owned());
        self.refs.push(id.clone());
        id
    }

    pub(crate) fn keep(&mut self, r: String) {
        self.refs.push(r);
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for r in self.refs.iter().rev() {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "-f", r])
                .output();
        }
    }
}

/// A game whose plan runs `image`; `lifecycle` goes into the plan.
fn game_on(d: &Daemon, image: &str, lifecycle: Value) -> String {
    let game = unique("up");
    let mut plan = game_plan(&game, &[&[free_port()]]);
    plan["metadata"]["image"] = json!(image);
    plan["lifecycle"] = lifecycle;
    d.add_plan(&game, &plan);
    game
}

pub(crate) fn good(u: &str, n: u32) -> String {
    format!("FROM {GAME_IMAGE}\nLABEL peon.test.build=good-{n}-{u}\n")
}

async fn container_image(d: &Daemon, uid: &str) -> String {
    d.engine
        .inspect(&format!("peon.warcamp.{uid}"))
        .await
        .expect("inspect")
        .expect("container")
        .image
}

async fn last_update_job(d: &Daemon, uid: &str) -> Value {
    let (s, v) = d.get(&format!("/jobs?uid={uid}&kind=update")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Newest first.
    v.as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| panic!("no update job: {v}"))
}

#[tokio::test]
async fn an_update_to_a_crashing_image_rolls_back_with_the_world_intact() {
    // Declared first, dropped last: the daemon's containers go before the images.
    let mut images = Images::new();
    let d = Daemon::start().await;
    let u = unique("rb");
    let tag = format!("peon-test/{u}:latest");
    let good_id = images.build(&d.engine, &tag, &good(&u, 1)).await;
    let game = game_on(&d, &tag, json!({"stop_grace": 5}));
    let uid = format!("{game}.world");
    images.keep(format!("peon-known-good/{game}:world"));
    d.create_running(&uid).await;
    let dir = d.server_dir(&uid);
    std::fs::write(dir.join("data/world.dat"), b"months of building").unwrap();
    std::fs::create_dir_all(dir.join("data/region")).unwrap();
    std::fs::write(dir.join("data/region/r.0.0"), vec![7u8; 100_000]).unwrap();

    // The next build under the same tag crashes at start.
    let bad_id = images
        .build(
            &d.engine,
            &tag,
            &format!(
                "FROM {GAME_IMAGE}\nLABEL peon.test.build=bad-{u}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo broken build; exit 3\"]\n"
            ),
        )
        .await;
    assert_ne!(good_id, bad_id);

    let mut ev = Events::open(&d, Some(&uid)).await;
    // reinit wipes data/: only the undo point can bring the world back.
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "reinit", "watch": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["err_code"], "srv.update.rolledback", "{v}");
    let info = v["info"].as_str().unwrap_or_default();
    assert!(info.contains("rolled back"), "{v}");
    assert!(info.contains("exit code 3"), "{v}");
    ev.wait(LONG, "the rollback event", |e| {
        e["type"] == "update_rolled_back" && e["ok"] == true
    })
    .await;

    let v = d
        .wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    assert_eq!(v["image_pin"], json!(good_id), "{v}");
    assert_eq!(v["last_update"]["result"], "rolled_back", "{v}");
    assert_eq!(v["last_update"]["from_image"], json!(good_id), "{v}");
    assert_eq!(v["last_update"]["mode"], "reinit", "{v}");
    assert_eq!(container_image(&d, &uid).await, good_id);
    assert_eq!(
        std::fs::read(dir.join("data/world.dat")).unwrap(),
        b"months of building"
    );
    assert_eq!(
        std::fs::read(dir.join("data/region/r.0.0")).unwrap(),
        vec![7u8; 100_000]
    );
    // The last known good image is kept referenced while the server is pinned to it.
    assert_eq!(
        d.engine
            .image_id(&format!("peon-known-good/{game}:world"))
            .await
            .unwrap(),
        Some(good_id.clone())
    );

    // The job says what happened and why.
    let job = last_update_job(&d, &uid).await;
    assert_eq!(job["state"], "failed", "{job}");
    let err = job["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("rolled back") && err.contains("exit code 3"),
        "{job}"
    );
    let steps: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        steps.contains(&"record") && steps.contains(&"roll back"),
        "{job}"
    );
    // The undo point is gone once used.
    assert!(!d.data.join("undo").join(&uid).exists());

    // A fixed image under the tag: the update is kept and the pin lifted.
    let fixed_id = images.build(&d.engine, &tag, &good(&u, 2)).await;
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "image", "watch": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["last_update"]["result"], "updated", "{v}");
    assert_eq!(v["last_update"]["to_image"], json!(fixed_id), "{v}");
    assert!(v.get("image_pin").is_none(), "{v}");
    assert_eq!(container_image(&d, &uid).await, tag);
    assert_eq!(d.engine.image_id(&tag).await.unwrap(), Some(fixed_id));
    assert_eq!(
        d.engine
            .image_id(&format!("peon-known-good/{game}:world"))
            .await
            .unwrap(),
        None,
        "the known-good tag goes with the pin"
    );
    assert_eq!(
        std::fs::read(dir.join("data/world.dat")).unwrap(),
        b"months of building"
    );
    d.cleanup().await;
}

#[tokio::test]
async fn not_ready_in_time_or_dying_in_the_watch_window_rolls_back() {
    // Declared first, dropped last: the daemon's containers go before the images.
    let mut images = Images::new();
    let d = Daemon::start().await;
    let u = unique("rw");
    let tag = format!("peon-test/{u}:latest");
    let good_id = images.build(&d.engine, &tag, &good(&u, 1)).await;
    let game = game_on(
        &d,
        &tag,
        json!({"ready_pattern": "listening on port", "ready_timeout": 3, "stop_grace": 2}),
    );
    let uid = format!("{game}.watch");
    images.keep(format!("peon-known-good/{game}:watch"));
    d.create_running(&uid).await;

    // A build that runs but never says it is ready.
    images
        .build(
            &d.engine,
            &tag,
            &format!(
                "FROM {GAME_IMAGE}\nLABEL peon.test.build=silent-{u}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo silent build; exec sleep 3600\"]\n"
            ),
        )
        .await;
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "image", "watch": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["info"].as_str().unwrap_or_default().contains("not ready"),
        "{v}"
    );
    let v = d
        .wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    assert_eq!(v["image_pin"], json!(good_id), "{v}");
    assert_eq!(container_image(&d, &uid).await, good_id);

    // A build that gets ready, then dies seconds later (after the start settled): caught by
    // the watch window.
    images
        .build(
            &d.engine,
            &tag,
            &format!(
                "FROM {GAME_IMAGE}\nLABEL peon.test.build=fragile-{u}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo game: listening on port 1; sleep 3; echo fell over; exit 4\"]\n"
            ),
        )
        .await;
    let (s, v) = d
        .put(
            &format!("/server/update/{uid}"),
            json!({"mode": "image", "watch": "20s"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    let info = v["info"].as_str().unwrap_or_default();
    assert!(
        info.contains("watch window") && info.contains("exit code 4"),
        "{v}"
    );
    let v = d
        .wait_server(&uid, LONG, |v| v["server_state"] == "running")
        .await;
    assert_eq!(v["image_pin"], json!(good_id), "{v}");
    assert_eq!(v["last_update"]["result"], "rolled_back", "{v}");
    assert_eq!(container_image(&d, &uid).await, good_id);

    // A watch that is not a duration is refused before anything happens.
    let (s, v) = d
        .put(&format!("/server/update/{uid}"), json!({"watch": "soon"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    d.cleanup().await;
}

#[tokio::test]
async fn an_update_cut_short_by_a_daemon_kill_is_rolled_back_at_the_next_start() {
    use crate::resilience::{Cleanup, spawn_daemon};
    crate::support::ensure_image().await;
    let mut images = Images::new();
    let engine = Engine::new(crate::support::DOCKER);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_owned();
    let instance = unique("uk");
    let _guard = Cleanup(instance.clone());
    let key = "update-kill-key";
    let u = unique("uk");
    let tag = format!("peon-test/{u}:latest");
    let good_id = images.build(&engine, &tag, &good(&u, 1)).await;
    let game = unique("ug");
    let mut plan = game_plan(&game, &[&[free_port()]]);
    plan["metadata"]["image"] = json!(tag);
    crate::support::write_plan(&data.join("plans"), &game, &plan);
    std::fs::write(data.join("plans/plans.json"), "[]").unwrap();
    let uid = format!("{game}.cut");
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
    std::fs::write(dir.join("data/world.dat"), b"do not lose me").unwrap();
    images.build(&engine, &tag, &good(&u, 2)).await;
    // A reinit (data/ wiped) with a long watch, killed while it watches.
    let update = {
        let req = http
            .put(format!("{base}/server/update/{uid}"))
            .header("X-Api-Key", key)
            .json(&json!({"mode": "reinit", "watch": "5m"}));
        tokio::spawn(async move {
            let _ = req.send().await;
        })
    };
    wait_for(LONG, "the update to watch the new version", || {
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
    assert!(!dir.join("data/world.dat").exists(), "reinit wiped data/");
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
    assert!(
        v["last_update"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("daemon stopped"),
        "{v}"
    );
    assert_eq!(v["image_pin"], json!(good_id), "{v}");
    assert_eq!(
        std::fs::read(dir.join("data/world.dat")).unwrap(),
        b"do not lose me"
    );
    use peon::runtime::Runtime;
    let c = Runtime::inspect(&engine, &format!("peon.warcamp.{uid}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.image_id, good_id);
    assert!(
        !data.join("undo").join(&uid).exists(),
        "the undo point was used"
    );
}
