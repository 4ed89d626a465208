//! Blobs: content digests and the content-addressed store that layers, configs and manifests
//! are written to before they are exported or pushed.

pub mod digest;
pub mod store;

pub use digest::{BadDigest, Digest, DigestWriter};
pub use store::{BlobError, BlobStore, BlobWriter};
