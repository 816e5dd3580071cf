//! Updating the local plans from the plan source. The new plans are fetched into a fresh folder
//! beside the plans dir, validated, compared with the current ones, and only then swapped in
//! with renames; a failed or refused update leaves the previous plans in place and in use.
//!
//! Creating a server first refreshes its plan from the source (best effort, rate-limited, with a
//! short deadline); any failure falls back to the local plan.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::fetch::{Fetched, Fetcher, Validators};
use super::source::PlanSource;
use super::{PlanError, PlanStore, unpack};
use crate::fsio::atomic;
use crate::names;

/// The file in the plans dir that remembers the source and its validators.
pub const SOURCE_FILE: &str = ".source.json";
/// Deadline of a full update.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of the refresh that precedes a create.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
/// A plan is refreshed from the source at most this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Action scripts looked for in a plain-HTTP source (it cannot list folders): the images'
/// convention.
pub const KNOWN_ACTIONS: [&str; 4] = [
    "server_start",
    "init_custom",
    "configure_settings",
    "server_stop",
];
const PARALLEL_FETCHES: usize = 8;

/// Prefix of the folders an update uses inside a plans dir that is a mount point.
const IN_PLACE: &str = ".update.";

/// Whether `path` is a mount point in `/proc/self/mountinfo` (a bind mount from the same
/// filesystem keeps the device number, so that alone does not tell).
fn listed_as_mount(path: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Moves back every entry of `old` whose name is free again in `dest`.
fn restore_entries(old: &Path, dest: &Path) {
    if let Ok(rd) = fs::read_dir(old) {
        for e in rd.flatten() {
            let n = e.file_name();
            if !dest.join(&n).exists()
                && let Err(err) = fs::rename(e.path(), dest.join(&n))
            {
                tracing::error!(
                    "cannot restore the plan entry {}: {err}",
                    e.path().display()
                );
            }
        }
    }
}

/// What peon remembers about the last update.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceMeta {
    pub url: String,
    #[serde(default, flatten)]
    pub validators: Validators,
    #[serde(default)]
    pub fetched: i64,
}

/// The answer of `PUT /plans`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateReport {
    pub status: &'static str,
    pub source: String,
    /// Nothing changed: the source answered 304 to the conditional request, or sent the same
    /// plans.
    pub unchanged: bool,
    /// PEON's key (typo kept): the registry entries of the added plans.
    pub new_recipies: Map<String, Value>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Plans that were installed but cannot run, with their problems.
    pub invalid: BTreeMap<String, Vec<String>>,
    /// Plans now installed.
    pub plans: usize,
}

pub(super) fn read_meta(dir: &Path) -> Option<SourceMeta> {
    let bytes = fs::read(dir.join(SOURCE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A new name beside `path`: `.<name>.<tag>-<random>`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plans".into());
    let parent = path.parent().unwrap_or(Path::new("."));
    parent.join(format!(".{name}.{tag}-{}", atomic::random_suffix()))
}

fn io_err(dir: &Path, what: &str, e: io::Error) -> PlanError {
    PlanError::Update {
        path: dir.to_owned(),
        reason: format!("{what}: {e}"),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PlanError> + Send + 'static,
) -> Result<T, PlanError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PlanError::Update {
            path: PathBuf::new(),
            reason: format!("the task failed: {e}"),
        })?
}

/// Plan folders of a plans root: folders (not hidden) holding a `plan.json`.
pub fn plan_folders(root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(root)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type()?.is_dir() {
            continue;
        }
        if e.path().join("plan.json").is_file() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// A digest of a folder's files (names, modes and contents) to tell changed plans apart.
fn digest(dir: &Path) -> io::Result<u64> {
    fn walk(
        base: &Path,
        dir: &Path,
        h: &mut std::collections::hash_map::DefaultHasher,
    ) -> io::Result<()> {
        let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            let ft = e.file_type()?;
            p.strip_prefix(base).unwrap_or(&p).hash(h);
            if ft.is_dir() {
                walk(base, &p, h)?;
            } else if ft.is_file() {
                use std::os::unix::fs::PermissionsExt;
                (e.metadata()?.permissions().mode() & 0o111 != 0).hash(h);
                fs::read(&p)?.hash(h);
            }
        }
        Ok(())
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    walk(dir, dir, &mut h)?;
    Ok(h.finish())
}

fn digests(root: &Path) -> io::Result<BTreeMap<String, u64>> {
    if !root.is_dir() {
        return Ok(BTreeMap::new());
    }
    plan_folders(root)?
        .into_iter()
        .map(|g| digest(&root.join(&g)).map(|d| (g, d)))
        .collect()
}

/// Writes a file for a plan, executable when `exec`.
fn write_plan_file(path: &Path, bytes: &[u8], exec: bool) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    atomic::write_atomic_mode(path, bytes, if exec { 0o755 } else { 0o644 })
}

/// Copies a local plans repository: regular files and folders only; hidden entries (`.git`)
/// and symlinks are left out.
fn copy_local(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        let target = to.join(e.file_name());
        if ft.is_dir() {
            copy_local(&e.path(), &target)?;
        } else if ft.is_file() {
            let exec = e.metadata()?.permissions().mode() & 0o111 != 0;
            write_plan_file(&target, &fs::read(e.path())?, exec)?;
        } else if ft.is_symlink() {
            tracing::warn!(path = %e.path().display(), "plan source: symbolic link skipped");
        }
    }
    Ok(())
}

