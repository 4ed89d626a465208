//! A layer's uncompressed tar stream, decompressed and hashed (its diff_id) on a thread of its
//! own. Decompressing and hashing take about as long as writing the files, so on two cores the
//! two halves overlap, as `tar -xz` overlaps with its gzip child. At most [`CHUNKS`] chunks of
//! [`CHUNK`] bytes wait between them: memory stays flat whatever the layer's size.

use crate::blob::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Bytes per chunk handed over.
const CHUNK: usize = 256 * 1024;
/// Chunks that may wait for the reader.
const CHUNKS: usize = 8;

/// The reading end: the uncompressed stream, or the error that stopped it.
pub(super) struct Decoded {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The sender is gone after the last chunk: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Starts decoding `layer` (gzip, zstd or plain tar, told by its first bytes) on a thread of
/// `scope`, each uncompressed byte counted by `spend` (which fails past a limit). The thread's
/// result is the stream's digest (the diff_id) once the reader has taken it all; `None` when
/// it stopped on an error, which the reader got instead of more bytes.
pub(super) fn spawn<'scope, 'env, R, S>(
    scope: &'scope Scope<'scope, 'env>,
    layer: R,
    mut spend: S,
) -> (Decoded, ScopedJoinHandle<'scope, Option<Digest>>)
where
    R: Read + Send + 'env,
    S: FnMut(usize) -> io::Result<()> + Send + 'env,
{
    let (tx, rx) = sync_channel(CHUNKS);
    let handle = scope.spawn(move || {
        let fail = |tx: &SyncSender<io::Result<Vec<u8>>>, e: io::Error| {
            let _ = tx.send(Err(e));
            None
        };
        let mut inner = match decompress(layer) {
            Ok(r) => r,
            Err(e) => return fail(&tx, e),
        };
        let mut hasher = Sha256::new();
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return fail(&tx, e),
            };
            if let Err(e) = spend(n) {
                return fail(&tx, e);
            }
            hasher.update(&buf[..n]);
            buf.truncate(n);
            if tx.send(Ok(buf)).is_err() {
                // The reader stopped (an entry failed): nothing more is wanted.
                return None;
            }
        }
        Some(Digest::from_hasher(hasher))
    });
    (
        Decoded {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
        handle,
    )
}

/// Picks the decompressor from the stream's first bytes: gzip (every member, since parallel
/// writers may join several), zstd, or plain tar.
fn decompress<'a, R: Read + Send + 'a>(r: R) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut r = BufReader::with_capacity(CHUNK, r);
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}
