//! The one record of a layer blob, from the writer that makes it to the manifest that names it
//! and the step cache that remembers it.

use crate::blob::Digest;
use serde::{Deserialize, Serialize};

/// A layer blob as an image manifest and config name it.
///
/// Its serde form is the `layer` of a step-cache entry (`<cache_dir>/keys/*.json`): the fields'
/// names and order are part of that file format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// The blob's media type (OCI or Docker; an image translates it to its own format).
    pub media_type: String,
}