/// The registry's game ids (checked; unusable entries are skipped with a warning).
fn registry_games(bytes: &[u8]) -> Result<Vec<String>, String> {
    let list: Vec<Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("plans.json is not valid JSON: {e}"))?;
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        match entry.get("game_uid").and_then(Value::as_str) {
            Some(g) if names::game_id(g).is_ok() => out.push(g.to_owned()),
            _ => tracing::warn!("plans.json entry {i} has no usable game_uid; skipped"),
        }
    }
    Ok(out)
}

/// Problems of each plan that cannot run, by game.
type Problems = BTreeMap<String, Vec<String>>;

/// Checks a new plans root before it is swapped in. Structural faults refuse the update; plans
/// that cannot run are kept (creating a server from one answers 400) and reported.
fn validate(root: &Path) -> Result<(Vec<Value>, Problems), String> {
    let reg_path = root.join("plans.json");
    let bytes = fs::read(&reg_path).map_err(|e| format!("the source has no plans.json ({e})"))?;
    let registry: Vec<Value> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("plans.json is not a JSON list: {e}"))?;
    let folders = plan_folders(root).map_err(|e| format!("cannot list the plans: {e}"))?;
    if folders.is_empty() {
        return Err("the source holds no plan (no <game>/plan.json)".into());
    }
    let mut invalid = BTreeMap::new();
    for g in &folders {
        if let Err(e) = names::game_id(g) {
            invalid.insert(g.clone(), vec![e.to_string()]);
            continue;
        }
        let problems: Vec<String> = match fs::read(root.join(g).join("plan.json")) {
            Err(e) => vec![format!("plan.json: cannot be read: {e}")],
            Ok(b) => match serde_json::from_slice::<Value>(&b) {
                Err(e) => vec![format!("plan.json: is not valid JSON: {e}")],
                Ok(doc) => match crate::model::plan::parse_plan(g, &doc) {
                    Ok(_) => Vec::new(),
                    Err(ps) => ps.iter().map(ToString::to_string).collect(),
                },
            },
        };
        if !problems.is_empty() {
            invalid.insert(g.clone(), problems);
        }
    }
    Ok((registry, invalid))
}

impl PlanStore {
    /// The configured plan source.
    pub fn source(&self) -> Option<&PlanSource> {
        self.sync.source.as_ref()
    }

