//! The compose deployment end to end (ignored by default; `.ci/run` runs it with
//! `cargo test --test it -- --ignored compose`): builds the image with scripts/build-image
//! from the test's own peon binary, brings config/docker-compose.yml up with docker-compose
//! under a unique project, container name, port, instance, key and data dir, creates and
//! starts a game server through the containerised daemon, runs `docker exec <peon> peon
//! servers`, and tears everything down (also when the test fails).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    DOCKER, free_port, game_greeting, game_plan, repo, sh, unique, wait_for, write_plan,
};

const BIN: &str = env!("CARGO_BIN_EXE_peon");

/// Everything the test creates, removed on drop.
struct Deployment {
    project: String,
    env_file: PathBuf,
    tag: String,
    instance: String,
    _tmp: tempfile::TempDir,
}

impl Deployment {
    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(repo())
            .args([
                "-p",
                &self.project,
                "-f",
                "config/docker-compose.yml",
                "--env-file",
            ])
            .arg(&self.env_file)
            .args(args);
        c
    }

    fn logs(&self) -> String {
        let (_, out, err) =
            sh(Command::new("docker").args(["logs", "--tail", "50", &self.project]));
        format!("{out}{err}")
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self
            .compose(&["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
        let instance = self.instance.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(crate::support::cleanup_instance(
                    &peon::docker::Engine::new(DOCKER),
                    &instance,
                ));
            }
        })
        .join();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

fn write_env(path: &Path, vars: &[(&str, String)]) {
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(path, text).expect("env file");
}

#[tokio::test]
#[ignore = "builds the image and runs docker-compose: cargo test --test it -- --ignored compose"]
async fn compose_deployment_runs_a_game_server() {
    crate::support::ensure_image().await;
    let id = unique("peoncompose");
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let api_port = free_port();
    let key = format!("key-{id}");
    let d = Deployment {
        project: id.clone(),
        env_file: tmp.path().join("peon.env"),
        tag: format!("peon-it/{id}:latest"),
        instance: id.clone(),
        _tmp: tmp,
    };

    let t = Instant::now();
    let (ok, out, err) =
        sh(Command::new(repo().join("scripts/build-image"))
            .args(["--tag", &d.tag, "--binary", BIN]));
    assert!(ok, "build-image failed:\n{out}\n{err}");
    let size: u64 =
        sh(Command::new("docker").args(["image", "inspect", "-f", "{{.Size}}", &d.tag]))
            .1
            .trim()
            .parse()
            .unwrap_or(0);
    println!(
        "compose: image {} built in {:.1}s, {:.1} MB (debug binary)",
        d.tag,
        t.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    // A plan for the stand-in game with a free port, in the deployment's plans folder.
    let game = unique("cg");
    let game_port = free_port();
    write_plan(
        &data.join("plans"),
        &game,
        &game_plan(&game, &[&[game_port]]),
    );

    write_env(
        &d.env_file,
        &[
            ("PEON_IMAGE", d.tag.clone()),
            ("PEON_CONTAINER", id.clone()),
            ("PEON_API_KEY", key.clone()),
            ("HOST_DIR", data.display().to_string()),
            ("PEON_INSTANCE", id.clone()),
            ("PEON_BIND", "127.0.0.1".into()),
            ("PEON_PORT", api_port.to_string()),
            ("PEON_PUBLISH_ADDRESS", "127.0.0.1".into()),
            ("PEON_PREFLIGHT_DELAY", "1".into()),
            ("PEON_PLANS_URL", "/home/peon/plan-source".into()),
        ],
    );
    let t = Instant::now();
    let (ok, out, err) = sh(&mut d.compose(&["up", "-d"]));
    assert!(ok, "docker-compose up failed:\n{out}\n{err}");

    let root = format!("http://127.0.0.1:{api_port}");
    let http = peon::http::client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let health = crate::support::wait_healthy(
        &http,
        &format!("{root}/health"),
        Duration::from_secs(60),
        "the containerised daemon",
    )
    .await;
    println!(
        "compose: daemon healthy {:.1}s after `up -d`: {health}",
        t.elapsed().as_secs_f64()
    );

    let uid = format!("{game}.one");
    let res = http
        .put(format!("{root}/api/v1/server/create/{uid}"))
        .header("X-Api-Key", &key)
        .json(&json!({"SERVER_NAME": "Compose"}))
        .send()
        .await
        .expect("create");
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "create: {status} {v}\n{}", d.logs());
    assert_eq!(v["container_state"], "running", "{v}");
    // The game's script comes from a bind mount of HOST_DIR: it answering proves the host
    // path was resolved.
    let greeting = wait_for(Duration::from_secs(20), "the game to answer", || {
        game_greeting(game_port)
    })
    .await;
    assert_eq!(greeting, "hello");
    assert!(
        data.join("servers")
            .join(&game)
            .join("one/config.json")
            .exists()
    );

    let (ok, out, err) = sh(Command::new("docker").args(["exec", &id, "peon", "servers"]));
    assert!(ok, "docker exec peon servers: {out}{err}");
    println!("compose: docker exec {id} peon servers\n{out}");
    let row = out
        .lines()
        .find(|l| l.contains(&uid))
        .expect("the server in the table");
    assert!(row.contains("running"), "{out}");
    let (ok, out, err) = sh(Command::new("docker").args(["exec", &id, "peon", "health"]));
    assert!(ok, "the HEALTHCHECK command works: {out}{err}");
}
