//! Media types of the OCI image spec and Docker's image manifest v2 schema 2, and the
//! translation of layer media types between the two formats.

use super::error::ImageError;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable gzip layer (deprecated by the spec, still met in Windows images).
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI empty descriptor (`{}`), the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The `oci-layout` file's content type is implied; this is its version.
pub const OCI_LAYOUT_VERSION: &str = "1.0.0";

/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (accepted by registries, rarely produced).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 (signed); kiln does not read it, but names it in errors.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Annotation naming an image in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd (and Docker 25+ `docker save`) puts the full image name in.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// Which family of media types an image is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// OCI image spec (the default).
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, for registries and tools that predate OCI.
    Docker,
}

impl ImageFormat {
    /// The manifest media type.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => OCI_MANIFEST,
            ImageFormat::Docker => DOCKER_MANIFEST,
        }
    }

    /// The index (manifest list) media type.
    pub fn index_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => OCI_INDEX,
            ImageFormat::Docker => DOCKER_MANIFEST_LIST,
        }
    }

    /// The config media type.
    pub fn config_media_type(self) -> &'static str {
        match self {
            ImageFormat::Oci => OCI_CONFIG,
            ImageFormat::Docker => DOCKER_CONFIG,
        }
    }

    /// The layer media type for `compression`; Docker has none for zstd.
    pub fn layer_media_type(self, compression: Compression) -> Result<&'static str, ImageError> {
        Ok(match (self, compression) {
            (ImageFormat::Oci, Compression::None) => OCI_LAYER_TAR,
            (ImageFormat::Oci, Compression::Gzip) => OCI_LAYER_GZIP,
            (ImageFormat::Oci, Compression::Zstd) => OCI_LAYER_ZSTD,
            (ImageFormat::Docker, Compression::None) => DOCKER_LAYER_TAR,
            (ImageFormat::Docker, Compression::Gzip) => DOCKER_LAYER_GZIP,
            (ImageFormat::Docker, Compression::Zstd) => {
                return Err(ImageError::UnsupportedMediaType(format!(
                    "{OCI_LAYER_ZSTD} in a Docker schema 2 manifest"
                )))
            }
        })
    }

    /// `media_type` (a layer's, in either family) in this format. Foreign and non-distributable
    /// layers keep their kind; types kiln does not know are refused rather than mislabelled.
    pub fn translate_layer(self, media_type: &str) -> Result<&'static str, ImageError> {
        match (self, media_type) {
            (ImageFormat::Oci, OCI_LAYER_NONDISTRIBUTABLE_GZIP | DOCKER_FOREIGN_LAYER_GZIP) => {
                Ok(OCI_LAYER_NONDISTRIBUTABLE_GZIP)
            }
            (ImageFormat::Docker, OCI_LAYER_NONDISTRIBUTABLE_GZIP | DOCKER_FOREIGN_LAYER_GZIP) => {
                Ok(DOCKER_FOREIGN_LAYER_GZIP)
            }
            _ => self.layer_media_type(Compression::of_layer(media_type)?),
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression a layer media type (OCI or Docker) announces.
    pub fn of_layer(media_type: &str) -> Result<Compression, ImageError> {
        match media_type {
            OCI_LAYER_TAR | DOCKER_LAYER_TAR => Ok(Compression::None),
            OCI_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_GZIP
            | DOCKER_FOREIGN_LAYER_GZIP => Ok(Compression::Gzip),
            OCI_LAYER_ZSTD => Ok(Compression::Zstd),
            other => Err(ImageError::UnsupportedMediaType(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_translate_both_ways() {
        assert_eq!(
            ImageFormat::Docker.translate_layer(OCI_LAYER_GZIP).unwrap(),
            DOCKER_LAYER_GZIP
        );
        assert_eq!(
            ImageFormat::Oci.translate_layer(DOCKER_LAYER_GZIP).unwrap(),
            OCI_LAYER_GZIP
        );
        assert_eq!(
            ImageFormat::Oci
                .translate_layer(DOCKER_FOREIGN_LAYER_GZIP)
                .unwrap(),
            OCI_LAYER_NONDISTRIBUTABLE_GZIP
        );
        assert!(ImageFormat::Docker.translate_layer(OCI_LAYER_ZSTD).is_err());
        assert!(ImageFormat::Oci.translate_layer("text/plain").is_err());
    }
}
