//! Snapshots: where a build step's filesystem comes from and how its changes become a layer.
//!
//! A build talks to a [`Snapshotter`], which holds the [`Mode`] chosen once per build and has
//! the two operations of a BuildKit or containerd snapshotter. [`Snapshotter::prepare`] takes
//! the parent's extracted lower directories and gives the [`RootFs`]
//! the sandbox mounts, with an [`Active`] step; [`Snapshotter::commit`] turns what the step
//! changed into an upper directory with its [`Whiteouts`] and writes it as a layer. Steps that
//! write their changes themselves (COPY, ADD, WORKDIR) take an empty upper from
//! [`Snapshotter::prepare_upper`] and commit the same way. The sandbox knows nothing of modes:
//! it mounts the root it is given. Time spent is reported through a [`Timer`].
//!
//! With overlay (the normal case), a step's root is an overlay mount made by the sandbox from
//! the parent's layers, extracted once per machine into the [`ExtractedLayers`] (read-only lower
//! directories, top-most first), and the step's own [`StepDirs`] (upper and work). After the
//! step, the upper directory is exactly the layer: commit writes it to the blob store and
//! [`ExtractedLayers::adopt`] moves it in as the extracted form of the new diff_id, so the next step
//! uses it as a lower without unpacking anything.
//!
//! Without overlay ([`probe`] says [`Mode::TreeDiff`], and why), the tree-diff fallback does
//! what kaniko does: prepare [`materialise`]s the parent into a plain directory and
//! [`record`]s a [`Manifest`], the step runs there, then commit's [`diff`] writes the changes
//! into an upper directory that [`commit_as`] turns into a layer (adopted too when the
//! whiteouts are overlay's).
//!
//! Reading the merged layers without mounting anything (COPY sources and parents, user name
//! lookups) is [`crate::layer::OverlayView`]'s, a view of layers rather than a snapshot.

mod commit;
mod dirs;
mod error;
mod extracted;
pub(crate) mod mount_options;
mod probe;
mod rootfs;
mod snapshotter;
mod treediff;

pub use commit::{commit, commit_as};
pub use dirs::{step_dirs, StepDirs};
pub use error::SnapshotError;
pub use extracted::ExtractedLayers;
pub use probe::{probe, Mode};
pub use rootfs::RootFs;
pub(crate) use snapshotter::write_timed;
pub use snapshotter::{Active, Snapshotter, Timer, Work};
pub use treediff::{diff, materialise, record, Diff, Manifest, Materialised, Record};

/// How an upper directory spells deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Overlay's spelling: a 0:0 character device, an `overlay.opaque` xattr. Usable as an
    /// overlay lower directory (and so adoptable into the [`ExtractedLayers`]).
    Overlay,
    /// OCI's spelling: empty `.wh.<name>` files (when `mknod` of a whiteout is refused).
    Oci,
}
