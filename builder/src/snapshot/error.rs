//! The one error type of the snapshot module.

use crate::blob::Digest;
use std::path::PathBuf;

/// Preparing a step's filesystem or turning its changes into a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// Writing or extracting the layer failed.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// Extracting one layer of an image failed.
    #[error("layer {diff_id}")]
    InLayer {
        /// The layer's diff_id.
        diff_id: Digest,
        /// Why.
        #[source]
        source: crate::layer::LayerError,
    },
    /// A layer blob does not unpack to the diff_id it was announced with.
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff_id from the image config.
        expected: Digest,
        /// The diff_id of the bytes received.
        actual: Digest,
    },
    /// The media type is not one of a layer.
    #[error("not a layer media type: {0}")]
    MediaType(String),
    /// The tree holds something the snapshot cannot represent.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
