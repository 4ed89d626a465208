//! The trace as GitLab will store it: masked, limited, checksummed.

use super::mask::Masker;
use std::sync::{Arc, Mutex};

const ANSI_BOLD_YELLOW: &str = "\x1b[33;1m";
const ANSI_RESET: &str = "\x1b[0;m";

/// The notice gitlab-runner appends when a trace reaches `output_limit`.
pub fn limit_notice(limit: usize) -> String {
    format!(
        "\n{ANSI_BOLD_YELLOW}Job's log exceeded limit of {limit} bytes.\n\
         Job execution will continue but no more output will be collected.{ANSI_RESET}\n"
    )
}

/// The trace of one job (not shared: see [`Trace`]).
#[derive(Debug)]
pub struct TraceBuffer {
    masker: Masker,
    data: Vec<u8>,
    crc: crc32fast::Hasher,
    limit: usize,
    /// Bytes written, the notice included (gitlab-runner counts it too).
    written: usize,
    limited: bool,
}

impl TraceBuffer {
    /// A buffer hiding `secrets` and keeping at most `limit` bytes of output.
    pub fn new<I, S>(secrets: I, limit: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Self {
            masker: Masker::new(secrets),
            data: Vec::new(),
            crc: crc32fast::Hasher::new(),
            limit,
            written: 0,
            limited: false,
        }
    }

    /// Appends job output.
    pub fn write(&mut self, bytes: &[u8]) {
        let out = self.masker.write(bytes);
        self.emit(&out);
    }

    /// Releases what the masker held back; call when the job's output has ended.
    pub fn finish(&mut self) {
        let out = self.masker.finish();
        self.emit(&out);
    }

    fn append(&mut self, b: &[u8]) {
        self.data.extend_from_slice(b);
        self.crc.update(b);
        self.written += b.len();
    }

    fn emit(&mut self, p: &[u8]) {
        if p.is_empty() || self.limited {
            return;
        }
        let capacity = self.limit.saturating_sub(self.written);
        if p.len() >= capacity {
            let cut = utf8_safe_prefix(&p[..capacity]);
            self.append(cut);
            let notice = limit_notice(self.limit);
            self.append(notice.as_bytes());
            self.limited = true;
        } else {
            self.append(p);
        }
    }

    /// Bytes in the trace.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `max` bytes from `from`.
    pub fn slice(&self, from: usize, max: usize) -> Vec<u8> {
        let from = from.min(self.data.len());
        let to = from.saturating_add(max).min(self.data.len());
        self.data[from..to].to_vec()
    }

    /// The whole trace.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// `crc32:<hex>` of the whole trace (CRC-32/IEEE, as gitlab-runner).
    pub fn checksum(&self) -> String {
        format!("crc32:{:08x}", self.crc.clone().finalize())
    }

    /// True once the output limit was reached.
    pub fn limited(&self) -> bool {
        self.limited
    }
}

/// Cuts an incomplete UTF-8 sequence off the end, so the trace stays valid text.
fn utf8_safe_prefix(p: &[u8]) -> &[u8] {
    match std::str::from_utf8(p) {
        Err(e) if e.error_len().is_none() => &p[..e.valid_up_to()],
        _ => p,
    }
}

/// A shared handle on a job's [`TraceBuffer`].
#[derive(Debug, Clone)]
pub struct Trace(Arc<Mutex<TraceBuffer>>);

impl Trace {
    /// A trace hiding `secrets`, limited to `limit` bytes.
    pub fn new<I, S>(secrets: I, limit: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Self(Arc::new(Mutex::new(TraceBuffer::new(secrets, limit))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TraceBuffer> {
        // A panic while holding the lock leaves a consistent buffer: keep going.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends job output.
    pub fn write(&self, bytes: &[u8]) {
        self.lock().write(bytes);
    }

    /// Appends a line of the runner's own (a newline is added).
    pub fn line(&self, text: &str) {
        let mut l = self.lock();
        l.write(text.as_bytes());
        l.write(b"\n");
    }

    /// See [`TraceBuffer::finish`].
    pub fn finish(&self) {
        self.lock().finish();
    }

    /// Bytes in the trace.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Up to `max` bytes from `from`.
    pub fn slice(&self, from: usize, max: usize) -> Vec<u8> {
        self.lock().slice(from, max)
    }

    /// A copy of the whole trace.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().bytes().to_vec()
    }

    /// `crc32:<hex>` and the size, for the final update.
    pub fn summary(&self) -> (String, u64) {
        let l = self.lock();
        (l.checksum(), l.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_crc32_ieee() {
        let mut b = TraceBuffer::new(Vec::<String>::new(), 1 << 20);
        b.write(b"123456789");
        // The CRC-32/IEEE check value.
        assert_eq!(b.checksum(), "crc32:cbf43926");
        let empty = TraceBuffer::new(Vec::<String>::new(), 10);
        assert_eq!(empty.checksum(), "crc32:00000000");
    }

    #[test]
    fn limit_cuts_and_appends_notice_once() {
        let mut b = TraceBuffer::new(Vec::<String>::new(), 10);
        for _ in 0..5 {
            b.write(b"This is the long message");
        }
        let text = String::from_utf8(b.bytes().to_vec()).unwrap();
        assert_eq!(text, format!("This is th{}", limit_notice(10)));
        assert!(text.contains("Job's log exceeded limit of 10 bytes."));
        assert!(text.contains("Job execution will continue but no more output will be collected."));
        assert!(b.limited());
        let mut crc = crc32fast::Hasher::new();
        crc.update(text.as_bytes());
        assert_eq!(b.checksum(), format!("crc32:{:08x}", crc.finalize()));
    }

    #[test]
    fn limit_does_not_split_utf8() {
        let mut b = TraceBuffer::new(Vec::<String>::new(), 4);
        b.write("abcé".as_bytes()); // é is 2 bytes: 5 in all
        assert!(b.bytes().starts_with(b"abc\n"));
    }

    #[test]
    fn masking_happens_before_the_limit() {
        let mut b = TraceBuffer::new(["s3cr3tvalue"], 1 << 20);
        b.write(b"a s3cr3t");
        b.write(b"value b");
        b.finish();
        assert_eq!(b.bytes(), b"a [MASKED] b");
    }
}
