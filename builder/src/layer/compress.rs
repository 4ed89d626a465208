//! Layer compression: gzip spread over all cores, zstd (multithreaded), or none.
//!
//! Parallel gzip follows pigz's layout: the input is cut into fixed-size blocks, each block is
//! deflated on its own by a worker and ended with a sync flush (so it stops on a byte boundary),
//! the last with a final block; the pieces are joined under one gzip header and trailer. The
//! result is a single ordinary gzip member, so readers that stop after the first member (some
//! do) still read the whole layer. Block boundaries depend only on the byte count, never on the
//! thread count, so the compressed bytes are the same on a 2-core CI runner and a 64-core
//! workstation: digests stay reproducible.
//!
//! With more than one thread the work is a pipeline, so that nothing per-byte is left on the
//! thread that makes the tar: that thread only copies bytes into blocks; workers deflate a block
//! and CRC it; a sink thread, in stream order, hashes each block's input (the diff_id), combines
//! the CRCs and writes the output (whose digest the blob writer computes). Blocks and output
//! buffers are recycled, and at most `2 × threads` blocks are in flight.

use super::error::LayerError;
use crate::blob::{Digest, DigestWriter};
use flate2::{Compress, FlushCompress, Status};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip, compressed on all cores (`...tar+gzip`), the format every registry and runtime reads.
    #[default]
    Gzip,
    /// zstd, multithreaded (`...tar+zstd`).
    Zstd,
}

/// OCI media type of an uncompressed layer.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI media type of a gzip layer.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI media type of a zstd layer.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// gzip level used when none is given: compression dominates cold builds, and level 1 keeps
/// most of the size benefit at a fraction of level 6's time.
pub const DEFAULT_GZIP_LEVEL: i32 = 1;
/// zstd level used when none is given (zstd's own default, already fast).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Input bytes per independently deflated gzip block. Large enough that restarting the
/// dictionary costs well under 1% of the size, small enough to keep memory per thread low.
const GZIP_BLOCK: usize = 1 << 20;

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_TAR,
            Compression::Gzip => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd => MEDIA_TYPE_TAR_ZSTD,
        }
    }
}

/// Room for one block's deflate output at any level, so the output buffer is never grown:
/// zlib's `deflateBound` plus the sync flush's empty stored block.
fn deflate_bound(n: usize) -> usize {
    n + (n >> 12) + (n >> 14) + (n >> 25) + 64
}