    /// Puts back the plans dir (or a plan folder) if a crash interrupted a swap, and clears
    /// leftovers of interrupted updates.
    pub fn recover(&self) -> io::Result<()> {
        self.recover_dir()?;
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(kind) = n.strip_prefix(IN_PLACE) {
                if kind.starts_with("old-") {
                    tracing::warn!("restoring plans after an interrupted update");
                    restore_entries(&e.path(), &self.dir);
                }
                fs::remove_dir_all(e.path())?;
                continue;
            }
            let Some(rest) = n.strip_prefix('.') else {
                continue;
            };
            if let Some((game, _)) = rest.split_once(".old-") {
                let folder = self.dir.join(game);
                if names::game_id(game).is_ok() && !folder.exists() {
                    tracing::warn!("restoring plan {game} after an interrupted refresh");
                    fs::rename(e.path(), folder)?;
                } else {
                    fs::remove_dir_all(e.path())?;
                }
            } else if rest.contains(".new-") && e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            }
        }
        Ok(())
    }

    fn recover_dir(&self) -> io::Result<()> {
        let Some(parent) = self.dir.parent() else {
            return Ok(());
        };
        let Some(name) = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return Ok(());
        };
        let entries = match fs::read_dir(parent) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let (old, new) = (format!(".{name}.old-"), format!(".{name}.new-"));
        for e in entries {
            let e = e?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&old) && !self.dir.exists() {
                tracing::warn!("restoring the plans from {} after an interrupted update", n);
                fs::rename(e.path(), &self.dir)?;
            } else if n.starts_with(&old) || n.starts_with(&new) {
                fs::remove_dir_all(e.path())?;
            }
        }
        Ok(())
    }

    /// `PUT /plans`: updates the local plans from the source and says what changed.
    pub async fn update(&self) -> Result<UpdateReport, PlanError> {
        let source = self.source().cloned().ok_or_else(|| PlanError::Source {
            url: "(none)".into(),
            reason: "no plan source is configured (--plans-url)".into(),
        })?;
        let store = self.clone();
        // Its own task: a client that goes away does not cancel an update half-way.
        tokio::spawn(async move {
            let _one_at_a_time = store.sync.update.lock().await;
            store.update_locked(&source).await
        })
        .await
        .map_err(|e| PlanError::Update {
            path: self.dir.clone(),
            reason: format!("the update task failed: {e}"),
        })?
    }

    async fn update_locked(&self, source: &PlanSource) -> Result<UpdateReport, PlanError> {
        let url = source.to_string();
        let meta = read_meta(&self.dir).filter(|m| m.url == url);
        let stage = if self.is_mount_point() {
            self.dir
                .join(format!("{IN_PLACE}new-{}", atomic::random_suffix()))
        } else {
            sibling(&self.dir, "new")
        };
        let st = stage.clone();
        blocking(move || fs::create_dir_all(&st).map_err(|e| io_err(&st, "cannot create", e)))
            .await?;
        let fetched = self.fetch_into(source, meta.as_ref(), &stage).await;
        let result = match fetched {
            Ok(None) => {
                let store = self.clone();
                blocking(move || {
                    let plans = plan_folders(&store.dir).map(|f| f.len()).unwrap_or(0);
                    Ok(plans)
                })
                .await
                .map(|plans| UpdateReport {
                    status: "success",
                    source: url.clone(),
                    unchanged: true,
                    plans,
                    ..Default::default()
                })
            }
            Ok(Some((root, validators))) => {
                let store = self.clone();
                let u = url.clone();
                blocking(move || store.install(&u, &root, validators)).await
            }
            Err(e) => Err(e),
        };
        let st = stage.clone();
        let _ = tokio::task::spawn_blocking(move || fs::remove_dir_all(st)).await;
        match &result {
            Ok(r) if r.unchanged => tracing::info!(source = %url, "plans: source unchanged"),
            Ok(r) => tracing::info!(
                source = %url, added = r.added.len(), removed = r.removed.len(),
                changed = r.changed.len(), invalid = r.invalid.len(), "plans updated"
            ),
            Err(e) => tracing::warn!("plans update failed, previous plans kept: {e}"),
        }
        result
    }

    /// Fetches the source into `stage`. `None`: unchanged since the last update.
    async fn fetch_into(
        &self,
        source: &PlanSource,
        meta: Option<&SourceMeta>,
        stage: &Path,
    ) -> Result<Option<(PathBuf, Validators)>, PlanError> {
        let known = meta.map(|m| &m.validators).filter(|v| !v.is_empty());
        match source {
            PlanSource::Tarball(url) => {
                let f = Fetcher::new(UPDATE_TIMEOUT)?;
                match f.get(url, known).await? {
                    Fetched::NotModified => Ok(None),
                    Fetched::Missing => Err(PlanError::Source {
                        url: url.to_string(),
                        reason: "not found (404)".into(),
                    }),
                    Fetched::Body { bytes, validators } => {
                        let (st, u) = (stage.to_owned(), url.to_string());
                        let root = blocking(move || {
                            unpack::unpack_tar_gz(&bytes, &st)
                                .map_err(|reason| PlanError::Rejected { url: u, reason })
                        })
                        .await?;
                        Ok(Some((root, validators)))
                    }
                }
            }
            PlanSource::Http(base) => {
                let f = Fetcher::new(UPDATE_TIMEOUT)?;
                fetch_base(&f, base, known, stage).await
            }
            PlanSource::Local(path) => {
                let (from, to) = (path.clone(), stage.to_owned());
                blocking(move || {
                    if !from.is_dir() {
                        return Err(PlanError::Source {
                            url: from.display().to_string(),
                            reason: "is not a directory".into(),
                        });
                    }
                    copy_local(&from, &to).map_err(|e| PlanError::Source {
                        url: from.display().to_string(),
                        reason: format!("cannot copy: {e}"),
                    })
                })
                .await?;
                Ok(Some((stage.to_owned(), Validators::default())))
            }
        }
    }

    /// Validates `root`, compares it with the current plans and swaps it in.
    fn install(
        &self,
        url: &str,
        root: &Path,
        validators: Validators,
    ) -> Result<UpdateReport, PlanError> {
        let (registry, invalid) = validate(root).map_err(|reason| PlanError::Rejected {
            url: url.to_owned(),
            reason,
        })?;
        let meta = SourceMeta {
            url: url.to_owned(),
            validators,
            fetched: chrono::Utc::now().timestamp(),
        };
        atomic::write_json_atomic(&root.join(SOURCE_FILE), &meta)
            .map_err(|e| io_err(root, "cannot write", e))?;
        let before = digests(&self.dir).map_err(|e| io_err(&self.dir, "cannot read", e))?;
        let after = digests(root).map_err(|e| io_err(root, "cannot read", e))?;
        let mut report = UpdateReport {
            status: "success",
            source: url.to_owned(),
            plans: after.len(),
            invalid,
            ..Default::default()
        };
        for (g, d) in &after {
            match before.get(g) {
                None => report.added.push(g.clone()),
                Some(old) if old != d => report.changed.push(g.clone()),
                Some(_) => {}
            }
        }
        report.removed = before
            .keys()
            .filter(|g| !after.contains_key(*g))
            .cloned()
            .collect();
        report.unchanged =
            report.added.is_empty() && report.removed.is_empty() && report.changed.is_empty();
        for g in &report.added {
            let entry = registry
                .iter()
                .find(|e| e.get("game_uid").and_then(Value::as_str) == Some(g))
                .cloned()
                .unwrap_or_else(|| json!({"game_uid": g, "title": g, "in_registry": false}));
            report.new_recipies.insert(g.clone(), entry);
        }
        let swapped = if self.is_mount_point() {
            self.swap_entries(root)
        } else {
            self.swap_in(root, &self.dir)
        };
        swapped.map_err(|e| io_err(&self.dir, "cannot swap in the new plans", e))?;
        Ok(report)
    }

    /// Whether the plans dir is a mount point (PEON's compose mounts `plans/` on its own): it
    /// cannot be renamed then, so updates are assembled inside it and swapped entry by entry.
    fn is_mount_point(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        let other_device = match (fs::metadata(&self.dir), fs::metadata(parent)) {
            (Ok(d), Ok(p)) => d.dev() != p.dev(),
            _ => false,
        };
        other_device || listed_as_mount(&self.dir)
    }

    /// Replaces the content of the plans dir by the entries of `new` (inside it), each with one
    /// rename, all under the swap lock. On a failure the previous entries are put back.
    fn swap_entries(&self, new: &Path) -> io::Result<()> {
        let dest = &self.dir;
        let old = dest.join(format!("{IN_PLACE}old-{}", atomic::random_suffix()));
        fs::create_dir(&old)?;
        let moved = {
            let _w = self.sync.swap.write().unwrap_or_else(|p| p.into_inner());
            let r = (|| {
                for e in fs::read_dir(dest)? {
                    let n = e?.file_name();
                    if !n.to_string_lossy().starts_with(IN_PLACE) {
                        fs::rename(dest.join(&n), old.join(&n))?;
                    }
                }
                for e in fs::read_dir(new)? {
                    let n = e?.file_name();
                    fs::rename(new.join(&n), dest.join(&n))?;
                }
                atomic::sync_dir(dest)
            })();
            if r.is_err() {
                restore_entries(&old, dest);
            }
            r
        };
        if let Err(e) = fs::remove_dir_all(&old) {
            tracing::warn!("cannot remove the previous plans {}: {e}", old.display());
        }
        moved
    }

    /// Replaces `dest` by `new` with two renames under the swap lock (readers of plans take it
    /// too, so none sees the moment between them). The old folder is then deleted.
    fn swap_in(&self, new: &Path, dest: &Path) -> io::Result<()> {
        let old = sibling(dest, "old");
        {
            let _w = self.sync.swap.write().unwrap_or_else(|p| p.into_inner());
            let had = dest.exists();
            if had {
                fs::rename(dest, &old)?;
            }
            if let Err(e) = fs::rename(new, dest) {
                if had {
                    let _ = fs::rename(&old, dest);
                }
                return Err(e);
            }
            if let Some(parent) = dest.parent() {
                atomic::sync_dir(parent)?;
            }
        }
        if old.exists()
            && let Err(e) = fs::remove_dir_all(&old)
        {
            tracing::warn!("cannot remove the previous plans {}: {e}", old.display());
        }
        Ok(())
    }

    /// Refreshes `game`'s plan from the source before a create: only when the local plans came
    /// from the configured source, at most every [`REFRESH_EVERY`], within [`REFRESH_TIMEOUT`].
    /// Never fails: a source problem is logged and the local plan is used.
    pub async fn refresh_before_create(&self, game: &str) {
        let Some(source) = self.source().cloned() else {
            return;
        };
        if names::game_id(game).is_err() {
            return;
        }
        let url = source.to_string();
        let dir = self.dir.clone();
        let from_source = tokio::task::spawn_blocking(move || read_meta(&dir))
            .await
            .ok()
            .flatten()
            .is_some_and(|m| m.url == url);
        if !from_source {
            return;
        }
        let key = match source {
            PlanSource::Tarball(_) => "*".to_owned(),
            _ => game.to_owned(),
        };
        {
            let mut last = self
                .sync
                .refreshed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.get(&key).is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return;
            }
            last.insert(key, Instant::now());
        }
        let store = self.clone();
        let g = game.to_owned();
        let task = tokio::spawn(async move { store.refresh_game(&source, &g).await });
        match tokio::time::timeout(REFRESH_TIMEOUT, task).await {
            Ok(Ok(Ok(true))) => {
                tracing::info!(game, "plan refreshed from the source before create")
            }
            Ok(Ok(Ok(false))) => tracing::debug!(game, "plan is current"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(game, "cannot refresh the plan, using the local one: {e}");
            }
            Ok(Err(e)) => tracing::warn!(game, "plan refresh task failed: {e}"),
            Err(_) => tracing::warn!(
                game,
                "plan refresh took longer than {REFRESH_TIMEOUT:?}; using the local plan (the refresh goes on in the background)"
            ),
        }
    }

    /// Refreshes `game`'s plan from the source now (no rate limit, errors returned), for an
    /// update to a plan version the local plans do not hold yet; only when the local plans came
    /// from the configured source. `true` when a different plan was swapped in.
    pub async fn refresh_now(&self, game: &str) -> Result<bool, PlanError> {
        let source = self.source().cloned().ok_or_else(|| PlanError::Source {
            url: "(none)".into(),
            reason: "no plan source is configured (--plans-url)".into(),
        })?;
        names::game_id(game)?;
        let url = source.to_string();
        // Plans put in the plans dir by hand are not replaced from a source they did not come
        // from (the same rule as the refresh before a create).
        let dir = self.dir.clone();
        let from_source = tokio::task::spawn_blocking(move || read_meta(&dir))
            .await
            .ok()
            .flatten()
            .is_some_and(|m| m.url == url);
        if !from_source {
            return Err(PlanError::Source {
                url,
                reason:
                    "the local plans were not installed from this source (PUT /plans installs them)"
                        .into(),
            });
        }
        let store = self.clone();
        let g = game.to_owned();
        // Its own task: a caller that goes away does not cancel a swap half-way.
        let task = tokio::spawn(async move { store.refresh_game(&source, &g).await });
        match tokio::time::timeout(UPDATE_TIMEOUT, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(PlanError::Source {
                url,
                reason: format!("the refresh task failed: {e}"),
            }),
            Err(_) => Err(PlanError::Source {
                url,
                reason: format!("no answer within {UPDATE_TIMEOUT:?}"),
            }),
        }
    }

    /// Fetches one plan from the source and swaps it in when it differs. `true` when it did.
    async fn refresh_game(&self, source: &PlanSource, game: &str) -> Result<bool, PlanError> {
        let _one_at_a_time = self.sync.update.lock().await;
        let stage = self
            .dir
            .join(format!(".{game}.new-{}", atomic::random_suffix()));
        let found = match source {
            PlanSource::Tarball(_) => {
                let r = self.update_locked(source).await?;
                return Ok(r.changed.iter().chain(&r.added).any(|g| g == game));
            }
            PlanSource::Http(base) => {
                let f = Fetcher::new(REFRESH_TIMEOUT)?;
                fetch_plan_folder(&f, base, game, &stage).await?
            }
            PlanSource::Local(path) => {
                let (from, to) = (path.join(game), stage.clone());
                blocking(move || {
                    if !from.join("plan.json").is_file() {
                        return Ok(false);
                    }
                    copy_local(&from, &to).map_err(|e| PlanError::Source {
                        url: from.display().to_string(),
                        reason: format!("cannot copy: {e}"),
                    })?;
                    Ok(true)
                })
                .await?
            }
        };
        let store = self.clone();
        let dest = self.dir.join(game);
        blocking(move || {
            let r = (|| {
                if !found || digest(&stage)? == digest(&dest).unwrap_or(0) {
                    return Ok(false);
                }
                store.swap_in(&stage, &dest)?;
                Ok(true)
            })();
            if stage.exists() {
                let _ = fs::remove_dir_all(&stage);
            }
            r.map_err(|e: io::Error| io_err(&dest, "cannot refresh", e))
        })
        .await
    }
}

