//! The plans shipped inside the binary (the project's `plans/` folder). They seed an empty
//! plans directory so that a first server can be created without reaching any plan source.

use std::path::Path;

use include_dir::{Dir, include_dir};

static BUNDLED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/plans");

/// Writes the bundled plans into `dir` unless it already holds a `plans.json`.
/// Returns whether anything was written.
pub fn seed_if_empty(dir: &Path) -> std::io::Result<bool> {
    if dir.join("plans.json").exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    write_dir(&BUNDLED, dir)?;
    Ok(true)
}

fn write_dir(d: &Dir<'_>, root: &Path) -> std::io::Result<()> {
    for f in d.files() {
        let path = root.join(f.path());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::fsio::atomic::write_atomic_mode(&path, f.contents(), mode_for(f.path()))?;
    }
    for sub in d.dirs() {
        write_dir(sub, root)?;
    }
    Ok(())
}

/// Action scripts are executable; everything else is plain data.
fn mode_for(p: &Path) -> u32 {
    if p.components().any(|c| c.as_os_str() == "actions") {
        0o755
    } else {
        0o644
    }
}

/// The bundled `plans.json` registry.
pub fn registry() -> Option<&'static str> {
    BUNDLED
        .get_file("plans.json")
        .and_then(|f| f.contents_utf8())
}
