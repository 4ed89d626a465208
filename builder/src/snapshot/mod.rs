//! Snapshots: where a build step's filesystem comes from and how its changes become a layer.
//!
//! With overlay (the normal case), a step's root is an overlay mount made by the sandbox from
//! the parent's layers, extracted once per machine into the [`ExtractedLayers`] (read-only lower
//! directories, top-most first), and the step's own [`StepDirs`] (upper and work). After the
//! step, the upper directory is exactly the layer: [`commit`] writes it to the blob store and
//! [`ExtractedLayers::adopt`] moves it in as the extracted form of the new diff_id, so the next step
//! uses it as a lower without unpacking anything.
//!
//! Without overlay ([`probe`] says [`Mode::TreeDiff`], and why), the tree-diff fallback does
//! what kaniko does: [`materialise`] the parent into a plain directory, [`record`] a
//! [`Manifest`], run the step there, then [`diff`] writes the changes into an upper directory
//! that [`commit_as`] turns into a layer.
//!
//! [`OverlayView`] reads merged layers without mounting anything (COPY sources and parents,
//! user name lookups).

mod commit;
mod dirs;
mod error;
mod extracted;
mod index_view;
pub(crate) mod mount_options;
mod probe;
mod treediff;
mod view;

pub use commit::{commit, commit_as};
pub use dirs::{step_dirs, StepDirs};
pub use error::SnapshotError;
pub use extracted::ExtractedLayers;
pub use index_view::IndexView;
pub use probe::{probe, Mode};
pub use treediff::{diff, materialise, record, Diff, Manifest, Materialised, Record};
pub use view::OverlayView;

/// How an upper directory spells deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Overlay's spelling: a 0:0 character device, an `overlay.opaque` xattr. Usable as an
    /// overlay lower directory (and so adoptable into the [`ExtractedLayers`]).
    Overlay,
    /// OCI's spelling: empty `.wh.<name>` files (when `mknod` of a whiteout is refused).
    Oci,
}
