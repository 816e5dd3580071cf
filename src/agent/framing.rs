//! The wire form of a server directory between agents: the directory's archive (the backups'
//! `tar.zst`, [`crate::backup::archive`]) streamed as it is packed, followed by a fixed-size
//! trailer, `PEONSUM1` and the archive's sha256 in lowercase hex. Nothing is packed ahead into
//! a file, so the sum can only come last. A receiver unpacks into staging while it hashes, and
//! uses the result only when the stream ended with a trailer naming the same sum: a damaged
//! stream fails to unpack or to match, an interrupted one has no trailer.

use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::backup::glob::Globs;

/// The trailer's first bytes.
pub const MAGIC: &[u8; 8] = b"PEONSUM1";
/// The trailer's length: the magic and 64 hex digits.
pub const TRAILER_LEN: usize = MAGIC.len() + 64;
/// The response header saying the body is framed this way.
pub const FORMAT_HEADER: &str = "x-peon-transfer";
/// Its value.
pub const FORMAT: &str = "tar.zst+sha256-trailer";

/// The trailer for an archive with this sha256.
pub fn trailer(sha256: &str) -> Vec<u8> {
    let mut t = MAGIC.to_vec();
    t.extend_from_slice(sha256.as_bytes());
    t
}

/// Bytes per chunk of an outgoing stream.
const CHUNK: usize = 256 << 10;

/// The framed stream of `dir`: packed on the blocking pool as it is read, in chunks, then the
/// trailer. A failure while packing cuts the stream before its trailer (an error item), so the
/// receiver refuses it; a receiver that goes away stops the packing. `done` is called on the
/// blocking pool with the archive's stats, or the failure, once the packing ended.
pub fn pack_stream(
    dir: std::path::PathBuf,
    done: impl FnOnce(&io::Result<crate::backup::archive::PackStats>) + Send + 'static,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let sink = ChunkSender {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let packed = crate::backup::pack(&dir, &Globs::new::<&str>(&[]), sink)
            .and_then(|(mut sink, st)| sink.send_now().map(|()| st));
        done(&packed);
        let _ = tx.blocking_send(packed.map(|st| Bytes::from(trailer(&st.sha256))));
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A writer that sends what it gets in chunks through a channel; it fails once the receiver is
/// gone (the client left), which stops the packing.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send_now(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver went away"))
    }
}

impl io::Write for ChunkSender {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() >= CHUNK {
            self.send_now()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that passes on everything but the trailer, and reads the trailer's sum at the end.
/// A stream that ends without a well-formed trailer is an error (`InvalidData`), read at its end.
pub struct Untrailed<R> {
    inner: R,
    /// Bytes read and not passed on yet: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    scratch: Vec<u8>,
    eof: bool,
    sum: Arc<OnceLock<String>>,
}

impl<R: Read> Untrailed<R> {
    pub fn new(inner: R) -> Self {
        Untrailed {
            inner,
            buf: Vec::new(),
            start: 0,
            scratch: vec![0; 64 << 10],
            eof: false,
            sum: Arc::new(OnceLock::new()),
        }
    }

    /// Where the trailer's sum appears once the stream was read to its end.
    pub fn sum(&self) -> Arc<OnceLock<String>> {
        self.sum.clone()
    }
}

impl<R: Read> Read for Untrailed<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let held = self.buf.len() - self.start;
            if held > TRAILER_LEN {
                let n = out.len().min(held - TRAILER_LEN);
                out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                return Ok(n);
            }
            // Only the possible trailer is left: keep it at the front and read more.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.eof {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.scratch)?;
            if n == 0 {
                self.eof = true;
                let ok = self.buf.len() == TRAILER_LEN
                    && self.buf.starts_with(MAGIC)
                    && self.buf[MAGIC.len()..]
                        .iter()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
                if !ok {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the transfer ended without its checksum trailer (interrupted?)",
                    ));
                }
                let sum = String::from_utf8_lossy(&self.buf[MAGIC.len()..]).into_owned();
                let _ = self.sum.set(sum);
                return Ok(0);
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
    }
}

/// What a received directory was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the archive (without the trailer).
    pub bytes: u64,
    /// Its sha256, as computed and as the trailer said.
    pub sha256: String,
}

/// Unpacks a framed stream into `dest` (an empty directory) and checks the sum: an error unless
/// the archive unpacked whole and its sha256 is the trailer's. Blocks.
pub fn unpack_framed<R: Read + Send>(src: R, dest: &Path) -> io::Result<Received> {
    let r = Untrailed::new(src);
    let said = r.sum();
    let (bytes, sha256) = crate::backup::unpack(r, dest)?;
    match said.get() {
        Some(s) if *s == sha256 => Ok(Received { bytes, sha256 }),
        Some(s) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("checksum mismatch: the archive has sha256 {sha256}, its trailer says {s}"),
        )),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the transfer ended without its checksum trailer (interrupted?)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed() -> (tempfile::TempDir, Vec<u8>, String) {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("srv");
        std::fs::create_dir_all(s.join("user")).unwrap();
        std::fs::write(s.join("user/world"), vec![3u8; 50_000]).unwrap();
        let (mut out, st) = crate::backup::pack(&s, &Globs::new::<&str>(&[]), Vec::new()).unwrap();
        out.extend(trailer(&st.sha256));
        (d, out, st.sha256)
    }

    #[test]
    fn a_framed_stream_unpacks_and_a_damaged_or_cut_one_does_not() {
        let (d, good, sha) = framed();
        let dest = |n: &str| {
            let p = d.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        // Read in small pieces: the trailer may arrive split.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0.len()).min(7);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let r = unpack_framed(Trickle(&good), &dest("a")).unwrap();
        assert_eq!(r.sha256, sha);
        assert_eq!(r.bytes as usize, good.len() - TRAILER_LEN);
        assert_eq!(
            std::fs::read(d.path().join("a/user/world")).unwrap().len(),
            50_000
        );
        // Cut before the trailer, or inside it.
        let cut = &good[..good.len() - TRAILER_LEN];
        assert!(unpack_framed(cut, &dest("b")).is_err());
        assert!(unpack_framed(&good[..good.len() - 3], &dest("c")).is_err());
        // A trailer naming another sum.
        let mut wrong = cut.to_vec();
        wrong.extend(trailer(&"0".repeat(64)));
        let e = unpack_framed(&wrong[..], &dest("d")).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // A flipped byte in the archive.
        let mut bad = good.clone();
        bad[good.len() / 3] ^= 0xff;
        assert!(unpack_framed(&bad[..], &dest("e")).is_err());
    }
}
