//! The archive: a tar of a server directory (modes, owners and times kept; symlinks stored as
//! links), compressed with zstd, hashed (sha256) and counted as it is written. Nothing is held
//! in memory beyond the coders' buffers. These calls block: run them off the async workers.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::glob::Globs;
use super::space::walk;

/// The zstd level of backups (the `zstd` tool's default).
pub const LEVEL: i32 = 3;

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
/// and times. Returns the byte count and sha256 of everything read from `src` (the whole
/// stream, also what follows the tar's end), for the caller to compare before using `dest`.
///
/// Like `zstd -dc | tar -x`, two threads share the work: one reads, hashes and decompresses,
/// the other writes the files; between them at most [`PIPE_CHUNKS`] chunks of [`PIPE_CHUNK`].
pub fn unpack<R: Read + Send>(src: R, dest: &Path) -> io::Result<(u64, String)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_CHUNKS);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> io::Result<(u64, String)> {
            let mut dec = zstd::Decoder::new(HashReader::new(src))?;
            let mut stopped = false;
            loop {
                let mut buf = vec![0u8; PIPE_CHUNK];
                let n = dec.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if !stopped && tx.send(buf).is_err() {
                    // The writer stopped (its error is the one reported); keep reading so the
                    // stream is checked to its end.
                    stopped = true;
                }
            }
            drop(tx);
            let mut rest = dec.finish();
            io::copy(&mut rest, &mut io::sink())?;
            Ok(rest.into_inner().finish())
        });
        let written = (|| {
            let mut ar = tar::Archive::new(ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            });
            ar.set_preserve_permissions(true);
            ar.set_preserve_ownerships(true);
            ar.set_preserve_mtime(true);
            ar.set_overwrite(true);
            ar.unpack(dest)?;
            let mut r = ar.into_inner();
            io::copy(&mut r, &mut io::sink())?;
            Ok::<_, io::Error>(())
        })();
        let read = producer
            .join()
            .map_err(|_| io::Error::other("the decompressing thread panicked"))?;
        // A damaged stream usually shows as both; the reader's error says why.
        let (n, sha) = read?;
        written?;
        Ok((n, sha))
    })
}

/// Chunks between the decompressing and the writing thread of [`unpack`].
const PIPE_CHUNK: usize = 256 << 10;
const PIPE_CHUNKS: usize = 8;

/// The writing side of [`unpack`]'s pipe.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
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
