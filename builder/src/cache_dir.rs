//! The cache directory (`--cache-dir`, else [`crate::cache::default_dir`]): kiln's state on the
//! machine, shared by every build and `kiln warm` that names it, and the one place its layout is
//! written down.
//!
//! ```text
//! <cache_dir>/                      mode 0700
//!   blobs/sha256/<hex>              blobs by digest: layers, configs, manifests, indexes
//!   blobs/tmp/                      blobs being written
//!   keys/<key hex>.json             the local step cache: a step's layer blob and history
//!   images/<sha256 of ref>.json     what a warmed reference resolved to, per platform
//!   images/<sha256 of ref>.lock     taken while that file is rewritten
//!   layers/<diff_id hex>/           a layer's files in overlay form (an overlay lower)
//!   locks/<diff_id hex>             taken while that layer is extracted
//!   index/<diff_id hex>.jsonl.gz    a layer's metadata index
//!   tmp/                            scratch: steps' directories, extractions, overlay probes
//!   mounts/<sha256 of id>/          `RUN --mount=type=cache` directories, kept between builds
//! ```
//!
//! Who writes what: builds and `kiln warm` fill `blobs/` (the [`BlobStore`]); `kiln warm` writes
//! `images/` ([`crate::cache::warm()`]); builds write `keys/` ([`crate::cache::LocalCache`]), the
//! extracted layers with their locks and indexes ([`crate::snapshot::ExtractedLayers`]), the
//! scratch under `tmp/` ([`crate::snapshot::step_dirs`]), and `mounts/` (RUN steps).
//!
//! Many kiln processes may use one directory at once (pods sharing a volume, parallel CI jobs),
//! and any may be killed at any point, so nothing is ever seen half-written: files and layer
//! directories are made under a temporary name in the same directory tree and renamed into
//! place, and where two writers would do the same work (extracting a layer, rewriting an
//! `images/` file) a `flock` makes the second wait and then find the first's result. `tmp/`
//! is on the same filesystem as `layers/`, so a finished step's upper directory becomes an
//! extracted layer by a rename.
//!
//! The directory is private: extracted layers and step directories keep setuid files, file
//! capabilities and device nodes from images and RUN steps, so no other local user may reach
//! anything under it. Mode 0700 on the directory itself closes the whole tree, whatever the
//! modes inside (which must stay the image's).

use crate::blob::{BlobError, BlobStore};
use crate::path_io::{IoAt, PathIo};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The cache directory's mode.
pub const MODE: u32 = 0o700;

/// A cache directory, opened: the paths of its parts.
#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
    /// The mode it had when it was open to other users, before [`CacheDir::open`] closed it.
    was: Option<u32>,
}

impl CacheDir {
    /// Opens the cache directory at `root`: creates it (with missing parents) mode 0700, or
    /// tightens an existing one other users could enter ([`CacheDir::tightened`] says so).
    /// Its parts are made by whoever first writes them.
    pub fn open(root: impl Into<PathBuf>) -> Result<CacheDir, PathIo> {
        let root = root.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(MODE)
            .create(&root)
            .at(&root)?;
        let mode = std::fs::metadata(&root).at(&root)?.permissions().mode() & 0o7777;
        let was = (mode & 0o077 != 0).then_some(mode);
        if was.is_some() {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(MODE)).at(&root)?;
        }
        Ok(CacheDir { root, was })
    }

    /// A note for the log when opening had to close the directory to other users.
    pub fn tightened(&self) -> Option<String> {
        self.was.map(|mode| {
            format!(
                "cache directory {} was mode {mode:04o}, now {MODE:04o}: it holds extracted \
                 layers other users must not reach",
                self.root.display()
            )
        })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `blobs/`: the blob store's root.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Opens (creating) the blob store in `blobs/`.
    pub fn blob_store(&self) -> Result<BlobStore, BlobError> {
        BlobStore::open(self.blobs())
    }

    /// `keys/`: the local step cache's entries.
    pub fn step_keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// `images/`: what warmed references resolved to.
    pub fn warmed_images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `layers/`: extracted layers, one directory per diff_id.
    pub fn extracted_layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// `locks/`: one lock file per diff_id, held while that layer is extracted.
    pub fn extraction_locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// `index/`: layer metadata indexes, one file per diff_id.
    pub fn layer_indexes(&self) -> PathBuf {
        self.root.join("index")
    }

    /// `tmp/`: scratch space on the same filesystem as `layers/`.
    pub fn scratch(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `mounts/`: RUN cache mounts, one directory per mount id.
    pub fn run_mounts(&self) -> PathBuf {
        self.root.join("mounts")
    }
}

/// Opens (creating) the lock file `path` and holds an exclusive `flock` on it until the file is
/// dropped: how two kiln processes on one cache directory take turns on one part of it.
pub fn lock(path: &Path) -> Result<std::fs::File, PathIo> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).at(path)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE_DOC: &str = include_str!("cache_dir.rs");

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Other kiln versions share the directory: renaming a part strands what they wrote.
    #[test]
    fn layout_is_the_documented_one() {
        let t = tempfile::tempdir().unwrap();
        let d = CacheDir::open(t.path().join("kiln")).unwrap();
        let root = t.path().join("kiln");
        assert_eq!(d.path(), root);
        let parts = [
            (d.blobs(), "blobs"),
            (d.step_keys(), "keys"),
            (d.warmed_images(), "images"),
            (d.extracted_layers(), "layers"),
            (d.extraction_locks(), "locks"),
            (d.layer_indexes(), "index"),
            (d.scratch(), "tmp"),
            (d.run_mounts(), "mounts"),
        ];
        for (got, name) in parts {
            assert_eq!(got, root.join(name));
            assert!(
                MODULE_DOC.contains(&format!("//!   {name}/")),
                "{name}/ is not in the module doc"
            );
        }
        let store = d.blob_store().unwrap();
        let digest = crate::blob::Digest::of(b"x");
        assert_eq!(
            store.path(&digest),
            root.join("blobs/sha256").join(digest.hex())
        );
        // Opening makes only the directory: its parts appear when written.
        let made: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(made, ["blobs"]);
    }

    #[test]
    fn created_private_and_loose_ones_tightened_once() {
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("a/kiln");
        assert_eq!(CacheDir::open(&new).unwrap().tightened(), None);
        assert_eq!(mode(&new), 0o700);
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
        let note = CacheDir::open(&new).unwrap().tightened().expect("a note");
        assert!(note.contains("was mode 0755, now 0700"), "{note}");
        assert_eq!(mode(&new), 0o700);
        assert_eq!(CacheDir::open(&new).unwrap().tightened(), None);
    }
}
