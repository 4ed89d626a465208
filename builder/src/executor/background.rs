//! Work on finished layers that need not hold the next step up, on tasks of the build's runtime:
//! pushing each new layer of the image to the destinations, and writing each step to the cache
//! repository. The final push waits for the uploads and only then writes the config, the
//! manifest and the tags, so an upload that fails still leaves no tag; blobs are sent from the
//! store's files, never held in memory.

use super::error::BuildError;
use super::layers::LayerRef;
use super::progress::Progress;
use super::timings::{Phase, StepClock};
use crate::blob::{BlobStore, Digest};
use crate::plan::{Base, Plan};
use crate::registry::{
    BlobOutcome, BlobToPush, Reference, RegistryClient, RegistryError, Repository,
};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

/// What pushing one blob to every destination repository did.
type Pushed = Vec<(Repository, BlobOutcome)>;

/// A layer upload under way.
struct Upload {
    digest: Digest,
    /// `Err(None)`: the failure is the one kept in [`Background::check`]'s slot.
    task: JoinHandle<Result<Pushed, Option<BuildError>>>,
}

/// The build's background tasks.
pub(crate) struct Background {
    runtime: Arc<tokio::runtime::Runtime>,
    client: RegistryClient,
    store: BlobStore,
    progress: Progress,
    /// Where layers are pushed while the build runs; empty when they are not.
    destinations: Vec<Reference>,
    /// The stages whose layers are the image's: the target and the stages it is built FROM.
    stages: Vec<usize>,
    uploads: Mutex<Vec<Upload>>,
    cache_writes: Mutex<Vec<JoinHandle<()>>>,
    /// The first upload failure, for the next step to stop the build on.
    failed: Arc<Mutex<Option<BuildError>>>,
}

/// How a failed push is reported, in the background or at the end.
pub(crate) fn push_error(destinations: &[Reference], e: RegistryError) -> BuildError {
    let names: Vec<String> = destinations.iter().map(|d| d.to_string()).collect();
    BuildError::failed(format!("pushing to {}", names.join(", ")), e)
}

impl Background {
    /// Tasks on `runtime`; layers of the image `plan` builds are pushed to `destinations` as
    /// they are made (pass none to push only at the end).
    pub fn new(
        runtime: Arc<tokio::runtime::Runtime>,
        client: RegistryClient,
        store: BlobStore,
        progress: Progress,
        destinations: Vec<Reference>,
        plan: &Plan,
    ) -> Background {
        let mut stages = vec![plan.target];
        while let Base::Stage(i) = plan.stages[*stages.last().expect("one")].base {
            stages.push(i);
        }
        Background {
            runtime,
            client,
            store,
            progress,
            destinations,
            stages,
            uploads: Mutex::new(Vec::new()),
            cache_writes: Mutex::new(Vec::new()),
            failed: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts pushing `layer`, the newest of stage `stage`, when it belongs to the pushed image,
    /// is in the local store and is not on its way already; its time goes to `clock`.
    pub fn upload(&self, stage: usize, layer: &LayerRef, clock: &StepClock) {
        if self.destinations.is_empty() || !self.stages.contains(&stage) || layer.source.is_some() {
            return;
        }
        let mut uploads = self.uploads.lock().expect("uploads");
        if uploads.iter().any(|u| u.digest == layer.layer.digest) {
            return;
        }
        let blob = BlobToPush::from(layer);
        let (client, store, clock) = (self.client.clone(), self.store.clone(), clock.clone());
        let (destinations, failed) = (self.destinations.clone(), self.failed.clone());
        let counter = self.progress.transfers().push.clone();
        let task = self.runtime.spawn(async move {
            let start = Instant::now();
            let r = client
                .ensure_blob_everywhere(&destinations, &blob, &store, Some(&counter))
                .await;
            clock.since(Phase::Upload, start);
            // The first failure waits in `failed` for the next step (or the final push) to
            // take; a later one travels in the task's own result.
            r.map_err(|e| {
                let slot = &mut *failed.lock().expect("failed");
                match slot {
                    None => {
                        *slot = Some(push_error(&destinations, e));
                        None
                    }
                    Some(_) => Some(push_error(&destinations, e)),
                }
            })
        });
        uploads.push(Upload {
            digest: layer.layer.digest.clone(),
            task,
        });
    }

    /// The first upload that failed so far, taken: a build stops on it rather than run steps
    /// whose image cannot be pushed.
    pub fn check(&self) -> Result<(), BuildError> {
        match self.failed.lock().expect("failed").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `write` (a cache repository write) in the background, its time counted as the
    /// step's cache phase.
    pub fn cache_write(&self, clock: &StepClock, write: impl Future<Output = ()> + Send + 'static) {
        let clock = clock.clone();
        let task = self.runtime.spawn(async move {
            let start = Instant::now();
            write.await;
            clock.since(Phase::Cache, start);
        });
        self.cache_writes.lock().expect("cache writes").push(task);
    }

    /// Waits for every upload, counting the time as `clock`'s wait; what each did, or the
    /// first failure.
    pub fn finish_uploads(
        &self,
        clock: &StepClock,
    ) -> Result<Vec<(Repository, Digest, BlobOutcome)>, BuildError> {
        let uploads = std::mem::take(&mut *self.uploads.lock().expect("uploads"));
        let start = Instant::now();
        let results = self.runtime.block_on(async {
            let mut out = Vec::new();
            for u in uploads {
                out.push((u.digest, u.task.await));
            }
            out
        });
        clock.since(Phase::Wait, start);
        let mut done = Vec::new();
        for (digest, r) in results {
            let pushed = match r.expect("an upload task panicked") {
                Ok(p) => p,
                Err(Some(e)) => return Err(e),
                // Kept in `failed`: only `check` takes it, and a build that took it has
                // stopped, so no final push waits here.
                Err(None) => {
                    return Err(self
                        .failed
                        .lock()
                        .expect("failed")
                        .take()
                        .expect("a failed upload's error is kept until taken"))
                }
            };
            done.extend(
                pushed
                    .into_iter()
                    .map(|(repo, o)| (repo, digest.clone(), o)),
            );
        }
        Ok(done)
    }

    /// Waits for every cache write (they report their own failures), counting the time as
    /// `clock`'s wait.
    pub fn finish_cache_writes(&self, clock: &StepClock) {
        let writes = std::mem::take(&mut *self.cache_writes.lock().expect("cache writes"));
        clock.time(Phase::Wait, || {
            self.runtime.block_on(async {
                for w in writes {
                    let _ = w.await;
                }
            })
        });
    }

    /// A build that failed: its uploads are of no use any more, but the cache writes of the
    /// steps that succeeded still spare the next build their work.
    pub fn abandon(&self, clock: &StepClock) {
        for u in std::mem::take(&mut *self.uploads.lock().expect("uploads")) {
            u.task.abort();
        }
        self.finish_cache_writes(clock);
    }
}
