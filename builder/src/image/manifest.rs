//! Image manifests and indexes (OCI and Docker schema 2 share their shapes), and reading one
//! whichever a registry or layout hands back.

use super::descriptor::Descriptor;
use super::error::ImageError;
use super::json::null_default;
use super::media;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An image manifest: a config and layers (OCI, or Docker schema 2 with Docker media types).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest's media type (required by Docker, recommended by OCI).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact's type, for artifact manifests.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, attestations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The index's media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact's type, for artifact indexes.
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// The manifests, with their platforms.
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An empty index with `media_type` (`None` leaves the field out).
    pub fn empty(media_type: Option<&str>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: media_type.map(str::to_string),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// A manifest read back: an image, or an index to choose a platform from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedManifest {
    /// An image manifest (OCI or Docker schema 2).
    Image(Box<ImageManifest>),
    /// An image index or manifest list.
    Index(Box<ImageIndex>),
}

/// Parses a manifest by `media_type` (a registry's `Content-Type`, a descriptor's `mediaType`);
/// when that is absent or generic (`application/json`, as some registries and layouts give), by
/// the document's own `mediaType`, and failing that by its shape. Schema 1 is refused.
pub fn parse_manifest(
    media_type: Option<&str>,
    bytes: &[u8],
) -> Result<ParsedManifest, ImageError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion", default)]
        schema_version: Option<u32>,
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        config: Option<serde::de::IgnoredAny>,
    }
    let given = media_type
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .filter(|m| !m.is_empty() && *m != "application/json");
    let kind = match given {
        Some(m) => m.to_string(),
        None => {
            let probe: Probe =
                serde_json::from_slice(bytes).map_err(ImageError::json("manifest"))?;
            match (probe.media_type, probe.manifests, probe.config) {
                (Some(m), _, _) if !m.is_empty() => m,
                _ if probe.schema_version == Some(1) => {
                    media::DOCKER_MANIFEST_V1_SIGNED.to_string()
                }
                (_, Some(_), _) => media::OCI_INDEX.to_string(),
                (_, _, Some(_)) => media::OCI_MANIFEST.to_string(),
                _ => return Err(ImageError::UnsupportedMediaType("(none)".to_string())),
            }
        }
    };
    match kind.as_str() {
        media::OCI_MANIFEST | media::DOCKER_MANIFEST => Ok(ParsedManifest::Image(Box::new(
            serde_json::from_slice(bytes).map_err(ImageError::json("image manifest"))?,
        ))),
        media::OCI_INDEX | media::DOCKER_MANIFEST_LIST => Ok(ParsedManifest::Index(Box::new(
            serde_json::from_slice(bytes).map_err(ImageError::json("image index"))?,
        ))),
        other => Err(ImageError::UnsupportedMediaType(other.to_string())),
    }
}
