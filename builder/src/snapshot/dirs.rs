//! Scratch directories in the cache directory's scratch space ([`crate::cache_dir`]): a step's
//! upper and work directories, and extractions in progress. Same filesystem as the extracted
//! layers, so finishing is a rename.

use super::error::SnapshotError;
use crate::cache_dir::CacheDir;
use crate::path_io::IoAt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Scratch directories for one step, removed on drop (an adopted upper is gone from here by
/// then, so only the work directory goes).
#[derive(Debug)]
pub struct StepDirs {
    /// The overlay upper directory: the step's changes, later the layer.
    pub upper: PathBuf,
    /// The overlay work directory (same filesystem as `upper`, empty).
    pub work: PathBuf,
    base: Scratch,
}

impl StepDirs {
    /// The directory holding `upper` and `work`.
    pub fn base(&self) -> &Path {
        &self.base.0
    }
}

/// Makes a fresh upper and work directory for a step.
pub fn step_dirs(dir: &CacheDir) -> Result<StepDirs, SnapshotError> {
    let base = Scratch::new(&dir.scratch(), "step-")?;
    // Short names: the overlay option string is limited to a page.
    let upper = base.0.join("u");
    let work = base.0.join("w");
    for d in [&upper, &work] {
        std::fs::create_dir(d).at(d)?;
    }
    // The upper's root becomes the merged root's metadata and the layer's root.
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755)).at(&upper)?;
    Ok(StepDirs { upper, work, base })
}

/// A directory removed (with everything in it) on drop unless kept.
#[derive(Debug)]
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(parent: &Path, prefix: &str) -> Result<Scratch, SnapshotError> {
        let make = || tempfile::Builder::new().prefix(prefix).tempdir_in(parent);
        let d = match make() {
            // Scratch space is made by its first user: a probe or a step may come before
            // anything opens the extracted layers.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(parent).at(parent)?;
                make()
            }
            made => made,
        }
        .at(parent)?;
        Ok(Scratch(d.keep()))
    }

    /// Gives up ownership: the directory stays.
    pub(crate) fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = remove_tree(&self.0);
        }
    }
}

/// Removes a tree even where its modes forbid it (read-only directories from a layer, the
/// overlay's `work/work` with mode 000 when not root).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn open_up(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                open_up(&e.path());
            }
        }
    }
}
