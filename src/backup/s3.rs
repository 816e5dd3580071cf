//! An S3-compatible object store as a backup target: the same layout as the local catalog
//! (`<prefix>/<game>/<name>/<id>.tar.zst` and `<id>.json`) under a bucket. The archive is
//! streamed into a multipart upload while it is made (no local copy); the info object is put
//! after the upload completed, so a backup is listed only once complete. A failed backup aborts
//! its upload. Reads stream the object back.

use std::io::{self, Write};
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use super::archive::{PackStats, pack};
use super::catalog::{BackupInfo, valid_id};
use super::glob::Globs;
use crate::names::Uid;

/// Where the store is and how to sign requests. `Debug` masks the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// `http://host:port` of an S3-compatible server, or empty for AWS itself.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &"***")
            .field("secret_key", &"***")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Upload parts: 8 MiB, at most 4 in flight; the bridge from the archive holds 4 MiB.
const PART: usize = 8 << 20;
const IN_FLIGHT: usize = 4;
const BRIDGE_CHUNK: usize = 1 << 20;

/// The backups of every server in one bucket.
#[derive(Debug, Clone)]
pub struct S3Catalog {
    store: Arc<AmazonS3>,
    prefix: String,
}

fn io_err(e: object_store::Error) -> io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

impl S3Catalog {
    pub fn new(c: &S3Config) -> io::Result<S3Catalog> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(if c.region.is_empty() {
                "us-east-1"
            } else {
                &c.region
            })
            .with_access_key_id(&c.access_key)
            .with_secret_access_key(&c.secret_key);
        if !c.endpoint.is_empty() {
            b = b
                .with_endpoint(&c.endpoint)
                .with_allow_http(c.endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = b.build().map_err(io_err)?;
        Ok(S3Catalog {
            store: Arc::new(store),
            prefix: c.prefix.trim_matches('/').to_owned(),
        })
    }

    fn key(&self, uid: &Uid, file: &str) -> Path {
        let rel = format!("{}/{}/{file}", uid.game(), uid.name());
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn dir(&self, uid: &Uid) -> Path {
        let rel = format!("{}/{}", uid.game(), uid.name());
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Packs `src` straight into a multipart upload of the archive `id`.
    pub async fn write_archive(
        &self,
        uid: &Uid,
        id: &str,
        src: &FsPath,
        exclude: &Globs,
    ) -> io::Result<PackStats> {
        let upload = self
            .store
            .put_multipart(&self.key(uid, &format!("{id}.tar.zst")))
            .await
            .map_err(io_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let (tx, mut rx) = mpsc::channel::<Bytes>(4);
        let (src, exclude) = (src.to_owned(), exclude.clone());
        let packer = tokio::task::spawn_blocking(move || {
            let sink = ChannelWriter {
                tx,
                buf: Vec::with_capacity(BRIDGE_CHUNK),
            };
            let (mut sink, stats) = pack(&src, &exclude, sink)?;
            sink.flush()?;
            Ok::<_, io::Error>(stats)
        });
        let mut failed = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = w.wait_for_capacity(IN_FLIGHT).await {
                failed = Some(io_err(e));
                break;
            }
            w.put(chunk);
        }
        drop(rx);
        let packed = packer
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r);
        match (packed, failed) {
            (Ok(stats), None) => {
                w.finish().await.map_err(io_err)?;
                Ok(stats)
            }
            (Err(e), _) | (Ok(_), Some(e)) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    pub async fn write_info(&self, info: &BackupInfo, uid: &Uid) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        self.store
            .put(
                &self.key(uid, &format!("{}.json", info.id)),
                PutPayload::from(body),
            )
            .await
            .map_err(io_err)?;
        Ok(())
    }

    /// The server's complete backups, oldest first.
    pub async fn list(&self, uid: &Uid) -> io::Result<Vec<BackupInfo>> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.dir(uid)))
            .try_collect()
            .await
            .map_err(io_err)?;
        let mut out = Vec::new();
        for m in &metas {
            let Some(id) = m.location.filename().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            let bytes = self.store.get(&m.location).await.map_err(io_err)?;
            let bytes = bytes.bytes().await.map_err(io_err)?;
            match serde_json::from_slice::<BackupInfo>(&bytes) {
                Ok(i) => out.push(i),
                Err(e) => tracing::warn!(uid = %uid, "skipping backup {id} in S3: {e}"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The archive's bytes as a stream.
    pub async fn open(
        &self,
        uid: &Uid,
        id: &str,
    ) -> io::Result<futures_util::stream::BoxStream<'static, io::Result<Bytes>>> {
        let r = self
            .store
            .get(&self.key(uid, &format!("{id}.tar.zst")))
            .await
            .map_err(io_err)?;
        Ok(r.into_stream().map(|c| c.map_err(io_err)).boxed())
    }

    /// Removes a backup: its info first, then the archive.
    pub async fn delete(&self, uid: &Uid, id: &str) -> io::Result<()> {
        for f in [format!("{id}.json"), format!("{id}.tar.zst")] {
            match self.store.delete(&self.key(uid, &f)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }
}

/// A blocking writer that hands 1 MiB chunks to the async uploader; it blocks (backpressure)
/// while the channel is full.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(BRIDGE_CHUNK));
        self.tx
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BRIDGE_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= BRIDGE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
