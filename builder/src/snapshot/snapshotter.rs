//! The seam between a build's steps and how their filesystems are made: [`Snapshotter`] has
//! the two operations of a BuildKit or containerd snapshotter, [`prepare`](Snapshotter::prepare)
//! (a writable root over the parent) and [`commit`](Snapshotter::commit) (what the step
//! changed, as a layer), and holds the [`Mode`] the build chose once, so no step asks it.

use super::dirs::{step_dirs, StepDirs};
use super::error::SnapshotError;
use super::treediff::{diff, materialise, record, Manifest};
use super::{commit_as, ExtractedLayers, Mode, RootFs, Whiteouts};
use crate::blob::BlobStore;
use crate::cache_dir::CacheDir;
use crate::layer::OverlayView;
use crate::layer::{LayerInfo, LayerOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work of a snapshotter that a build reports as a phase of its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Copying the parent's tree and recording it (tree-diff's extraction).
    Extract,
    /// Finding the step's changes and writing them as a tar stream.
    Diff,
    /// The time the tar writer waited on the compressor.
    Compress,
}

/// Where a snapshotter reports how long its work took (a build's step clock).
pub trait Timer {
    /// `work` took `took` of the window from `start` to `end`.
    fn add(&self, work: Work, took: Duration, start: Instant, end: Instant);
}

/// Untimed, for callers that keep no clock.
impl Timer for () {
    fn add(&self, _: Work, _: Duration, _: Instant, _: Instant) {}
}

fn time<T>(timer: &dyn Timer, work: Work, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let end = Instant::now();
    timer.add(work, end - start, start, end);
    out
}

/// Runs `write` (a layer write with `opts`), reporting to `timer` the time its tar writer was
/// blocked on the compressor as [`Work::Compress`] and the rest as [`Work::Diff`]: writing a
/// layer is one streaming pass, so its time can only be split by who held it up.
pub(crate) fn write_timed<T>(
    opts: &LayerOptions,
    timer: &dyn Timer,
    write: impl FnOnce(&LayerOptions) -> T,
) -> T {
    let mut opts = opts.clone();
    let compress = Arc::new(AtomicU64::new(0));
    opts.compress_nanos = Some(compress.clone());
    let start = Instant::now();
    let out = write(&opts);
    let end = Instant::now();
    let whole = end - start;
    let compress = Duration::from_nanos(compress.load(Ordering::Relaxed)).min(whole);
    timer.add(Work::Diff, whole - compress, start, end);
    timer.add(Work::Compress, compress, start, end);
    out
}

/// Makes steps' writable roots and turns what they changed into layers, by overlay or, where
/// overlay cannot be mounted, by copying and comparing trees (see the [module](super) doc).
#[derive(Debug, Clone)]
pub struct Snapshotter {
    mode: Mode,
    dir: CacheDir,
    extracted: ExtractedLayers,
    store: BlobStore,
}

/// A step's writable root between [`Snapshotter::prepare`] and [`Snapshotter::commit`]. Its
/// scratch directories go when it is dropped (an upper already adopted is not there any more).
#[derive(Debug)]
pub struct Active {
    dirs: StepDirs,
    /// Without overlay: the materialised root and what it held before the step.
    tree: Option<(PathBuf, Manifest)>,
    /// Under overlay: the parent's layers, top first (what an opaque directory hides).
    lowers: Vec<PathBuf>,
}

impl Active {
    /// The upper directory: what a step that writes its changes itself (COPY) writes into.
    /// Under overlay the mount fills it; without, [`Snapshotter::commit`] does.
    pub fn upper(&self) -> &Path {
        &self.dirs.upper
    }
}

impl Snapshotter {
    /// Snapshots by `mode` (what [`super::probe`] found, or tree-diff where the build rules
    /// overlay out), with step directories in `dir`'s scratch space, adopted layers and their
    /// indexes in `extracted`, layers in `store`.
    pub fn new(mode: Mode, dir: CacheDir, extracted: ExtractedLayers, store: BlobStore) -> Self {
        Snapshotter {
            mode,
            dir,
            extracted,
            store,
        }
    }

    /// How steps get their filesystem.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Makes a step's writable root over its parent, whose extracted layers are `lowers`
    /// (top-most first), and returns what the sandbox mounts as the root with what
    /// [`commit`](Self::commit) needs. Without overlay the parent is copied to
    /// `<scratch>/rootfs` (which the caller removes) and recorded, timed as [`Work::Extract`].
    pub fn prepare(
        &self,
        lowers: Vec<PathBuf>,
        scratch: &Path,
        timer: &dyn Timer,
    ) -> Result<(RootFs, Active), SnapshotError> {
        let dirs = step_dirs(&self.dir)?;
        match self.mode {
            Mode::Overlay => {
                let rootfs = RootFs::Overlay {
                    lower: lowers.clone(),
                    upper: dirs.upper.clone(),
                    work: dirs.work.clone(),
                };
                let active = Active {
                    dirs,
                    tree: None,
                    lowers,
                };
                Ok((rootfs, active))
            }
            Mode::TreeDiff { .. } => {
                let root = scratch.join("rootfs");
                let view = OverlayView::new(lowers);
                let before = time(timer, Work::Extract, || {
                    materialise(&view, &root)?;
                    record(&root)
                })?;
                let active = Active {
                    dirs,
                    tree: Some((root.clone(), before)),
                    lowers: Vec::new(),
                };
                Ok((RootFs::Dir(root), active))
            }
        }
    }

    /// An empty upper directory for a step that writes its changes into it itself (COPY, ADD,
    /// WORKDIR): nothing runs over the parent's tree, so there is nothing to mount or compare,
    /// in either mode.
    pub fn prepare_upper(&self) -> Result<Active, SnapshotError> {
        Ok(Active {
            dirs: step_dirs(&self.dir)?,
            tree: None,
            lowers: Vec::new(),
        })
    }

    /// Writes what the step of `active` changed as a layer with `opts`. Without overlay the
    /// changes are first found by comparing trees (timed as [`Work::Diff`]); the write's time
    /// is split into [`Work::Diff`] and [`Work::Compress`]. The layer's index is kept in the cache, and an upper in overlay's
    /// spelling is adopted as the layer's extracted form, so later steps need not unpack it.
    pub fn commit(
        &self,
        mut active: Active,
        opts: &LayerOptions,
        timer: &dyn Timer,
    ) -> Result<LayerInfo, SnapshotError> {
        let mut opts = opts.clone();
        // The adopted upper keeps overlay's opaque xattr: over these same lowers it hides
        // exactly what the layer's whiteouts do.
        opts.overlay_lowers = std::mem::take(&mut active.lowers);
        let upper = &active.dirs.upper;
        let whiteouts = match &active.tree {
            Some((root, before)) => {
                time(timer, Work::Diff, || diff(before, root, upper))?.whiteouts
            }
            None => Whiteouts::Overlay,
        };
        let info = write_timed(&opts, timer, |opts| {
            commit_as(upper, whiteouts, &self.store, opts)
        })?;
        // A later COPY or WORKDIR reads this layer's metadata from its index, and the cache
        // repository publishes it; one that cannot be written costs an extraction later.
        self.extracted
            .keep_index(&info.layer.diff_id, info.index.as_ref());
        if whiteouts == Whiteouts::Overlay {
            // Another build may have adopted the same diff_id first: either copy serves.
            let _ = self.extracted.adopt(&info.layer.diff_id, upper);
        }
        Ok(info)
    }
}
