//! A content-addressed directory of blobs (`<root>/sha256/<hex>`), shared by concurrent builds:
//! a blob is written to a temporary file while its digest is computed, then renamed into place,
//! so a reader never sees half a blob.

use super::digest::{Digest, DigestWriter};
use crate::path_io::IoAt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

/// Reading or writing the blob store failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// The bytes do not have the digest they were announced with.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest announced (by a manifest, a registry).
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A blob the store does not hold.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
}

/// The blob store at a directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        for d in [root.join("sha256"), root.join("tmp")] {
            std::fs::create_dir_all(&d).at(&d)?;
        }
        Ok(BlobStore { root })
    }

    /// Where the blob `d` lives (whether or not it is there).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("sha256").join(d.hex())
    }

    /// Whether the store holds `d`.
    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Whether the store holds `d` whole: `size` bytes, as its descriptor says (a blob cut short
    /// by a killed writer never reaches its name, but a descriptor may lie).
    pub fn has(&self, d: &Digest, size: u64) -> bool {
        self.size(d) == Some(size)
    }

    /// The blob's size, if the store holds it.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(d)).ok().map(|m| m.len())
    }

    /// Opens a stored blob for reading.
    pub fn read(&self, d: &Digest) -> Result<File, BlobError> {
        let p = self.path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BlobError::Missing(d.clone()),
            _ => crate::path_io::PathIo::new(&p, e).into(),
        })
    }

    /// A writer for a new blob; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter, BlobError> {
        let tmp_dir = self.root.join("tmp");
        let file = tempfile::NamedTempFile::new_in(&tmp_dir).at(&tmp_dir)?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: DigestWriter::new(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Stores `bytes` (configs, manifests: small by nature). Bytes already stored are not
    /// written (nor synced) again: builds keep every manifest they resolve.
    pub fn put(&self, bytes: &[u8]) -> Result<(Digest, u64), BlobError> {
        let d = Digest::of(bytes);
        if self.contains(&d) {
            return Ok((d, bytes.len() as u64));
        }
        let mut w = self.writer()?;
        w.write_all(bytes).at(&self.root)?;
        w.commit()
    }
}

/// A blob being written; hashes while it writes.
pub struct BlobWriter {
    store: BlobStore,
    inner: DigestWriter<BufWriter<tempfile::NamedTempFile>>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Moves the blob into place under its digest.
    pub fn commit(self) -> Result<(Digest, u64), BlobError> {
        self.finish(None)
    }

    /// Moves the blob into place if its digest is `expected`; otherwise drops it.
    pub fn commit_expecting(self, expected: &Digest) -> Result<(Digest, u64), BlobError> {
        self.finish(Some(expected))
    }

    fn finish(self, expected: Option<&Digest>) -> Result<(Digest, u64), BlobError> {
        let tmp_dir = self.store.root.join("tmp");
        let (digest, size, buf) = self.inner.finish();
        let file = buf.into_inner().at(&tmp_dir)?;
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(BlobError::DigestMismatch {
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        file.as_file().sync_all().at(&tmp_dir)?;
        let dest = self.store.path(&digest);
        // Another build may have stored the same blob meanwhile: same bytes, so either copy wins.
        file.persist(&dest).at(&dest)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn put_read_and_nothing_visible_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"layer bytes").unwrap();
        let d = Digest::of(b"layer bytes");
        assert!(!store.contains(&d));
        assert_eq!(w.commit().unwrap(), (d.clone(), 11));
        let mut s = String::new();
        store.read(&d).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "layer bytes");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_wrong_digest_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"tampered").unwrap();
        let want = Digest::of(b"original");
        match w.commit_expecting(&want) {
            Err(BlobError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, want);
                assert_eq!(actual, Digest::of(b"tampered"));
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.contains(&Digest::of(b"tampered")));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert!(matches!(store.read(&want), Err(BlobError::Missing(_))));
    }
}
