//! The image module's one error type.

use crate::blob::{BlobError, Digest};
use crate::reference::ReferenceError;
use std::path::PathBuf;

/// Building, parsing or exporting an image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// A JSON document could not be read or written.
    #[error("{what}")]
    Json {
        /// Which document (`manifest`, `image config`, `index.json`, ...).
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A media type kiln does not read or cannot write in the requested format.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// The image's layers and its config's `rootfs.diff_ids` disagree.
    #[error("{layers} layers but {diff_ids} diff_ids in the image config")]
    LayerCountMismatch {
        /// Layers in the manifest.
        layers: usize,
        /// Entries in `rootfs.diff_ids`.
        diff_ids: usize,
    },
    /// A layer named by the image is not in the blob store, or has another size there.
    #[error("layer {digest} is not in the blob store with size {size}")]
    LayerMissing {
        /// The layer's digest.
        digest: Digest,
        /// The size the image announces.
        size: u64,
    },
    /// An existing OCI image layout cannot be merged into.
    #[error("OCI layout {}: {message}", path.display())]
    BadLayout {
        /// The layout's directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An image reference (`registry/repo:tag`) that cannot be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

impl ImageError {
    pub(crate) fn json(what: &str) -> impl FnOnce(serde_json::Error) -> ImageError + '_ {
        move |source| ImageError::Json {
            what: what.to_string(),
            source,
        }
    }
}