/// Fetches a plain-HTTP source: `plans.json` (conditionally), then every listed plan.
async fn fetch_base(
    f: &Fetcher,
    base: &Url,
    known: Option<&Validators>,
    stage: &Path,
) -> Result<Option<(PathBuf, Validators)>, PlanError> {
    let reg_url = join(base, "plans.json")?;
    let (bytes, validators) = match f.get(&reg_url, known).await? {
        Fetched::NotModified => return Ok(None),
        Fetched::Missing => {
            return Err(PlanError::Source {
                url: reg_url.to_string(),
                reason: "not found (404)".into(),
            });
        }
        Fetched::Body { bytes, validators } => (bytes, validators),
    };
    let games = registry_games(&bytes).map_err(|reason| PlanError::Rejected {
        url: reg_url.to_string(),
        reason,
    })?;
    write_plan_file(&stage.join("plans.json"), &bytes, false)
        .map_err(|e| io_err(stage, "cannot write", e))?;
    let unique: BTreeSet<String> = games.into_iter().collect();
    let results: Vec<Result<bool, PlanError>> = futures_util::stream::iter(unique)
        .map(|g| {
            let (f, base, dest) = (f.clone(), base.clone(), stage.join(&g));
            async move { fetch_plan_folder(&f, &base, &g, &dest).await }
        })
        .buffer_unordered(PARALLEL_FETCHES)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(Some((stage.to_owned(), validators)))
}

