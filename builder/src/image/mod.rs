//! Images: the OCI and Docker JSON documents (descriptors, manifests, indexes, configs), building
//! an image's config and manifest into the blob store, choosing a platform from an index, and
//! exporting a built image (OCI layout, `docker load` tarball, digest files).
//!
//! Every blob goes through the [`crate::blob::BlobStore`]: layers are already there when an image
//! is built, and exporters stream them out of it.

pub mod assemble;
pub mod config;
pub mod descriptor;
pub mod error;
pub mod export;
pub mod json;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod platform_select;
pub mod time;

pub use assemble::{BuiltImage, ImageBuilder};
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use descriptor::{Descriptor, ImagePlatform};
pub use error::ImageError;
pub use manifest::{parse_manifest, ImageIndex, ImageManifest, ParsedManifest};
pub use media::{Compression, ImageFormat};
pub use platform::Platform;
pub use platform_select::{platform_matches, select_manifest};
