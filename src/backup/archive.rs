//! The archive: a tar of a server directory (modes, owners and times kept; symlinks stored as
//! links), compressed with zstd, hashed (sha256) and counted as it is written. Nothing is held
//! in memory beyond the coders' buffers (zstd compresses on its own thread: [`WORKERS`]).
//! These calls block: run them off the async workers.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::glob::Globs;
use super::space::walk;

/// The zstd level of backups (the `zstd` tool's default).
pub const LEVEL: i32 = 3;

/// zstd's compression threads beside the one reading the files: like `tar | zstd`, one core
/// walks and reads while another compresses, and a live game keeps the rest of the host.
pub const WORKERS: u32 = 1;

/// What [`pack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStats {
    /// Regular files in the archive.
    pub files: u64,
    /// Bytes of those files.
    pub source_bytes: u64,
    /// Bytes of the compressed archive.
    pub bytes: u64,
    /// sha256 of the compressed archive, lowercase hex.
    pub sha256: String,
}

/// A writer that hashes and counts what goes through it.
pub struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the byte count and the hex digest.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.count, hex(&self.hash.finalize()))
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
pub struct HashReader<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (u64, String) {
        (self.count, hex(&self.hash.finalize()))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes the archive of `src` (without what `exclude` names) to `sink`; returns the sink
/// (flushed, for the caller to sync or complete) and what was written.
pub fn pack<W: Write>(src: &Path, exclude: &Globs, sink: W) -> io::Result<(W, PackStats)> {
    let hashed = HashWriter::new(sink);
    let mut enc = zstd::Encoder::new(hashed, LEVEL)?;
    enc.multithread(WORKERS)?;
    enc.include_checksum(true)?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    let (mut files, mut source_bytes) = (0u64, 0u64);
    walk(src, "", exclude, &mut |path, rel, md| {
        if !(md.is_file() || md.is_dir() || md.file_type().is_symlink()) {
            // Sockets, fifos, devices: not part of a game's files.
            return Ok(());
        }
        match tar.append_path_with_name(path, rel) {
            // Gone since the walk saw it (a temporary file renamed away): nothing was written.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r?,
        }
        if md.is_file() {
            files += 1;
            source_bytes += md.len();
        }
        Ok(())
    })?;
    let enc = tar.into_inner()?;
    let mut hashed = enc.finish()?;
    hashed.flush()?;
    let (sink, bytes, sha256) = hashed.finish();
    Ok((
        sink,
        PackStats {
            files,
            source_bytes,
            bytes,
            sha256,
        },
    ))
}

/// Unpacks an archive read from `src` into `dest` (an empty directory), keeping modes, owners
/// and times ([`extract`]). Returns the byte count and sha256 of everything read from `src` (the
/// whole stream, also what follows the tar's end), for the caller to compare before using `dest`.
///
/// Like `zstd -dc | tar -x`, two threads share the work: one reads, hashes and decompresses,
/// the other writes the files; between them at most [`PIPE_CHUNKS`] chunks of [`PIPE_CHUNK`],
/// the same buffers going back and forth.
pub fn unpack<R: Read + Send>(src: R, dest: &Path) -> io::Result<(u64, String)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_CHUNKS);
    let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_CHUNKS + 1);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> io::Result<(u64, String)> {
            let mut dec = zstd::Decoder::new(HashReader::new(src))?;
            let mut stopped = false;
            let mut spare = vec![0u8; PIPE_CHUNK];
            loop {
                let mut buf = back_rx
                    .try_recv()
                    .unwrap_or_else(|_| std::mem::take(&mut spare));
                buf.resize(PIPE_CHUNK, 0);
                let n = fill(&mut dec, &mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if stopped {
                    spare = buf;
                } else if let Err(e) = tx.send(buf) {
                    // The writer stopped (its error is the one reported); keep reading so the
                    // stream is checked to its end.
                    stopped = true;
                    spare = e.0;
                }
            }
            drop(tx);
            let mut rest = dec.finish();
            io::copy(&mut rest, &mut io::sink())?;
            Ok(rest.into_inner().finish())
        });
        let written = super::extract::extract(
            ChannelReader {
                rx,
                back: back_tx,
                cur: Vec::new(),
                pos: 0,
            },
            dest,
        );
        let read = producer
            .join()
            .map_err(|_| io::Error::other("the decompressing thread panicked"))?;
        // A damaged stream usually shows as both; the reader's error says why.
        let (n, sha) = read.map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the archive cannot be read or is damaged: {e}"),
            )
        })?;
        written?;
        Ok((n, sha))
    })
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Chunks between the decompressing and the writing thread of [`unpack`].
const PIPE_CHUNK: usize = 256 << 10;
const PIPE_CHUNKS: usize = 8;

/// The writing side of [`unpack`]'s pipe; hands each used chunk back.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    let used = std::mem::replace(&mut self.cur, c);
                    if used.capacity() > 0 {
                        // Dropped instead when the reader is gone or has enough spares.
                        let _ = self.back.try_send(used);
                    }
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_round_trip_with_excludes_and_the_same_hash() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("srv");
        std::fs::create_dir_all(s.join("user/world")).unwrap();
        std::fs::create_dir_all(s.join("cache")).unwrap();
        std::fs::write(s.join("user/world/a.db"), vec![7u8; 100_000]).unwrap();
        std::fs::write(s.join("config.json"), "{}").unwrap();
        std::fs::write(s.join("cache/x"), "x").unwrap();
        std::os::unix::fs::symlink("config.json", s.join("link")).unwrap();
        let mut out = Vec::new();
        let (_, st) = pack(&s, &Globs::new(&["cache"]), &mut out).unwrap();
        assert_eq!(st.files, 2);
        assert_eq!(st.source_bytes, 100_002);
        assert_eq!(st.bytes, out.len() as u64);
        let r = d.path().join("r");
        std::fs::create_dir(&r).unwrap();
        let (n, sha) = unpack(&out[..], &r).unwrap();
        assert_eq!((n, sha), (st.bytes, st.sha256.clone()));
        assert_eq!(
            std::fs::read(r.join("user/world/a.db")).unwrap().len(),
            100_000
        );
        assert!(!r.join("cache").exists());
        assert_eq!(
            std::fs::read_link(r.join("link")).unwrap(),
            Path::new("config.json")
        );
        // A corrupted archive fails to unpack.
        let mid = out.len() / 2;
        out[mid] ^= 0xff;
        let r2 = d.path().join("r2");
        std::fs::create_dir(&r2).unwrap();
        assert!(unpack(&out[..], &r2).is_err());
    }
}