/// Compresses one gzip block as raw deflate into `out` (cleared first); non-final blocks end
/// with a sync flush so the next block can follow on a byte boundary. `c` is reset first: a
/// reused compressor gives the same bytes as a new one, without allocating its tables again.
fn deflate_block(c: &mut Compress, data: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
    c.reset();
    out.clear();
    out.reserve(deflate_bound(data.len()));
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let done = usize::try_from(c.total_in())
            .unwrap_or(usize::MAX)
            .min(data.len());
        let status = c
            .compress_vec(&data[done..], out, flush)
            .map_err(io::Error::other)?;
        let consumed_all = c.total_in() == data.len() as u64;
        match status {
            Status::StreamEnd => break,
            _ if !last && consumed_all && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(())
}

fn new_compress(level: u32) -> Compress {
    Compress::new(flate2::Compression::new(level), false)
}

/// A block's deflate output and the CRC-32 of its input, both made on a worker.
struct Deflated {
    z: Vec<u8>,
    crc: crc32fast::Hasher,
}

struct Job {
    data: Arc<Vec<u8>>,
    last: bool,
    reply: SyncSender<io::Result<Deflated>>,
}

/// A block on its way to the sink, in stream order: its input (to hash) and where its
/// compressed form will arrive.
struct InFlight {
    data: Arc<Vec<u8>>,
    result: Receiver<io::Result<Deflated>>,
}

/// Output buffers handed back by the sink for workers to reuse: fresh 1 MiB buffers would
/// cost page faults on every block.
type Buffers = Arc<Mutex<Vec<Vec<u8>>>>;

struct SinkEnd<W> {
    out: W,
    diff: Sha256,
    crc: crc32fast::Hasher,
}

/// The ordered stage: hashes each block's input (the diff_id), waits for its deflate output,
/// combines the CRCs and writes the output (whose digest the writer computes). Running here
/// and not on the thread that makes the tar, these hashes overlap with everything else.
fn sink<W: Write>(
    mut out: W,
    order: Receiver<InFlight>,
    free: SyncSender<Vec<u8>>,
    buffers: Buffers,
    keep: usize,
) -> io::Result<SinkEnd<W>> {
    let mut diff = Sha256::new();
    let mut crc = crc32fast::Hasher::new();
    while let Ok(InFlight { data, result }) = order.recv() {
        diff.update(&data[..]);
        let d = result
            .recv()
            .map_err(|_| io::Error::other("gzip worker died"))??;
        crc.combine(&d.crc);
        out.write_all(&d.z)?;
        if let Ok(mut pool) = buffers.lock() {
            if pool.len() < keep {
                pool.push(d.z);
            }
        }
        // The worker dropped its handle before replying, so the block is ours again.
        if let Ok(mut v) = Arc::try_unwrap(data) {
            v.clear();
            let _ = free.try_send(v);
        }
    }
    Ok(SinkEnd { out, diff, crc })
}

/// Workers deflating blocks, and the sink writing them in order.
struct Pipeline<W> {
    jobs: Option<SyncSender<Job>>,
    order: Option<SyncSender<InFlight>>,
    free: Receiver<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    sink: Option<JoinHandle<io::Result<SinkEnd<W>>>>,
}

impl<W: Write + Send + 'static> Pipeline<W> {
    fn new(out: W, threads: usize, level: u32) -> io::Result<Pipeline<W>> {
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(threads);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        // Blocks in flight: at most this many wait for the sink, each 1 MiB in and out, so
        // memory stays a few MiB per core whatever the layer's size.
        let depth = threads * 2;
        let (order_tx, order_rx) = sync_channel::<InFlight>(depth);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(depth + 2);
        let buffers: Buffers = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&jobs_rx);
            let buffers = Arc::clone(&buffers);
            let h = std::thread::Builder::new()
                .name(format!("kiln-gzip-{i}"))
                .spawn(move || {
                    let mut c = new_compress(level);
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(Job { data, last, reply }) = job else {
                            return;
                        };
                        let mut z = buffers
                            .lock()
                            .ok()
                            .and_then(|mut p| p.pop())
                            .unwrap_or_default();
                        let r = deflate_block(&mut c, &data, last, &mut z).map(|()| {
                            let mut crc = crc32fast::Hasher::new();
                            crc.update(&data);
                            Deflated { z, crc }
                        });
                        drop(data);
                        // The sink may be gone if the writer was dropped on an error.
                        let _ = reply.send(r);
                    }
                })?;
            workers.push(h);
        }
        let keep = depth + threads + 1;
        let sink = std::thread::Builder::new()
            .name("kiln-gzip-sink".into())
            .spawn(move || sink(out, order_rx, free_tx, buffers, keep))?;
        Ok(Pipeline {
            jobs: Some(jobs_tx),
            order: Some(order_tx),
            free: free_rx,
            workers,
            sink: Some(sink),
        })
    }

    /// The sink's own error when it stopped on one (a failed write), else a generic one.
    fn failure(&mut self) -> io::Error {
        self.order = None;
        self.jobs = None;
        match self.sink.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("gzip pipeline stopped"),
        }
    }

    fn send(&mut self, data: Vec<u8>, last: bool) -> io::Result<()> {
        let data = Arc::new(data);
        let (tx, rx) = sync_channel(1);
        let job = Job {
            data: Arc::clone(&data),
            last,
            reply: tx,
        };
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok())
            && self
                .order
                .as_ref()
                .is_some_and(|o| o.send(InFlight { data, result: rx }).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    fn finish(&mut self) -> io::Result<SinkEnd<W>> {
        self.order = None;
        self.jobs = None;
        let end = match self.sink.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(io::Error::other("gzip sink panicked")),
        };
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        end
    }
}

