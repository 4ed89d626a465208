//! Streaming secret masking.
//!
//! A secret may arrive split over two writes (two `read`s of a pipe), so the masker
//! holds back the end of its input while it could still be the start of a secret, and
//! releases it when the next write settles the question or the trace is finished.

/// What a secret is replaced with, as GitLab does.
pub const MASKED: &[u8] = b"[MASKED]";

/// Replaces secrets in a byte stream.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl Masker {
    /// A masker for `secrets` (empty ones are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        Self {
            secrets,
            pending: Vec::new(),
        }
    }

    /// Feeds `input`; returns what is safe to emit now.
    pub fn write(&mut self, input: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(input);
        self.process(false)
    }

    /// Releases everything held back (end of the trace).
    pub fn finish(&mut self) -> Vec<u8> {
        self.process(true)
    }

    /// Bytes held back waiting for more input.
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    fn process(&mut self, last: bool) -> Vec<u8> {
        let p = &self.pending;
        let mut out = Vec::with_capacity(p.len());
        let mut i = 0;
        'scan: while i < p.len() {
            let rest = &p[i..];
            if !last
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                // Could still become a (longer) secret: wait for more bytes.
                break 'scan;
            }
            for s in &self.secrets {
                if rest.starts_with(s) {
                    out.extend_from_slice(MASKED);
                    i += s.len();
                    continue 'scan;
                }
            }
            out.push(p[i]);
            i += 1;
        }
        self.pending.drain(..i);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], writes: &[&str]) -> String {
        let mut m = Masker::new(secrets);
        let mut out = Vec::new();
        for w in writes {
            out.extend(m.write(w.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masks_whole_secret() {
        assert_eq!(run(&["hunter22"], &["pw=hunter22!"]), "pw=[MASKED]!");
    }

    #[test]
    fn masks_secret_split_across_writes() {
        assert_eq!(
            run(&["hunter22"], &["pw=hun", "ter", "22 done"]),
            "pw=[MASKED] done"
        );
        // Every split point of the secret.
        for k in 1..8 {
            let s = "x hunter22 y";
            let (a, b) = s.split_at(2 + k);
            assert_eq!(run(&["hunter22"], &[a, b]), "x [MASKED] y", "split {k}");
        }
    }

    #[test]
    fn releases_non_secret_prefix() {
        let mut m = Masker::new(["hunter22"]);
        assert_eq!(m.write(b"abc hun"), b"abc ");
        assert_eq!(m.held(), 3);
        assert_eq!(m.write(b"gry"), b"hungry");
        assert_eq!(m.held(), 0);
        assert_eq!(m.write(b"hunt"), b"");
        assert_eq!(m.finish(), b"hunt");
    }

    #[test]
    fn longest_secret_wins_and_overlaps() {
        assert_eq!(
            run(&["abc", "abcdef"], &["xabcdefx abcx"]),
            "x[MASKED]x [MASKED]x"
        );
        assert_eq!(run(&["abc", "abcdef"], &["xabcde"]), "x[MASKED]de");
        assert_eq!(run(&["aab"], &["aaab"]), "a[MASKED]");
        assert_eq!(run(&[], &["plain"]), "plain");
        assert_eq!(run(&[""], &["plain"]), "plain");
    }
}
