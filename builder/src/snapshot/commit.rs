//! A step's upper directory as a layer in the blob store.

use super::error::SnapshotError;
use super::Whiteouts;
use crate::blob::BlobStore;
use crate::layer::{write_layer, LayerInfo, LayerOptions};
use std::path::Path;

/// Writes the upper directory of an overlay mount (overlay whiteouts) as a layer; the
/// `overlay_whiteouts` and `oci_whiteouts` of `opts` are ignored.
pub fn commit(
    upper: &Path,
    store: &BlobStore,
    opts: &LayerOptions,
) -> Result<LayerInfo, SnapshotError> {
    commit_as(upper, Whiteouts::Overlay, store, opts)
}

/// Writes an upper directory whose deletions are spelled `whiteouts` (what [`super::diff`]
/// returned) as a layer.
pub fn commit_as(
    upper: &Path,
    whiteouts: Whiteouts,
    store: &BlobStore,
    opts: &LayerOptions,
) -> Result<LayerInfo, SnapshotError> {
    let mut o = opts.clone();
    o.overlay_whiteouts = whiteouts == Whiteouts::Overlay;
    o.oci_whiteouts = whiteouts == Whiteouts::Oci;
    Ok(write_layer(store, upper, &o)?)
}
