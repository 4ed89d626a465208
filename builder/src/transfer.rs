//! Counters of bytes moving through one kind of work (pulling, extracting, compressing or pushing
//! blobs), for whoever shows progress. The code doing the work only bumps atomics, once per
//! chunk: it knows nothing of terminals, and a counter nobody reads costs next to nothing.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One kind of work on blobs: how many were announced and finished, and their bytes.
#[derive(Debug, Default)]
pub struct Transfer {
    blobs: AtomicU64,
    blobs_done: AtomicU64,
    bytes: AtomicU64,
    bytes_done: AtomicU64,
    /// Blobs under way whose size is not known yet (a layer being written).
    sizeless: AtomicU64,
}

/// A reading of a [`Transfer`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferSnapshot {
    /// Blobs announced.
    pub blobs: u64,
    /// Blobs finished.
    pub blobs_done: u64,
    /// Bytes of the announced blobs whose size is known.
    pub bytes: u64,
    /// Bytes moved.
    pub bytes_done: u64,
    /// Whether a blob under way has no known size (so `bytes` is not the final total).
    pub open_ended: bool,
}

impl TransferSnapshot {
    /// Whether blobs are under way.
    pub fn active(&self) -> bool {
        self.blobs_done < self.blobs
    }
}

impl Transfer {
    /// A new set of counters, shared.
    pub fn new() -> Arc<Transfer> {
        Arc::new(Transfer::default())
    }

    /// Announces a blob of `size` bytes (`None`: unknown until it is finished) about to move.
    pub fn blob(self: &Arc<Self>, size: Option<u64>) -> BlobProgress {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        match size {
            Some(s) => self.bytes.fetch_add(s, Ordering::Relaxed),
            None => self.sizeless.fetch_add(1, Ordering::Relaxed),
        };
        BlobProgress {
            transfer: self.clone(),
            size,
            reached: AtomicU64::new(0),
            finished: AtomicBool::new(false),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> TransferSnapshot {
        // Finished counts first: a blob finishing between the reads shows as under way.
        let blobs_done = self.blobs_done.load(Ordering::Relaxed);
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        TransferSnapshot {
            blobs: self.blobs.load(Ordering::Relaxed).max(blobs_done),
            blobs_done,
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_done,
            open_ended: self.sizeless.load(Ordering::Relaxed) > 0,
        }
    }
}

/// One blob's share of a [`Transfer`]. Dropped unfinished (the work failed), it takes its blob
/// and bytes back out of the counters.
#[derive(Debug)]
pub struct BlobProgress {
    transfer: Arc<Transfer>,
    size: Option<u64>,
    reached: AtomicU64,
    finished: AtomicBool,
}

impl BlobProgress {
    /// The work has reached byte `position` of the blob. Positions only move forward: a retry
    /// that starts the blob over counts nothing until it passes where the last attempt got.
    pub fn at(&self, position: u64) {
        let position = match self.size {
            Some(s) => position.min(s),
            None => position,
        };
        let before = self.reached.fetch_max(position, Ordering::Relaxed);
        if position > before {
            self.transfer
                .bytes_done
                .fetch_add(position - before, Ordering::Relaxed);
        }
    }

    /// The blob is done: its remaining bytes count as moved (a blob the registry had already
    /// moves none, yet is as good as sent). Finishing twice counts once.
    pub fn finish(&self) {
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        let t = &self.transfer;
        let reached = self.reached.load(Ordering::Relaxed);
        match self.size {
            Some(s) => {
                t.bytes_done.fetch_add(s - reached, Ordering::Relaxed);
            }
            None => {
                t.bytes.fetch_add(reached, Ordering::Relaxed);
                t.sizeless.fetch_sub(1, Ordering::Relaxed);
            }
        }
        t.blobs_done.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for BlobProgress {
    fn drop(&mut self) {
        if *self.finished.get_mut() {
            return;
        }
        let t = &self.transfer;
        t.blobs.fetch_sub(1, Ordering::Relaxed);
        match self.size {
            Some(s) => t.bytes.fetch_sub(s, Ordering::Relaxed),
            None => t.sizeless.fetch_sub(1, Ordering::Relaxed),
        };
        t.bytes_done
            .fetch_sub(self.reached.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A reader or writer that reports how far it got to a [`BlobProgress`].
pub struct Counted<T> {
    inner: T,
    progress: Option<BlobProgress>,
    position: u64,
}

impl<T> Counted<T> {
    /// `inner`, reporting to `progress` when there is one.
    pub fn new(inner: T, progress: Option<BlobProgress>) -> Self {
        Counted {
            inner,
            progress,
            position: 0,
        }
    }

    fn advance(&mut self, n: usize) {
        self.position += n as u64;
        if let Some(p) = &self.progress {
            p.at(self.position);
        }
    }

    /// Bytes read or written so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The inner reader or writer, the blob counted as finished.
    pub fn finish(self) -> T {
        if let Some(p) = self.progress {
            p.finish();
        }
        self.inner
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.advance(n);
        Ok(n)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.advance(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_blob_counts_its_bytes_once_and_finishing_fills_the_rest() {
        let t = Transfer::new();
        let a = t.blob(Some(100));
        let b = t.blob(Some(50));
        a.at(60);
        a.at(20); // a retry from the start
        a.at(70);
        assert_eq!(
            t.snapshot(),
            TransferSnapshot {
                blobs: 2,
                blobs_done: 0,
                bytes: 150,
                bytes_done: 70,
                open_ended: false
            }
        );
        a.finish();
        // A blob the registry had: no bytes moved, all counted.
        b.finish();
        let s = t.snapshot();
        assert_eq!((s.blobs_done, s.bytes_done, s.bytes), (2, 150, 150));
        assert!(!s.active());
    }

    #[test]
    fn an_unsized_blob_sets_its_total_when_done_and_a_dropped_one_is_taken_back() {
        let t = Transfer::new();
        let mut w = Counted::new(Vec::new(), Some(t.blob(None)));
        w.write_all(&[0; 300]).unwrap();
        let s = t.snapshot();
        assert!(s.open_ended && s.active());
        assert_eq!(s.bytes_done, 300);
        assert_eq!(w.finish().len(), 300);
        let s = t.snapshot();
        assert_eq!((s.bytes, s.bytes_done, s.open_ended), (300, 300, false));
        let failed = t.blob(Some(1000));
        failed.at(400);
        drop(failed);
        let s = t.snapshot();
        assert_eq!(
            (s.blobs, s.blobs_done, s.bytes, s.bytes_done),
            (1, 1, 300, 300)
        );
    }
}
