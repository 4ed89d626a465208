//! The machine's extracted layers: each layer once, in overlay form so it serves as an overlay
//! lower directory as it is, with its metadata index beside it ([`crate::layer::LayerIndex`]).
//! Where they live, and how concurrent kiln processes share them, is [`crate::cache_dir`]'s.
//!
//! The first process to need a layer takes its lock, extracts into scratch space and renames
//! the result into place; the others wait on the lock and find it there, so a layer directory
//! is always complete. An index is written whenever a layer is extracted or written here (or
//! fetched from a cache repository): a temporary file renamed into place, so a reader never
//! sees half of one and two processes writing the same index both leave it whole.

use super::dirs::Scratch;
use super::error::SnapshotError;
use crate::blob::Digest;
use crate::cache_dir::CacheDir;
use crate::layer::{self, ExtractOptions, LayerIndex};
use crate::path_io::IoAt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Extracted layers shared by all builds on the machine.
#[derive(Debug, Clone)]
pub struct ExtractedLayers {
    dir: CacheDir,
    /// The most bytes one layer may expand to when extracted (`--max-layer-size`).
    max_layer_bytes: u64,
}

/// What a layer blob's first bytes must be, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    Tar,
    Gzip,
    Zstd,
}

fn packing(media_type: &str) -> Option<Packing> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Packing::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Packing::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Packing::Zstd),
        _ => None,
    }
}

fn sniff(head: &[u8]) -> Packing {
    if head.starts_with(&[0x1f, 0x8b]) {
        Packing::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Packing::Zstd
    } else {
        Packing::Tar
    }
}

impl ExtractedLayers {
    /// Opens (creating their directories) the extracted layers of `dir`.
    pub fn open(dir: &CacheDir) -> Result<ExtractedLayers, SnapshotError> {
        for d in [
            dir.extracted_layers(),
            dir.scratch(),
            dir.extraction_locks(),
            dir.layer_indexes(),
        ] {
            std::fs::create_dir_all(&d).at(&d)?;
        }
        Ok(ExtractedLayers {
            dir: dir.clone(),
            max_layer_bytes: layer::DEFAULT_MAX_LAYER_BYTES,
        })
    }

    /// Extracting a layer fails once it expands past `bytes` (its uncompressed stream, or
    /// what it writes into files).
    pub fn with_max_layer_bytes(mut self, bytes: u64) -> Self {
        self.max_layer_bytes = bytes;
        self
    }

