//! Building an image: the config and the manifest written to the blob store as canonical JSON,
//! from a base (or scratch), the layers the build made and the config the Dockerfile set.

use super::config::{ContainerConfig, History, ImageConfig};
use super::descriptor::{Descriptor, ImagePlatform};
use super::error::ImageError;
use super::json::to_canonical_vec;
use super::manifest::ImageManifest;
use super::media::ImageFormat;
use super::time::{now_unix, rfc3339};
use super::Platform;
use crate::blob::{BlobStore, Digest};
use crate::layer::Layer;
use std::collections::BTreeMap;

/// Collects an image's config and layers, then writes config and manifest blobs.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    /// Layers this build stored: the only ones that must already be in the store (a base
    /// image's layers and cache-repository hits stay remote until read, or for ever when the
    /// destination registry can mount them).
    new_layers: Vec<Descriptor>,
    /// History entries from here on are this build's, and get `created` if they have none.
    new_history_from: usize,
    /// Layers of the image base (the first image, not a stage, in a chain of FROMs).
    base_layers: usize,
    format: ImageFormat,
    created: Option<i64>,
    annotations: BTreeMap<String, String>,
}

/// An image written to the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The manifest's digest: the image's identity.
    pub digest: Digest,
    /// The manifest's bytes, exactly as stored.
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub media_type: &'static str,
    /// The config blob.
    pub config: Descriptor,
    /// The config as written.
    pub image_config: ImageConfig,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
}

impl BuiltImage {
    /// A descriptor of the manifest, with the image's platform (as index entries carry).
    pub fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new(
            self.media_type,
            self.digest.clone(),
            self.manifest.len() as u64,
        );
        d.platform = Some(self.platform());
        d
    }

    /// The image's platform, from its config.
    pub fn platform(&self) -> ImagePlatform {
        ImagePlatform {
            architecture: self.image_config.architecture.clone(),
            os: self.image_config.os.clone(),
            os_version: self.image_config.os_version.clone(),
            variant: self.image_config.variant.clone(),
            ..ImagePlatform::default()
        }
    }
}

impl ImageBuilder {
    /// An image with no base (`FROM scratch`) for `platform`, with BuildKit's defaults: the
    /// default PATH and `/` as the working directory.
    pub fn scratch(platform: &Platform) -> ImageBuilder {
        let config = ImageConfig {
            architecture: platform.arch.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: super::ContainerConfig {
                env: vec![format!("PATH={}", super::config::DEFAULT_PATH)],
                working_dir: "/".into(),
                ..Default::default()
            },
            ..ImageConfig::default()
        };
        ImageBuilder::new(config, Vec::new())
    }

