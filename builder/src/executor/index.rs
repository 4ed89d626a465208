//! Layer indexes in a build: a COPY or WORKDIR whose parent is not extracted here reads the
//! parent's metadata from its layers' indexes (local, or fetched from the cache repository)
//! instead of downloading and extracting it; a build with a cache repository publishes the
//! indexes of its stages' layers there for the next build on another machine.

use super::error::BuildError;
use super::layers::LayerRef;
use super::timings::StepClock;
use super::Build;
use crate::blob::Digest;
use crate::fsview::FsView;
use crate::layer::LayerIndex;
use crate::layer::{IndexView, OverlayView};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What one build has learnt of layer indexes.
#[derive(Default)]
pub(crate) struct Seen {
    /// Indexes read (or found missing) by diff_id.
    read: Mutex<HashMap<Digest, Option<Arc<LayerIndex>>>>,
    /// Indexes known to be in the cache repository.
    published: Mutex<HashSet<Digest>>,
}

/// `KILN_LAYER_INDEX=off` makes every step extract its parent as before (for comparing the two
/// paths; the index is still recorded and published).
fn enabled() -> bool {
    std::env::var("KILN_LAYER_INDEX").map_or(true, |v| v != "off" && v != "0")
}

/// The parent of a COPY or WORKDIR as the step reads it. Extracted layers are read as they are;
/// otherwise, when the step needs no file content (`needs_content` false) and every layer has
/// an index, from the indexes, which downloads no layer. The layer the step writes is the same
/// either way. Without root, extraction records owners in xattrs that the index does not carry,
/// so such a build always extracts.
pub(crate) fn parent_view(
    b: &Build<'_>,
    parent: &[LayerRef],
    needs_content: bool,
    clock: &StepClock,
) -> Result<Box<dyn FsView>, BuildError> {
    let extracted = parent
        .iter()
        .all(|l| b.layers.extracted.get(&l.layer.diff_id).is_some());
    if !needs_content && !extracted && enabled() && crate::layer::owners::settable() {
        if let Some(indexes) = indexes(b, parent) {
            return Ok(Box::new(IndexView::new(indexes)));
        }
    }
    Ok(Box::new(OverlayView::new(b.layers.lowers(parent, clock)?)))
}

/// The indexes of `stack`, top-most first, each layer once; `None` when one has none here or
/// in the cache repository.
fn indexes(b: &Build<'_>, stack: &[LayerRef]) -> Option<Vec<Arc<LayerIndex>>> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for l in stack.iter().rev() {
        let d = &l.layer.diff_id;
        if seen.contains(&d) {
            continue;
        }
        seen.push(d);
        let known = b.indexes.read.lock().expect("indexes").get(d).cloned();
        let index = match known {
            Some(i) => i,
            None => {
                let i = index_of(b, d).map(Arc::new);
                let mut read = b.indexes.read.lock().expect("indexes");
                read.insert(d.clone(), i.clone());
                i
            }
        };
        out.push(index?);
    }
    Some(out)
}

/// The index of `diff_id` from the local cache, else read from the table of contents a
/// zstd:chunked base layer carries, else fetched from the cache repository (either kept
/// locally). Not a layer download: the summary's byte count leaves it out.
fn index_of(b: &Build<'_>, diff_id: &crate::blob::Digest) -> Option<LayerIndex> {
    if let Some(i) = b.layers.extracted.index(diff_id) {
        return Some(i);
    }
    match b.bases.toc_index(diff_id) {
        Some(Ok(Some(index))) => {
            let _ = b.layers.extracted.put_index(diff_id, &index);
            return Some(index);
        }
        Some(Err(e)) => b.progress.line(&format!(
            "warning: could not read the table of contents of layer {diff_id}: {}",
            crate::error_chain::chain_line(&e)
        )),
        Some(Ok(None)) | None => {}
    }
    let repo = b.repo.as_ref()?;
    match b.runtime.block_on(repo.get_index(diff_id, &b.layers.store)) {
        Ok(Some(bytes)) => {
            let index = LayerIndex::decode(&bytes[..], diff_id).ok()?;
            // Kept locally so later steps and builds need not ask again; not kept, it is
            // asked for again, which is all that is lost.
            let _ = b.layers.extracted.put_index(diff_id, &index);
            Some(index)
        }
        Ok(None) => None,
        Err(e) => {
            b.progress.line(&format!(
                "warning: could not fetch the layer index of {diff_id}, extracting the layer: {}",
                crate::error_chain::chain_line(&e)
            ));
            None
        }
    }
}

/// Publishes in the cache repository the index of every layer of `stack` this machine has one
/// for and the repository lacks. A failure is a warning: it only costs the next build a
/// download.
pub(crate) fn publish(b: &Build<'_>, stack: &[LayerRef]) {
    let Some(repo) = &b.repo else {
        return;
    };
    let mut seen = Vec::new();
    for l in stack {
        let d = &l.layer.diff_id;
        if seen.contains(&d) {
            continue;
        }
        seen.push(d);
        if b.indexes.published.lock().expect("indexes").contains(d) {
            continue;
        }
        let path = b.layers.extracted.index_path(d);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let put = async {
            if !repo.has_index(d).await? {
                repo.put_index(d, &bytes, &b.layers.store).await?;
            }
            Ok::<_, crate::cache::CacheError>(())
        };
        match b.runtime.block_on(put) {
            Ok(()) => {
                b.indexes
                    .published
                    .lock()
                    .expect("indexes")
                    .insert(d.clone());
            }
            Err(e) => {
                b.progress.line(&format!(
                    "warning: could not publish the layer index of {d}: {}",
                    crate::error_chain::chain_line(&e)
                ));
            }
        }
    }
}
