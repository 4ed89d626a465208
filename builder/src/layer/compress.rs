//! Layer compression: gzip spread over all cores, zstd (multithreaded), or none.
//!
//! Parallel gzip follows pigz's layout: the input is cut into fixed-size blocks, each block is
//! deflated on its own by a worker and ended with a sync flush (so it stops on a byte boundary),
//! the last with a final block; the pieces are joined under one gzip header and trailer. The
//! result is a single ordinary gzip member, so readers that stop after the first member (some
//! do) still read the whole layer. Block boundaries depend only on the byte count, never on the
//! thread count, so the compressed bytes are the same on a 2-core CI runner and a 64-core
//! workstation: digests stay reproducible.

use flate2::{Compress, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
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

/// Compresses one gzip block as raw deflate; non-final blocks end with a sync flush so the
/// next block can follow on a byte boundary.
fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
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
            .compress_vec(&data[done..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed_all = c.total_in() == data.len() as u64;
        match status {
            Status::StreamEnd => break,
            _ if !last && consumed_all && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

type Job = (Vec<u8>, bool, SyncSender<io::Result<Vec<u8>>>);

struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, level: u32) -> io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let h = std::thread::Builder::new()
                .name(format!("kiln-gzip-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((data, last, reply)) = job else { return };
                    // The receiver may be gone if the writer was dropped on an error.
                    let _ = reply.send(deflate_block(&data, level, last));
                })?;
            workers.push(h);
        }
        Ok(Pool {
            jobs: Some(tx),
            workers,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A gzip writer that deflates blocks on `threads` worker threads (inline when 1).
pub(crate) struct ParGzWriter<W: Write> {
    out: W,
    level: u32,
    block: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    pool: Option<Pool>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
}

impl<W: Write> ParGzWriter<W> {
    pub(crate) fn new(mut out: W, level: i32, threads: usize) -> io::Result<Self> {
        let level = u32::try_from(level.clamp(0, 9)).unwrap_or(1);
        // mtime 0 and OS "unknown": nothing about the host or the time of the build.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        let pool = if threads > 1 {
            Some(Pool::new(threads, level)?)
        } else {
            None
        };
        Ok(ParGzWriter {
            out,
            level,
            block: Vec::with_capacity(GZIP_BLOCK),
            crc: crc32fast::Hasher::new(),
            total: 0,
            pool,
            pending: VecDeque::new(),
            max_pending: threads * 2,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK));
        let Some(pool) = &self.pool else {
            let z = deflate_block(&data, self.level, last)?;
            return self.out.write_all(&z);
        };
        let (tx, rx) = sync_channel(1);
        let jobs = pool
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip workers stopped"))?;
        jobs.send((data, last, tx))
            .map_err(|_| io::Error::other("gzip workers stopped"))?;
        self.pending.push_back(rx);
        // Bounded: at most 2 blocks per thread in flight, so memory stays a few MiB per core.
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let z = rx
                .recv()
                .map_err(|_| io::Error::other("gzip worker died"))??;
            self.out.write_all(&z)?;
        }
        Ok(())
    }

    /// Compresses what is buffered, writes the trailer, and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        // ISIZE is the length modulo 2^32, as RFC 1952 defines it.
        self.out
            .write_all(&((self.total & 0xffff_ffff) as u32).to_le_bytes())?;
        self.out.flush()?;
        let ParGzWriter { out, .. } = self;
        Ok(out)
    }
}

impl<W: Write> Write for ParGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
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

/// The compressor chosen for a layer, writing into `W`.
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(ParGzWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// Worker threads to use when the caller says 0: every core.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<W: Write> Encoder<W> {
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
            Compression::None => Encoder::None(out),
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
                Encoder::Zstd(z)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
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
        w.finish().unwrap()
    }

    #[test]
    fn parallel_gzip_is_one_member_and_thread_count_free() {
        for len in [0, 1, GZIP_BLOCK, GZIP_BLOCK + 1, 3 * GZIP_BLOCK + 12345] {
            let data = sample(len);
            let one = gzip(&data, 1);
            let four = gzip(&data, 4);
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
            e.finish().unwrap()
        };
        let (a, b) = (z(1), z(3));
        assert_eq!(a, b);
        assert_eq!(zstd::decode_all(&a[..]).unwrap(), data);
    }
}