    /// An image on top of a base image: its config and its manifest's layers, which must match
    /// the config's `rootfs.diff_ids` one for one.
    pub fn from_base(
        config: ImageConfig,
        layers: Vec<Descriptor>,
    ) -> Result<ImageBuilder, ImageError> {
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(ImageError::LayerCountMismatch {
                layers: layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        Ok(ImageBuilder::new(config, layers))
    }

    fn new(mut config: ImageConfig, layers: Vec<Descriptor>) -> ImageBuilder {
        config.rootfs.kind = "layers".to_string();
        ImageBuilder {
            new_history_from: config.history.len(),
            base_layers: layers.len(),
            config,
            layers,
            new_layers: Vec::new(),
            format: ImageFormat::Oci,
            created: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The runtime config (`Env`, `Cmd`, ...) to change.
    pub fn config_mut(&mut self) -> &mut ContainerConfig {
        &mut self.config.config
    }

    /// The whole image config (author, platform fields) to change.
    pub fn image_config_mut(&mut self) -> &mut ImageConfig {
        &mut self.config
    }

    /// Writes OCI (the default) or Docker schema 2.
    pub fn format(&mut self, format: ImageFormat) -> &mut Self {
        self.format = format;
        self
    }

    /// Sets `created` (seconds since the epoch; reproducible builds pass `SOURCE_DATE_EPOCH` or
    /// 0). Unset means the time of [`ImageBuilder::write`].
    pub fn created(&mut self, unix_secs: i64) -> &mut Self {
        self.created = Some(unix_secs);
        self
    }

    /// Adds a manifest annotation (OCI only: Docker schema 2 has none).
    pub fn annotation(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Appends a layer the build stored, with the history entry of the step that made it.
    pub fn add_layer(&mut self, layer: Layer, history: History) -> &mut Self {
        self.push_layer(layer, history, true)
    }

    /// Appends a layer whose blob stays in a registry (a step found in the cache repository):
    /// [`ImageBuilder::write`] does not look for it in the store, and a push mounts it.
    pub fn add_remote_layer(&mut self, layer: Layer, history: History) -> &mut Self {
        self.push_layer(layer, history, false)
    }

    fn push_layer(&mut self, layer: Layer, mut history: History, stored: bool) -> &mut Self {
        let desc = Descriptor::from(&layer);
        self.config.rootfs.diff_ids.push(layer.diff_id);
        self.layers.push(desc.clone());
        if stored {
            self.new_layers.push(desc);
        }
        history.empty_layer = false;
        self.config.history.push(history);
        self
    }

    /// How many layers come from the image base (the first image in a chain of stages).
    pub fn base_layer_count(&self) -> usize {
        self.base_layers
    }

    /// Replaces every layer and history entry this build added (above the image base) with
    /// `layer`, the merge of those layers (`--single-snapshot`). Its one history entry is
    /// named after the build's last instruction, as kaniko names it; the entries of steps
    /// that made no layer go too (kaniko writes none). `stored` as for
    /// [`ImageBuilder::add_layer`] (true) or [`ImageBuilder::add_remote_layer`] (false).
    pub fn squash(&mut self, layer: Layer, stored: bool) -> &mut Self {
        let n = self.base_layers;
        self.layers.truncate(n);
        self.config.rootfs.diff_ids.truncate(n);
        let kept = &self.layers;
        self.new_layers.retain(|l| kept.contains(l));
        let last = self
            .config
            .history
            .get(self.new_history_from..)
            .and_then(|h| h.last());
        let history = History {
            created: last.and_then(|h| h.created.clone()),
            created_by: last.and_then(|h| h.created_by.clone()),
            ..History::default()
        };
        self.config.history.truncate(self.new_history_from);
        self.push_layer(layer, history, stored)
    }

    /// Appends the history entry of a step that made no layer (`ENV`, `CMD`, ...).
    pub fn add_history(&mut self, mut history: History) -> &mut Self {
        history.empty_layer = true;
        self.config.history.push(history);
        self
    }

    /// Writes the config blob and then the manifest blob to `store`.
    pub fn write(&self, store: &BlobStore) -> Result<BuiltImage, ImageError> {
        for l in &self.new_layers {
            if !store.has(&l.digest, l.size) {
                return Err(ImageError::LayerMissing {
                    digest: l.digest.clone(),
                    size: l.size,
                });
            }
        }
        let created = rfc3339(self.created.unwrap_or_else(now_unix));
        let mut config = self.config.clone();
        config.created = Some(created.clone());
        for h in config.history.iter_mut().skip(self.new_history_from) {
            if h.created.is_none() {
                h.created = Some(created.clone());
            }
        }
        let config_bytes = to_canonical_vec(&config, "image config")?;
        let (config_digest, config_size) = store.put(&config_bytes)?;
        let config_desc =
            Descriptor::new(self.format.config_media_type(), config_digest, config_size);

        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let mut d = l.clone();
            d.media_type = self.format.translate_layer(&l.media_type)?.to_string();
            layers.push(d);
        }
        let media_type = self.format.manifest_media_type();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            artifact_type: None,
            config: config_desc.clone(),
            layers: layers.clone(),
            subject: None,
            annotations: match self.format {
                ImageFormat::Oci => self.annotations.clone(),
                ImageFormat::Docker => BTreeMap::new(),
            },
        };
        let manifest_bytes = to_canonical_vec(&manifest, "image manifest")?;
        let (digest, _) = store.put(&manifest_bytes)?;
        Ok(BuiltImage {
            digest,
            manifest: manifest_bytes,
            media_type,
            config: config_desc,
            image_config: config,
            layers,
        })
    }
}