impl<W> Drop for Pipeline<W> {
    fn drop(&mut self) {
        self.order = None;
        self.jobs = None;
        if let Some(s) = self.sink.take() {
            let _ = s.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Everything on the caller's thread: the one-core baseline, and what `threads == 1` asks for.
struct Inline<W> {
    out: W,
    c: Compress,
    z: Vec<u8>,
    diff: Sha256,
    crc: crc32fast::Hasher,
}

enum Mode<W> {
    Inline(Box<Inline<W>>),
    Pipeline(Pipeline<W>),
}

/// A gzip writer that deflates blocks on `threads` worker threads (inline when 1), and
/// computes the diff_id (sha256 of what is written to it) on the way.
pub(crate) struct ParGzWriter<W: Write + Send + 'static> {
    block: Vec<u8>,
    total: u64,
    mode: Mode<W>,
}

impl<W: Write + Send + 'static> ParGzWriter<W> {
    pub(crate) fn new(mut out: W, level: i32, threads: usize) -> io::Result<Self> {
        let level = u32::try_from(level.clamp(0, 9)).unwrap_or(1);
        // mtime 0 and OS "unknown": nothing about the host or the time of the build.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let mode = if threads > 1 {
            Mode::Pipeline(Pipeline::new(out, threads, level)?)
        } else {
            Mode::Inline(Box::new(Inline {
                out,
                c: new_compress(level),
                z: Vec::new(),
                diff: Sha256::new(),
                crc: crc32fast::Hasher::new(),
            }))
        };
        Ok(ParGzWriter {
            block: Vec::with_capacity(GZIP_BLOCK),
            total: 0,
            mode,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        match &mut self.mode {
            Mode::Inline(s) => {
                s.diff.update(&self.block);
                s.crc.update(&self.block);
                deflate_block(&mut s.c, &self.block, last, &mut s.z)?;
                self.block.clear();
                s.out.write_all(&s.z)
            }
            Mode::Pipeline(p) => {
                let next = p
                    .free
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(GZIP_BLOCK));
                let data = std::mem::replace(&mut self.block, next);
                p.send(data, last)
            }
        }
    }

    /// Compresses what is buffered, writes the trailer; returns the diff_id and the inner
    /// writer.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, W)> {
        self.dispatch(true)?;
        let ParGzWriter { total, mode, .. } = self;
        let (mut out, diff, crc) = match mode {
            Mode::Inline(s) => {
                let Inline { out, diff, crc, .. } = *s;
                (out, diff, crc)
            }
            Mode::Pipeline(mut p) => {
                let end = p.finish()?;
                (end.out, end.diff, end.crc)
            }
        };
        out.write_all(&crc.finalize().to_le_bytes())?;
        // ISIZE is the length modulo 2^32, as RFC 1952 defines it.
        out.write_all(&((total & 0xffff_ffff) as u32).to_le_bytes())?;
        out.flush()?;
        Ok((Digest::from_hasher(diff), out))
    }
}

impl<W: Write + Send + 'static> Write for ParGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        self.total += n as u64;
        if self.block.len() == GZIP_BLOCK {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are cut by size only (so output is reproducible): nothing to force out here.
        Ok(())
    }
}

/// zstd with the diff_id computed on the way.
pub(crate) struct ZstdWriter<W: Write> {
    z: zstd::stream::write::Encoder<'static, W>,
    diff: Sha256,
}

/// The compressor chosen for a layer, writing into `W`; each computes the diff_id of what is
/// written to it.
pub(crate) enum Encoder<W: Write + Send + 'static> {
    None(DigestWriter<W>),
    Gzip(ParGzWriter<W>),
    Zstd(ZstdWriter<W>),
}