    /// Where the index of `diff_id` lives.
    pub fn index_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir
            .layer_indexes()
            .join(format!("{}.jsonl.gz", diff_id.hex()))
    }

    /// The index of `diff_id`, if the cache holds a readable one (a damaged one counts as
    /// missing: it is made again the next time the layer passes by).
    pub fn index(&self, diff_id: &Digest) -> Option<LayerIndex> {
        let f = File::open(self.index_path(diff_id)).ok()?;
        LayerIndex::decode(BufReader::new(f), diff_id).ok()
    }

    /// Records the index of `diff_id` when there is one, as a convenience: a layer with none
    /// (more paths than an index holds) or one that cannot be written only means a later step
    /// or build extracts the layer, so the write is best effort.
    pub fn keep_index(&self, diff_id: &Digest, index: Option<&LayerIndex>) {
        if let Some(index) = index {
            let _ = self.put_index(diff_id, index);
        }
    }

    /// Records the index of `diff_id`.
    pub fn put_index(&self, diff_id: &Digest, index: &LayerIndex) -> Result<(), SnapshotError> {
        let dest = self.index_path(diff_id);
        let dir = self.dir.layer_indexes();
        let tmp = tempfile::NamedTempFile::new_in(&dir).at(&dir)?;
        let tmp = index.encode(diff_id, tmp).at(&dest)?;
        tmp.persist(&dest).at(&dest)?;
        Ok(())
    }

    fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.extracted_layers().join(diff_id.hex())
    }

    /// The extracted layer `diff_id`, if the cache holds it.
    pub fn get(&self, diff_id: &Digest) -> Option<PathBuf> {
        let p = self.layer_path(diff_id);
        p.is_dir().then_some(p)
    }

    /// Holds the per-diff_id lock until dropped (closing the file releases it).
    fn lock(&self, diff_id: &Digest) -> Result<File, SnapshotError> {
        let p = self.dir.extraction_locks().join(diff_id.hex());
        Ok(crate::cache_dir::lock(&p)?)
    }

    /// Extracts a compressed layer blob (the media type tells gzip, zstd or none), checking
    /// its diff_id; returns the directory. Nothing is read when the cache already holds it.
    pub fn extract(
        &self,
        diff_id: &Digest,
        media_type: &str,
        blob: impl Read + Send,
    ) -> Result<PathBuf, SnapshotError> {
        let want =
            packing(media_type).ok_or_else(|| SnapshotError::MediaType(media_type.into()))?;
        if let Some(p) = self.get(diff_id) {
            return Ok(p);
        }
        let _lock = self.lock(diff_id)?;
        if let Some(p) = self.get(diff_id) {
            return Ok(p);
        }
        let mut blob = BufReader::with_capacity(64 * 1024, blob);
        let head = blob.fill_buf().map_err(crate::layer::LayerError::Stream)?;
        let got = sniff(head);
        if got != want {
            return Err(SnapshotError::MediaType(format!(
                "{media_type}, but the blob is {got:?}"
            )));
        }
        let tmp = Scratch::new(&self.dir.scratch(), "x-")?;
        let info = layer::extract(
            blob,
            &tmp.0,
            &ExtractOptions {
                overlay_whiteouts: true,
                ignore_owners: !layer::owners::settable(),
                max_bytes: Some(self.max_layer_bytes),
            },
        )
        .map_err(|e| match e {
            // Which layer is too large is what the user needs to know.
            e @ layer::LayerError::TooLarge { .. } => SnapshotError::InLayer {
                diff_id: diff_id.clone(),
                source: e,
            },
            e => e.into(),
        })?;
        if info.diff_id != *diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                expected: diff_id.clone(),
                actual: info.diff_id,
            });
        }
        self.keep_index(diff_id, info.index.as_ref());
        // The scratch directory was made private; a layer's root is an ordinary directory.
        std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).at(&tmp.0)?;
        self.install(tmp.keep(), diff_id)
    }

    /// Moves a finished step's upper directory (overlay whiteouts, as the kernel leaves it) in
    /// as the extracted form of `diff_id`, so later steps use it as a lower without unpacking.
    /// When the cache already holds `diff_id`, `upper` is left where it is.
    pub fn adopt(&self, diff_id: &Digest, upper: &Path) -> Result<PathBuf, SnapshotError> {
        if let Some(p) = self.get(diff_id) {
            return Ok(p);
        }
        let _lock = self.lock(diff_id)?;
        if let Some(p) = self.get(diff_id) {
            return Ok(p);
        }
        self.install(upper.to_path_buf(), diff_id)
    }

    /// Renames a complete directory into place (the caller holds the lock).
    fn install(&self, dir: PathBuf, diff_id: &Digest) -> Result<PathBuf, SnapshotError> {
        let dest = self.layer_path(diff_id);
        std::fs::rename(&dir, &dest).at(&dir)?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            packing(crate::layer::MEDIA_TYPE_TAR_ZSTD),
            Some(Packing::Zstd)
        );
        assert_eq!(
            packing("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Packing::Gzip)
        );
        assert_eq!(packing("application/vnd.oci.image.config.v1+json"), None);
        assert_eq!(sniff(b"\x1f\x8b\x08"), Packing::Gzip);
        assert_eq!(sniff(b"etc/\0\0"), Packing::Tar);
    }

    #[test]
    fn wrong_media_type_is_refused_before_reading() {
        let t = tempfile::tempdir().unwrap();
        let c = ExtractedLayers::open(&CacheDir::open(t.path()).unwrap()).unwrap();
        let d = Digest::of(b"x");
        let e = c
            .extract(&d, "application/json", &b"whatever"[..])
            .unwrap_err();
        assert!(matches!(e, SnapshotError::MediaType(_)), "{e}");
        let e = c
            .extract(&d, crate::layer::MEDIA_TYPE_TAR_GZIP, &b"not gzip"[..])
            .unwrap_err();
        assert!(matches!(e, SnapshotError::MediaType(_)), "{e}");
        assert!(c.get(&d).is_none());
    }

    #[test]
    fn layers_and_indexes_live_where_the_cache_directory_says() {
        let t = tempfile::tempdir().unwrap();
        let c = ExtractedLayers::open(&CacheDir::open(t.path()).unwrap()).unwrap();
        let d = Digest::of(b"x");
        assert_eq!(c.layer_path(&d), t.path().join("layers").join(d.hex()));
        assert_eq!(
            c.index_path(&d),
            t.path().join(format!("index/{}.jsonl.gz", d.hex()))
        );
        assert!(t.path().join("locks").is_dir() && t.path().join("tmp").is_dir());
    }
}
