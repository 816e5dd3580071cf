//! Rollouts: servers updated to a target image in batches; a failed batch takes every updated
//! server back to the last known good; a rollout resumes after the daemon is killed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::resilience::{Cleanup, spawn_daemon};
use crate::support::{self, Daemon, GAME_IMAGE, free_port, game_plan, unique, wait_for};
use crate::updates::{Images, good};

const LONG: Duration = Duration::from_secs(180);

/// The id of the image the server's container runs.
async fn running_image(engine: &peon::docker::Engine, uid: &str) -> String {
    use peon::runtime::Runtime;
    Runtime::inspect(engine, &format!("peon.warcamp.{uid}"))
        .await
        .expect("inspect")
        .expect("container")
        .image_id
}

fn server<'a>(r: &'a Value, uid: &str) -> &'a Value {
    r["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["uid"] == uid))
        .unwrap_or_else(|| panic!("{uid} is not in the rollout: {r}"))
}

#[tokio::test]
async fn a_bad_batch_rolls_every_updated_server_back() {
    let mut images = Images::new();
    let d = Daemon::start().await;
    let u = unique("ro");
    let good_tag = format!("peon-test/{u}:good");
    let good_id = images.build(&d.engine, &good_tag, &good(&u, 1)).await;
    // The target refuses to run a world that has a `bad` file in its data.
    let target = format!("peon-test/{u}:next");
    let target_id = images
        .build(
            &d.engine,
            &target,
            &format!(
                "FROM {GAME_IMAGE}\nLABEL peon.test.build=next-{u}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"if [ -e /home/steam/steamcmd/data/bad ]; then echo refusing this world; exit 3; fi; exec /bin/sh /entrypoint\"]\n"
            ),
        )
        .await;
    let game = unique("rg");
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let groups: Vec<&[u16]> = ports.iter().map(std::slice::from_ref).collect();
    let mut plan = game_plan(&game, &groups);
    plan["metadata"]["image"] = json!(good_tag);
    d.add_plan(&game, &plan);
    let uids: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| format!("{game}.{n}"))
        .collect();
    for uid in &uids {
        images.keep(format!("peon-known-good/{uid}").replacen('.', ":", 1));
        d.create_running(uid).await;
    }
    // Batches of two: [a, b] then [c, d]; c cannot run the target.
    std::fs::write(d.server_dir(&uids[2]).join("data/bad"), "").unwrap();

    let (s, r) = d
        .post(
            "/rollouts",
            json!({
                "game": game, "target": {"image": target}, "batch_percent": 50,
                "success_percent": 100, "success_timeout": 30, "watch": 1
            }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["batches"], 2, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let r = wait_for(LONG, "the rollout to end", || async {
        let (_, r) = d.get(&format!("/rollout/{id}")).await;
        (r["state"] != "running").then_some(r)
    })
    .await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["last_known_bad"], json!(target), "{r}");
    assert_eq!(r["last_known_good"], json!(good_id), "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("batch 2"),
        "{r}"
    );
    assert_eq!(server(&r, &uids[0])["state"], "rolled_back", "{r}");
    assert_eq!(server(&r, &uids[1])["state"], "rolled_back", "{r}");
    assert_eq!(server(&r, &uids[2])["state"], "failed", "{r}");
    assert_eq!(server(&r, &uids[3])["state"], "rolled_back", "{r}");
    for uid in &uids {
        let v = d
            .wait_server(uid, LONG, |v| v["server_state"] == "running")
            .await;
        assert_eq!(running_image(&d.engine, uid).await, good_id, "{v}");
        assert_ne!(running_image(&d.engine, uid).await, target_id);
    }
    // Each server's updates are jobs asked for by the rollout.
    let (_, jobs) = d.get(&format!("/jobs?uid={}&kind=update", uids[0])).await;
    let who: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["requester"].as_str())
        .collect();
    assert_eq!(who.len(), 2, "there and back: {jobs}");
    assert!(who.iter().all(|w| *w == format!("rollout {id}")), "{jobs}");

    let (s, v) = d.post(&format!("/rollout/{id}/abort"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "an ended rollout: {v}");
    let (s, v) = d
        .post(
            "/rollouts",
            json!({"game": game, "target": {"plan_version": "2.0"}}),
        )
        .await;
    // The plan is at 1.0.0 and there is no plan source to fetch 2.0 from.
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["info"].as_str().unwrap_or_default().contains("1.0.0"),
        "names the version there is: {v}"
    );
    let (s, v) = d
        .post(
            "/rollouts",
            json!({"uids": ["nope.none"], "target": {"image": target}}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    d.cleanup().await;
}

#[tokio::test]
async fn a_rollout_resumes_after_the_daemon_is_killed() {
    support::ensure_image().await;
    let mut images = Images::new();
    let engine = peon::docker::Engine::new(support::DOCKER);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_owned();
    let instance = unique("rk");
    let _guard = Cleanup(instance.clone());
    let key = "rollout-kill-key";
    let u = unique("rk");
    let good_tag = format!("peon-test/{u}:good");
    let good_id = images.build(&engine, &good_tag, &good(&u, 1)).await;
    let target = format!("peon-test/{u}:next");
    let target_id = images.build(&engine, &target, &good(&u, 2)).await;
    let game = unique("rg");
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let groups: Vec<&[u16]> = ports.iter().map(std::slice::from_ref).collect();
    let mut plan = game_plan(&game, &groups);
    plan["metadata"]["image"] = json!(good_tag);
    support::write_plan(&data.join("plans"), &game, &plan);
    std::fs::write(data.join("plans/plans.json"), "[]").unwrap();
    let http = peon::http::client_builder().build().unwrap();
    let call = |base: &str, method: reqwest::Method, path: &str, body: Value| {
        let req = http
            .request(method, format!("{base}{path}"))
            .header("X-Api-Key", key)
            .json(&body);
        async move {
            let r = req.send().await.expect("request");
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let (first, base) = spawn_daemon(&data, &instance, key).await;
    let uids = [format!("{game}.a"), format!("{game}.b")];
    for uid in &uids {
        images.keep(format!("peon-known-good/{uid}").replacen('.', ":", 1));
        let (s, v) = call(
            &base,
            reqwest::Method::PUT,
            &format!("/server/create/{uid}"),
            json!({"SERVER_NAME": "k"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, r) = call(
        &base,
        reqwest::Method::POST,
        "/rollouts",
        json!({"uids": uids, "target": {"image": target}, "batch_percent": 50, "watch": 5}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    // Killed while the first server's update runs.
    wait_for(LONG, "the first update to begin", || async {
        let (_, r) = call(
            &base,
            reqwest::Method::GET,
            &format!("/rollout/{id}"),
            Value::Null,
        )
        .await;
        (server(&r, &uids[0])["state"] == "updating").then_some(())
    })
    .await;
    drop(first); // SIGKILL

    let (_second, base) = spawn_daemon(&data, &instance, key).await;
    let r = wait_for(LONG, "the resumed rollout to end", || async {
        let (_, r) = call(
            &base,
            reqwest::Method::GET,
            &format!("/rollout/{id}"),
            Value::Null,
        )
        .await;
        (r["state"] != "running").then_some(r)
    })
    .await;
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["resumed"], 1, "{r}");
    assert_eq!(r["last_known_good"], json!(good_id), "{r}");
    for uid in &uids {
        assert_eq!(server(&r, uid)["state"], "updated", "{r}");
        let v = wait_for(LONG, "the server to run", || async {
            let (_, v) = call(
                &base,
                reqwest::Method::GET,
                &format!("/server/get/{uid}"),
                Value::Null,
            )
            .await;
            (v["server_state"] == "running").then_some(v)
        })
        .await;
        assert_eq!(v["image_pin"], json!(target), "{v}");
        assert_eq!(running_image(&engine, uid).await, target_id);
    }
}

#[tokio::test]
async fn an_aborted_rollout_takes_its_updated_servers_back() {
    let mut images = Images::new();
    let d = Daemon::start().await;
    let u = unique("ra");
    let good_tag = format!("peon-test/{u}:good");
    let good_id = images.build(&d.engine, &good_tag, &good(&u, 1)).await;
    let target = format!("peon-test/{u}:next");
    images.build(&d.engine, &target, &good(&u, 2)).await;
    let game = unique("rg");
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let groups: Vec<&[u16]> = ports.iter().map(std::slice::from_ref).collect();
    let mut plan = game_plan(&game, &groups);
    plan["metadata"]["image"] = json!(good_tag);
    d.add_plan(&game, &plan);
    let uids = [format!("{game}.a"), format!("{game}.b")];
    for uid in &uids {
        images.keep(format!("peon-known-good/{uid}").replacen('.', ":", 1));
        d.create_running(uid).await;
    }
    let (s, r) = d
        .post(
            "/rollouts",
            json!({"game": game, "target": {"image": target}, "batch_percent": 50, "watch": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    wait_for(LONG, "the first update to begin", || async {
        let (_, r) = d.get(&format!("/rollout/{id}")).await;
        (server(&r, &uids[0])["state"] == "updating").then_some(())
    })
    .await;
    let (s, r) = d.post(&format!("/rollout/{id}/abort"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["abort_requested"], true, "{r}");
    let r = wait_for(LONG, "the rollout to end", || async {
        let (_, r) = d.get(&format!("/rollout/{id}")).await;
        (r["state"] != "running").then_some(r)
    })
    .await;
    assert_eq!(r["state"], "aborted", "{r}");
    assert!(
        r.get("last_known_bad").is_none(),
        "an abort does not judge the target: {r}"
    );
    assert_eq!(server(&r, &uids[0])["state"], "rolled_back", "{r}");
    assert_eq!(server(&r, &uids[1])["state"], "pending", "{r}");
    for uid in &uids {
        d.wait_server(uid, LONG, |v| v["server_state"] == "running")
            .await;
        assert_eq!(running_image(&d.engine, uid).await, good_id);
    }
    d.cleanup().await;
}
