//! The cache module's one error type.

/// Reading or writing the step cache, or warming the cache directory, failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// An image document could not be read or written.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// An image reference could not be parsed.
    #[error(transparent)]
    Reference(#[from] crate::registry::ReferenceError),
    /// A Dockerfile given to warm from is wrong.
    #[error(transparent)]
    Dockerfile(#[from] crate::dockerfile::DockerfileError),
    /// A Dockerfile given to warm from cannot be planned.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// An image has no manifest for the platform asked for.
    #[error("{reference}: no image for platform {platform}")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
    },
}
