//! A container's output as the kubelet keeps it: timestamped lines, followable while it runs.

use std::sync::Mutex;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

#[derive(Default)]
struct Inner {
    lines: Vec<(Timestamp, Bytes)>,
    partial: Vec<u8>,
    done: bool,
}

/// One container's log.
pub(crate) struct LogBuf {
    inner: Mutex<Inner>,
    /// Bumped on every new line and at the end, to wake followers.
    version: watch::Sender<u64>,
}

impl Default for LogBuf {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            version: watch::channel(0).0,
        }
    }
}

impl LogBuf {
    /// Appends output; complete lines become visible at once, a partial line waits for its end
    /// (as the CRI log writer does).
    pub fn push(&self, data: &[u8]) {
        let mut g = self.inner.lock().unwrap();
        g.partial.extend_from_slice(data);
        let mut added = false;
        while let Some(pos) = g.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = g.partial.drain(..=pos).collect();
            g.lines.push((Timestamp::now(), Bytes::from(line)));
            added = true;
        }
        drop(g);
        if added {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// The container ended: a partial last line is kept as is, and followers stop.
    pub fn finish(&self) {
        let mut g = self.inner.lock().unwrap();
        if !g.partial.is_empty() {
            let line = std::mem::take(&mut g.partial);
            g.lines.push((Timestamp::now(), Bytes::from(line)));
        }
        g.done = true;
        drop(g);
        self.version.send_modify(|v| *v += 1);
    }

    /// Lines from index `from` on, and whether the log is complete.
    pub fn read_from(&self, from: usize) -> (Vec<(Timestamp, Bytes)>, bool) {
        let g = self.inner.lock().unwrap();
        (g.lines.get(from..).unwrap_or_default().to_vec(), g.done)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Everything logged so far, as one string (for tests).
    pub fn text(&self) -> String {
        let g = self.inner.lock().unwrap();
        let mut s = String::new();
        for (_, l) in &g.lines {
            s.push_str(&String::from_utf8_lossy(l));
        }
        s
    }
}
