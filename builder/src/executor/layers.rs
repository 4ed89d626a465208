//! Layers of the image being built: descriptors first, files only on demand. A layer becomes a
//! directory (an overlay lower) the first time a step reads the filesystem under it, from the
//! machine's extracted layers, the blob store, or its registry — in that order.

use super::error::BuildError;
use super::progress::Transfers;
use super::timings::{Phase, StepClock};
use crate::blob::BlobStore;
use crate::layer::Layer;
use crate::path_io::IoAt;
use crate::registry::{BlobToPush, RegistryClient, Repository};
use crate::snapshot::ExtractedLayers;
use crate::transfer::{Counted, Transfer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A layer of a stage: its descriptor and where its bytes can be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// Digest, size, diff_id, media type.
    pub layer: Layer,
    /// The repository holding the blob when it is not in the local store (a base image's, or
    /// the cache repository): pulled from there when needed, mounted from there when pushing.
    pub source: Option<Repository>,
}

/// The registry's view of a layer: only the blob, mountable from where it is held. (The
/// registry pushes blobs and knows nothing of layers, so the executor converts at its door.)
impl From<&LayerRef> for BlobToPush {
    fn from(l: &LayerRef) -> BlobToPush {
        BlobToPush {
            digest: l.layer.digest.clone(),
            size: l.layer.size,
            mount_from: l.source.clone(),
        }
    }
}

/// Turns layer descriptors into directories, counting what it had to download.
pub struct Layers {
    /// Extracted layers shared between builds.
    pub extracted: ExtractedLayers,
    /// Blobs.
    pub store: BlobStore,
    client: RegistryClient,
    runtime: Arc<tokio::runtime::Runtime>,
    downloaded: AtomicU64,
    pulls: Arc<Transfer>,
    extracts: Arc<Transfer>,
}

impl Layers {
    /// Layers from `extracted`, `store`, or through `client`, downloads and extractions counted
    /// in `transfers`.
    pub fn new(
        extracted: ExtractedLayers,
        store: BlobStore,
        client: RegistryClient,
        runtime: Arc<tokio::runtime::Runtime>,
        transfers: &Transfers,
    ) -> Self {
        Layers {
            extracted,
            store,
            client,
            runtime,
            downloaded: AtomicU64::new(0),
            pulls: transfers.pull.clone(),
            extracts: transfers.extract.clone(),
        }
    }

    /// Bytes of layer blobs downloaded so far.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// Makes sure the blob of `l` is in the local store (downloading it if needed, the time
    /// counted on `clock`).
    pub fn fetch(&self, l: &LayerRef, clock: &StepClock) -> Result<(), BuildError> {
        if self.store.has(&l.layer.digest, l.layer.size) {
            return Ok(());
        }
        let Some(repo) = &l.source else {
            return Err(BuildError::LayerUnavailable(l.layer.digest.clone()));
        };
        let progress = self.pulls.blob(Some(l.layer.size));
        let start = Instant::now();
        let n = self.runtime.block_on(self.client.pull_blob_counted(
            repo,
            &l.layer.digest,
            Some(l.layer.size),
            &self.store,
            Some(&progress),
        ));
        clock.since(Phase::Pull, start);
        let n = n.map_err(|e| {
            BuildError::failed(format!("pulling layer {} from {repo}", l.layer.digest), e)
        })?;
        progress.finish();
        self.downloaded.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// The directory of `l` (an overlay lower), extracting it first if needed; the time
    /// counted on `clock`.
    pub fn lower(&self, l: &LayerRef, clock: &StepClock) -> Result<PathBuf, BuildError> {
        if let Some(dir) = self.extracted.get(&l.layer.diff_id) {
            return Ok(dir);
        }
        self.fetch(l, clock)?;
        let start = Instant::now();
        let path = self.store.path(&l.layer.digest);
        let file = std::fs::File::open(&path).at(&path)?;
        let counted = Counted::new(file, Some(self.extracts.blob(Some(l.layer.size))));
        let mut reader = std::io::BufReader::new(counted);
        let dir = self
            .extracted
            .extract(&l.layer.diff_id, &l.layer.media_type, &mut reader)
            .map_err(|e| BuildError::failed(format!("extracting layer {}", l.layer.digest), e))?;
        // Nothing read: another build or stage extracted the layer while this one waited.
        let phase = if reader.get_ref().position() == 0 {
            Phase::Wait
        } else {
            Phase::Extract
        };
        clock.since(phase, start);
        reader.into_inner().finish();
        Ok(dir)
    }

    /// The lower directories of a stack of layers, top-most first (as overlay wants them).
    ///
    /// Two steps can make the same layer (a RUN that rewrites what an earlier step wrote), and
    /// overlay refuses a directory twice (ELOOP). Every path of a repeated layer resolves to its
    /// top-most copy, so dropping the lower copies changes nothing in the merged tree.
    pub fn lowers(
        &self,
        stack: &[LayerRef],
        clock: &StepClock,
    ) -> Result<Vec<PathBuf>, BuildError> {
        self.prepare_all(stack, clock)?;
        let mut dirs = Vec::with_capacity(stack.len());
        for l in stack.iter().rev() {
            let dir = self.lower(l, clock)?;
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        Ok(dirs)
    }

    /// Fetches and extracts the layers of `stack` not yet extracted, several at once: until
    /// overlay stacks them the layers are independent, and one extraction leaves the machine
    /// half idle (a download, then a decompressing thread feeding a writer that waits on the
    /// filesystem). The time each took is counted on `clock`, so a step's extract phase is
    /// the sum over its layers and can exceed its wall time.
    fn prepare_all(&self, stack: &[LayerRef], clock: &StepClock) -> Result<(), BuildError> {
        let mut missing: Vec<&LayerRef> = Vec::new();
        for l in stack {
            let seen = missing.iter().any(|m| m.layer.diff_id == l.layer.diff_id);
            if !seen && self.extracted.get(&l.layer.diff_id).is_none() {
                missing.push(l);
            }
        }
        if missing.len() < 2 {
            return Ok(());
        }
        let workers = missing.len().min(PARALLEL_LAYERS);
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<BuildError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(l) = missing.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(e) = self.lower(l, clock) {
                            failed.lock().unwrap().get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match failed.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Layers fetched and extracted at once: enough to keep the network, a decompressor and the
/// filesystem busy together; more only contend for the same disk.
const PARALLEL_LAYERS: usize = 3;
