//! The audit log: one JSON line per mutating request in `<data>/audit.log` (mode 0600), rotated by size
//! (`audit.log.1` is the newest old file). Requests hand their entry to a bounded channel and
//! never wait: one writer thread appends (an entry that finds the channel full is counted and
//! dropped, with a warning). Entries never carry a key's secret, only its name.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AccessError;

/// The audit file's name in the data dir.
pub const AUDIT_FILE: &str = "audit.log";

/// Entries waiting for the writer; beyond this they are dropped rather than block a request.
const QUEUE: usize = 4096;

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC.
    pub time: DateTime<Utc>,
    /// The key's name (never its secret).
    pub key: String,
    /// The client's address.
    pub addr: String,
    pub method: String,
    /// The route template, e.g. `/api/v1/server/start/{uid}`.
    pub route: String,
    pub uid: Option<String>,
    pub status: u16,
    /// The job the request started, when it started one.
    pub job_id: Option<String>,
}

/// What `GET /audit` asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    pub uid: Option<String>,
    pub key: Option<String>,
    pub limit: usize,
}

impl AuditQuery {
    fn matches(&self, e: &AuditEntry) -> bool {
        self.since.is_none_or(|s| e.time >= s)
            && self.uid.as_ref().is_none_or(|u| e.uid.as_ref() == Some(u))
            && self.key.as_ref().is_none_or(|k| &e.key == k)
    }
}

/// The audit log's sender side.
pub struct Audit {
    path: PathBuf,
    keep: usize,
    tx: mpsc::SyncSender<AuditEntry>,
    dropped: AtomicU64,
}

impl Audit {
    /// Starts the writer thread on `path`. It ends when the `Audit` is dropped.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Audit {
        let (tx, rx) = mpsc::sync_channel::<AuditEntry>(QUEUE);
        let mut writer = Writer::new(path, max_bytes, keep);
        let spawned = std::thread::Builder::new()
            .name("peon-audit".into())
            .spawn(move || {
                while let Ok(e) = rx.recv() {
                    if let Err(err) = writer.append(&e) {
                        tracing::error!("cannot write the audit log: {err}");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the audit writer: {e}");
        }
        Audit {
            path: path.to_owned(),
            keep,
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues an entry; never blocks.
    pub fn record(&self, e: AuditEntry) {
        if self.tx.try_send(e).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                dropped_total = n,
                "the audit queue is full; dropped an entry"
            );
        }
    }

    /// Entries matching `q`, newest first (blocking file reads: call it off the async workers).
    pub fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AccessError> {
        read(&self.path, self.keep, q)
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Reads the current file and the rotated ones, newest entry first.
pub fn read(path: &Path, keep: usize, q: &AuditQuery) -> Result<Vec<AuditEntry>, AccessError> {
    let mut out = Vec::new();
    let files = std::iter::once(path.to_owned()).chain((1..=keep).map(|n| rotated(path, n)));
    for f in files {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(AccessError::Io {
                    what: "the audit log",
                    reason: format!("{}: {e}", f.display()),
                });
            }
        };
        let mut lines: Vec<AuditEntry> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .filter(|e| q.matches(e))
            .collect();
        lines.reverse();
        for e in lines {
            if out.len() >= q.limit {
                return Ok(out);
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// Appends entries and rotates the file by size.
pub struct Writer {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<(File, u64)>,
}

impl Writer {
    pub fn new(path: &Path, max_bytes: u64, keep: usize) -> Writer {
        Writer {
            path: path.to_owned(),
            max_bytes,
            keep,
            file: None,
        }
    }

    /// Appends one line, rotating first when it would pass the size limit.
    pub fn append(&mut self, e: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        let (_, size) = self.open()?;
        if *size > 0 && *size + len > self.max_bytes {
            self.rotate()?;
        }
        let (file, size) = self.open()?;
        file.write_all(&line)?;
        *size += len;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<&mut (File, u64)> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            let size = f.metadata()?.len();
            self.file = Some((f, size));
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the audit file is not open"))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(rotated(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64, uid: &str) -> AuditEntry {
        AuditEntry {
            time: DateTime::from_timestamp(1_700_000_000 + i, 0).unwrap(),
            key: if i % 2 == 0 { "admin" } else { "ci" }.into(),
            addr: "127.0.0.1".into(),
            method: "PUT".into(),
            route: "/api/v1/server/start/{uid}".into(),
            uid: Some(uid.into()),
            status: 200,
            job_id: None,
        }
    }

    #[test]
    fn rotates_by_size_keeping_n_files_and_reads_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let line = serde_json::to_vec(&entry(0, "g.a")).unwrap().len() as u64 + 1;
        // Room for 3 lines per file; keep 2 old files.
        let mut w = Writer::new(&path, line * 3, 2);
        for i in 0..20 {
            w.append(&entry(i, if i % 3 == 0 { "g.a" } else { "g.b" }))
                .unwrap();
        }
        assert!(path.exists() && rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        for f in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(std::fs::metadata(&f).unwrap().len() <= line * 3);
        }
        let all = read(
            &path,
            2,
            &AuditQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .unwrap();
        // 20 lines, 3 per file: the current file has 2 (18, 19), the old ones 3 each.
        let times: Vec<i64> = all
            .iter()
            .map(|e| e.time.timestamp() - 1_700_000_000)
            .collect();
        assert_eq!(times, [19, 18, 17, 16, 15, 14, 13, 12]);

        let q = AuditQuery {
            uid: Some("g.a".into()),
            limit: 100,
            ..Default::default()
        };
        let ts: Vec<i64> = read(&path, 2, &q)
            .unwrap()
            .iter()
            .map(|e| e.time.timestamp() - 1_700_000_000)
            .collect();
        assert_eq!(ts, [18, 15, 12]);
        let q = AuditQuery {
            key: Some("ci".into()),
            since: DateTime::from_timestamp(1_700_000_015, 0),
            limit: 2,
            ..Default::default()
        };
        let ts: Vec<i64> = read(&path, 2, &q)
            .unwrap()
            .iter()
            .map(|e| e.time.timestamp() - 1_700_000_000)
            .collect();
        assert_eq!(ts, [19, 17]);
    }

    #[test]
    fn the_writer_thread_appends_what_requests_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let audit = Audit::open(&path, 1 << 20, 3);
        audit.record(entry(1, "g.a"));
        audit.record(entry(2, "g.b"));
        let q = AuditQuery {
            limit: 10,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got = audit.query(&q).unwrap();
            if got.len() == 2 {
                assert_eq!(got[0].uid.as_deref(), Some("g.b"));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{got:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
