//! `--single-snapshot`: the target's layers above its image base merged into one before the
//! image is written. Steps still ran one by one and the step cache keeps their own layers;
//! only the output image changes.

use super::error::BuildError;
use super::layers::LayerRef;
use super::stage::StageDone;
use super::timings::StepClock;
use super::Build;
use crate::fsview::{FsView, Kind};
use crate::layer::OverlayView;
use crate::layer::{self, Below, LayerError};
use crate::path_io::IoAt;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Replaces the layers `target` added above its image base with their merge.
pub(crate) fn squash(
    b: &Build<'_>,
    target: &mut StageDone,
    clock: &StepClock,
) -> Result<(), BuildError> {
    let n = target.builder.base_layer_count();
    let new = &target.layers[n.min(target.layers.len())..];
    let made = new.len();
    if made == 0 {
        return Ok(());
    }
    let merged = if made == 1 {
        // One layer is its own merge: only the history changes.
        new[0].clone()
    } else {
        let uppers = b.layers.lowers(new, clock)?;
        let base = &target.layers[..n];
        // The base is read (and so extracted) only when a deletion must be judged.
        let mut view: Option<OverlayView> = None;
        let below = |rel: &[u8]| -> Result<Below, LayerError> {
            if view.is_none() {
                // An io::Error keeps the build error whole: its causes stay its sources.
                let lowers = b
                    .layers
                    .lowers(base, clock)
                    .map_err(std::io::Error::other)
                    .at("image base")?;
                view = Some(OverlayView::new(lowers));
            }
            let p = Path::new("/").join(OsStr::from_bytes(rel));
            let found = view.as_ref().expect("set above").lstat(&p).at(p)?;
            Ok(match found {
                None => Below::Absent,
                Some(e) if e.kind == Kind::Dir => Below::Dir,
                Some(_) => Below::Other,
            })
        };
        let info = super::run_step::write_timed(b, clock, |opts| {
            layer::write_merged_layer(&b.layers.store, &uppers, below, opts)
        })
        .map_err(|e| BuildError::failed("--single-snapshot", e))?;
        // As for a step's layer: a COPY onto this image later reads its metadata from the
        // index, here or in the cache repository, instead of downloading it.
        b.layers
            .extracted
            .keep_index(&info.layer.diff_id, info.index.as_ref());
        let merged = LayerRef {
            layer: info.layer,
            source: None,
        };
        super::index::publish(b, std::slice::from_ref(&merged));
        merged
    };
    target
        .builder
        .squash(merged.layer.clone(), merged.source.is_none());
    target.layers.truncate(n);
    target.layers.push(merged);
    b.progress.line(&format!(
        "single snapshot: {made} layer{} above the base written as one",
        if made == 1 { "" } else { "s" }
    ));
    Ok(())
}