/// Worker threads to use when the caller says 0: every core.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<W: Write + Send + 'static> Encoder<W> {
    pub(crate) fn new(
        out: W,
        c: Compression,
        level: Option<i32>,
        threads: usize,
    ) -> io::Result<Self> {
        let threads = if threads == 0 {
            default_threads()
        } else {
            threads
        };
        Ok(match c {
            Compression::None => Encoder::None(DigestWriter::new(out)),
            Compression::Gzip => Encoder::Gzip(ParGzWriter::new(
                out,
                level.unwrap_or(DEFAULT_GZIP_LEVEL),
                threads,
            )?),
            Compression::Zstd => {
                let mut z =
                    zstd::stream::write::Encoder::new(out, level.unwrap_or(DEFAULT_ZSTD_LEVEL))?;
                // Always in zstd's multithreaded mode (>= 1 worker): its output does not depend
                // on the worker count there, but differs from the single-threaded mode's.
                z.multithread(u32::try_from(threads).unwrap_or(1))?;
                z.include_checksum(true)?;
                Encoder::Zstd(ZstdWriter {
                    z,
                    diff: Sha256::new(),
                })
            }
        })
    }

    /// Ends the stream; returns the diff_id (sha256 of everything written) and the inner writer.
    pub(crate) fn finish(self) -> io::Result<(Digest, W)> {
        match self {
            Encoder::None(w) => {
                let (d, _, out) = w.finish();
                Ok((d, out))
            }
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => Ok((Digest::from_hasher(z.diff), z.z.finish()?)),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => {
                let n = z.z.write(buf)?;
                z.diff.update(&buf[..n]);
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.z.flush(),
        }
    }
}

/// Compresses the stream `src` into `out` as a layer would be (gzip on `threads` cores, 0 for
/// all; zstd; or none) and returns the diff_id (sha256 of `src`) and `out`. For tar streams that
/// come from elsewhere than [`crate::layer::write_layer`], and for measuring the compressor.
pub fn compress_stream<R: Read, W: Write + Send + 'static>(
    mut src: R,
    out: W,
    compression: Compression,
    level: Option<i32>,
    threads: usize,
) -> Result<(Digest, W), LayerError> {
    let mut enc = Encoder::new(out, compression, level, threads).map_err(LayerError::Stream)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LayerError::Stream(e)),
        };
        enc.write_all(&buf[..n]).map_err(LayerError::Stream)?;
    }
    enc.finish().map_err(LayerError::Stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a repeating text with a counter.
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("line {i} of the sample {}\n", i % 97).as_bytes());
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParGzWriter::new(Vec::new(), 1, threads).unwrap();
        for chunk in data.chunks(7777) {
            w.write_all(chunk).unwrap();
        }
        let (diff_id, out) = w.finish().unwrap();
        assert_eq!(diff_id, crate::blob::Digest::of(data));
        out
    }

    #[test]
    fn parallel_gzip_is_one_member_and_thread_count_free() {
        for len in [0, 1, GZIP_BLOCK, GZIP_BLOCK + 1, 3 * GZIP_BLOCK + 12345] {
            let data = sample(len);
            let one = gzip(&data, 1);
            let two = gzip(&data, 2);
            let four = gzip(&data, 4);
            assert_eq!(one, two, "len {len}");
            assert_eq!(one, four, "len {len}");
            // A single-member reader sees everything: it is one gzip member.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
        }
    }

    #[test]
    fn zstd_output_does_not_depend_on_thread_count() {
        let data = sample(5 << 20);
        let z = |t| {
            let mut e = Encoder::new(Vec::new(), Compression::Zstd, None, t).unwrap();
            e.write_all(&data).unwrap();
            let (diff_id, out) = e.finish().unwrap();
            assert_eq!(diff_id, crate::blob::Digest::of(&data));
            out
        };
        let (a, b) = (z(1), z(3));
        assert_eq!(a, b);
        assert_eq!(zstd::decode_all(&a[..]).unwrap(), data);
    }
}