fn join(base: &Url, rel: &str) -> Result<Url, PlanError> {
    base.join(rel).map_err(|e| PlanError::Source {
        url: base.to_string(),
        reason: format!("cannot form the URL of {rel}: {e}"),
    })
}

/// Fetches `<base>/<game>/plan.json` and the conventional actions into `dest`. `false` when
/// the source has no such plan.
async fn fetch_plan_folder(
    f: &Fetcher,
    base: &Url,
    game: &str,
    dest: &Path,
) -> Result<bool, PlanError> {
    names::game_id(game)?;
    let plan_url = join(base, &format!("{game}/plan.json"))?;
    let bytes = match f.get(&plan_url, None).await? {
        Fetched::Body { bytes, .. } => bytes,
        Fetched::Missing => {
            tracing::warn!(url = %plan_url, "listed plan not found on the source; skipped");
            return Ok(false);
        }
        Fetched::NotModified => {
            return Err(PlanError::Source {
                url: plan_url.to_string(),
                reason: "answered 304 to an unconditional request".into(),
            });
        }
    };
    write_plan_file(&dest.join("plan.json"), &bytes, false)
        .map_err(|e| io_err(dest, "cannot write", e))?;
    for action in KNOWN_ACTIONS {
        let url = join(base, &format!("{game}/actions/{action}"))?;
        if let Fetched::Body { bytes, .. } = f.get(&url, None).await? {
            write_plan_file(&dest.join("actions").join(action), &bytes, true)
                .map_err(|e| io_err(dest, "cannot write", e))?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_swap_replaces_every_entry() {
        let d = tempfile::tempdir().unwrap();
        let plans = d.path().join("plans");
        fs::create_dir_all(plans.join("gone")).unwrap();
        fs::write(plans.join("plans.json"), "old").unwrap();
        fs::write(plans.join(".source.json"), "{}").unwrap();
        let new = plans.join(format!("{IN_PLACE}new-1")).join("repo-main");
        fs::create_dir_all(new.join("g")).unwrap();
        fs::write(new.join("plans.json"), "new").unwrap();
        fs::write(new.join(".source.json"), "{\"url\":\"x\"}").unwrap();
        let store = PlanStore::new(&plans);
        store.swap_entries(&new).unwrap();
        fs::remove_dir_all(plans.join(format!("{IN_PLACE}new-1"))).unwrap();
        let mut names: Vec<String> = fs::read_dir(&plans)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".source.json", "g", "plans.json"]);
        assert_eq!(fs::read_to_string(plans.join("plans.json")).unwrap(), "new");
        // An interrupted in-place swap is undone at the next start.
        let old = plans.join(format!("{IN_PLACE}old-2"));
        fs::create_dir_all(old.join("kept")).unwrap();
        fs::create_dir_all(plans.join(format!("{IN_PLACE}new-3"))).unwrap();
        store.recover().unwrap();
        assert!(plans.join("kept").is_dir());
        assert!(!old.exists() && !plans.join(format!("{IN_PLACE}new-3")).exists());
    }

    #[test]
    fn recover_puts_back_interrupted_swaps_and_clears_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let plans = d.path().join("plans");
        let old = d.path().join(".plans.old-1a2b");
        fs::create_dir_all(old.join(".g1.old-x")).unwrap();
        fs::create_dir_all(old.join("g2")).unwrap();
        fs::create_dir_all(old.join(".g2.old-y")).unwrap();
        fs::create_dir_all(old.join(".g3.new-z")).unwrap();
        fs::write(old.join("plans.json"), "[]").unwrap();
        fs::create_dir_all(d.path().join(".plans.new-3c4d")).unwrap();
        let store = PlanStore::new(&plans);
        store.recover().unwrap();
        let mut names: Vec<String> = fs::read_dir(&plans)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["g1", "g2", "plans.json"]);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "only plans/ is left"
        );
    }
}
