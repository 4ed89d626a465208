//! OCI content descriptors and the platform object of index entries and image configs.

use super::json::null_default;
use super::Platform;
use crate::blob::Digest;
use crate::layer::Layer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A content descriptor: what a manifest or index says about a blob it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The blob's media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Other places the blob may be fetched from (foreign layers).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    /// Arbitrary metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// The image's platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<ImagePlatform>,
    /// The artifact's type, for artifact manifests.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The blob itself, base64, when embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    /// The layer a manifest's layer descriptor names, with `diff_id` from the image config
    /// (or wherever the manifest's owner recorded it).
    pub fn layer(&self, diff_id: Digest) -> Layer {
        Layer {
            digest: self.digest.clone(),
            size: self.size,
            diff_id,
            media_type: self.media_type.clone(),
        }
    }
}

/// A manifest names a layer by this descriptor; its diff_id goes in the config instead.
impl From<&Layer> for Descriptor {
    fn from(l: &Layer) -> Descriptor {
        Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size)
    }
}

/// The platform object of the OCI image spec (`architecture`, `os`, `os.version`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagePlatform {
    /// CPU architecture (Go's `GOARCH`).
    pub architecture: String,
    /// Operating system (Go's `GOOS`).
    pub os: String,
    /// OS version (Windows builds).
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Required OS features (Windows).
    #[serde(
        rename = "os.features",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    /// CPU variant (`v7`, `v8`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// CPU features (Docker manifest lists only; reserved).
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub features: Vec<String>,
}

impl From<&Platform> for ImagePlatform {
    fn from(p: &Platform) -> ImagePlatform {
        ImagePlatform {
            architecture: p.arch.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            ..ImagePlatform::default()
        }
    }
}

impl From<&ImagePlatform> for Platform {
    fn from(p: &ImagePlatform) -> Platform {
        Platform {
            os: p.os.clone(),
            arch: p.architecture.clone(),
            variant: p.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}
