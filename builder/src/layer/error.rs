//! The one error type of the layer module.

use std::io;
use std::path::PathBuf;

/// Writing or extracting a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file operation on the tree failed.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// The layer stream (tar, gzip or zstd) could not be read or written.
    #[error("layer stream")]
    Stream(#[source] io::Error),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
    /// A file changed size while it was being read into the layer.
    #[error("{}: file changed while it was being archived ({expected} bytes expected)", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// The size it had when it was listed.
        expected: u64,
    },
    /// The tree holds something a layer cannot carry or the writer refuses to guess about.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A layer entry would write outside the target directory, or through a symlink.
    #[error("refusing layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's name as the tar stream spells it.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The layer expands past the limit set for it (a decompression bomb, or a sparse entry
    /// that unpacks to far more than it carries).
    #[error("the layer expands past the limit of {limit} bytes ({what}); raise it with --max-layer-size if the image is trusted")]
    TooLarge {
        /// What passed the limit: the uncompressed stream, or the bytes written to its files.
        what: &'static str,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A layer entry is malformed (bad header, unknown type, missing link target).
    #[error("bad layer entry {entry:?}: {reason}")]
    Malformed {
        /// The entry's name as the tar stream spells it.
        entry: String,
        /// What is wrong.
        reason: String,
    },
}
