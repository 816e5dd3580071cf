//! The layer rules of `docs/architecture.md`, checked on the source: no module imports a layer
//! above it (test code at the end of a file, after `#[cfg(test)]`, is not counted).

use std::path::Path;

/// Each module and the modules it must not import.
const RULES: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "fsio", "runtime", "docker", "store", "plans", "live", "schedule", "service", "api",
            "daemon", "cli",
        ],
    ),
    (
        "fsio",
        &[
            "model", "runtime", "docker", "store", "plans", "live", "schedule", "service", "api",
            "daemon", "cli",
        ],
    ),
    (
        "runtime",
        &[
            "docker", "store", "plans", "live", "schedule", "service", "api", "daemon", "cli",
        ],
    ),
    (
        "docker",
        &[
            "store", "plans", "live", "schedule", "service", "api", "daemon", "cli",
        ],
    ),
    (
        "store",
        &[
            "runtime", "docker", "plans", "live", "schedule", "service", "api", "daemon", "cli",
        ],
    ),
    (
        "plans",
        &[
            "runtime", "docker", "store", "live", "schedule", "service", "api", "daemon", "cli",
        ],
    ),
    (
        "live",
        &[
            "runtime", "docker", "store", "plans", "schedule", "service", "api", "daemon", "cli",
        ],
    ),
    (
        "schedule",
        &[
            "runtime", "docker", "store", "plans", "live", "service", "api", "daemon", "cli",
        ],
    ),
    (
        "access",
        &[
            "model", "runtime", "docker", "store", "plans", "live", "schedule", "service", "api",
            "daemon", "cli", "config",
        ],
    ),
    (
        "rollout",
        &[
            "model", "runtime", "docker", "store", "plans", "live", "schedule", "service", "api",
            "daemon", "cli", "config", "jobs", "access",
        ],
    ),
    (
        "jobs",
        &[
            "model", "runtime", "docker", "store", "plans", "live", "schedule", "service", "api",
            "daemon", "cli",
        ],
    ),
    (
        "hooks",
        &[
            "model", "runtime", "docker", "store", "plans", "live", "schedule", "jobs", "access",
            "metrics", "service", "api", "daemon", "cli", "config",
        ],
    ),
    (
        "metrics",
        &[
            "model", "fsio", "runtime", "docker", "store", "plans", "live", "schedule", "jobs",
            "access", "service", "api", "daemon", "cli", "config",
        ],
    ),
    (
        "players",
        &[
            "model", "fsio", "runtime", "docker", "store", "plans", "live", "schedule", "service",
            "api", "daemon", "cli", "config",
        ],
    ),
    (
        "backup",
        &[
            "model", "runtime", "docker", "store", "plans", "live", "schedule", "service", "api",
            "daemon", "cli", "access", "jobs", "config",
        ],
    ),
    ("service", &["docker", "api", "daemon", "cli"]),
    // The agent's client half may be used by the Docker module's cluster runtime.
    (
        "agent/client",
        &[
            "docker", "store", "plans", "live", "schedule", "service", "api", "daemon", "cli",
            "config",
        ],
    ),
    (
        "agent/delegate",
        &[
            "docker", "store", "plans", "live", "schedule", "service", "api", "daemon", "cli",
            "config",
        ],
    ),
    (
        "agent/auth",
        &[
            "docker", "store", "plans", "live", "schedule", "service", "api", "daemon", "cli",
            "config",
        ],
    ),
    (
        "agent/framing",
        &[
            "docker", "store", "plans", "live", "schedule", "service", "api", "daemon", "cli",
            "config",
        ],
    ),
    // The agent's server sits beside the daemon: it uses the engine, the store and the
    // archive, never the service or the API.
    (
        "agent/server",
        &[
            "service", "api", "daemon", "cli", "live", "plans", "schedule",
        ],
    ),
    ("api", &["docker", "store", "daemon", "cli"]),
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_import_runs_up_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for (module, forbidden) in RULES {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            sources(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        assert!(!files.is_empty(), "no sources for {module}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, line) in code.lines().enumerate() {
                for up in *forbidden {
                    if line.contains(&format!("crate::{up}::"))
                        || line.contains(&format!("crate::{up};"))
                        || line.contains(&format!("crate::{up}}}"))
                    {
                        bad.push(format!(
                            "{}:{}: {module} imports {up}: {}",
                            f.display(),
                            i + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports that run up a layer:\n{}",
        bad.join("\n")
    );
}
