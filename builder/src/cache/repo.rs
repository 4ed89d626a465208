//! The registry cache (`--cache-repo`), in kaniko's shape: each cached step is a one-layer image
//! (no layer for a step that made none) tagged with its key's hex in the cache repository.
//!
//! Unlike kaniko, everything a lookup needs is in the manifest's annotations (the layer's
//! diff_id, the history text, when it was cached), so a hit costs one manifest GET: neither the
//! config nor the layer is downloaded. The builder later mounts the layer into the destination
//! from the cache repository. The config still records the diff_id and history, so the cached
//! image is a valid image any tool can read.

use super::error::CacheError;
use super::key::{CacheKey, FORMAT_VERSION};
use super::local::CachedStep;
use crate::blob::{BlobStore, Digest};
use crate::image::time::{now_unix, rfc3339};
use crate::image::{parse_manifest, History, ImageBuilder, ParsedManifest};
use crate::path_io::IoAt;
use crate::plan::Platform;
use crate::registry::{ImageToPush, Reference, RegistryClient, RegistryError, Repository};
use std::time::Duration;

/// Annotation: the kiln cache format the image was written in.
pub const ANNOTATION_FORMAT: &str = "dev.kiln.cache.format";
/// Annotation: the layer's diff_id.
pub const ANNOTATION_DIFF_ID: &str = "dev.kiln.cache.diff-id";
/// Annotation: the step's history text.
pub const ANNOTATION_CREATED_BY: &str = "dev.kiln.cache.created-by";
/// The standard OCI annotation for when the image was made; `--cache-ttl` counts from it.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// The step cache in a registry repository.
#[derive(Debug, Clone)]
pub struct RepoCache {
    client: RegistryClient,
    repo: Repository,
    ttl: Duration,
    platform: Platform,
}

impl RepoCache {
    /// A cache in `repo`; entries older than `ttl` are misses. (`RegistryClient` is already a
    /// shared handle, so it is taken by value rather than in an `Arc`.)
    pub fn new(client: RegistryClient, repo: Repository, ttl: Duration) -> RepoCache {
        RepoCache {
            client,
            repo,
            ttl,
            platform: Platform::host(),
        }
    }

    /// The platform written in cached images' configs (the build's target; the host's by default).
    pub fn with_platform(mut self, platform: Platform) -> RepoCache {
        self.platform = platform;
        self
    }

    /// The repository the cache lives in (the source to mount cached layers from).
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    fn reference(&self, key: &CacheKey) -> Reference {
        Reference {
            repository: self.repo.clone(),
            tag: Some(key.hex().to_string()),
            digest: None,
        }
    }

    /// The step cached under `key`, from the manifest alone. Entries of another format, not made
    /// by kiln, or older than the ttl are misses.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<CachedStep>, CacheError> {
        let m = match self.client.get_manifest(&self.reference(key)).await {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let ParsedManifest::Image(img) = parse_manifest(Some(&m.media_type), &m.bytes)? else {
            return Ok(None);
        };
        let ann = &img.annotations;
        if ann.get(ANNOTATION_FORMAT).map(String::as_str) != Some(FORMAT_VERSION) {
            return Ok(None);
        }
        let Some(created) = ann
            .get(ANNOTATION_CREATED)
            .and_then(|c| crate::rfc3339::parse(c))
        else {
            return Ok(None);
        };
        let age = now_unix().saturating_sub(created);
        if age < 0 || age as u64 > self.ttl.as_secs() {
            return Ok(None);
        }
        let Some(created_by) = ann.get(ANNOTATION_CREATED_BY) else {
            return Ok(None);
        };
        let layer = match (img.layers.as_slice(), ann.get(ANNOTATION_DIFF_ID)) {
            ([], _) => None,
            ([l], Some(diff_id)) => {
                let Ok(diff_id) = diff_id.parse() else {
                    return Ok(None);
                };
                Some(l.layer(diff_id))
            }
            _ => return Ok(None),
        };
        Ok(Some(CachedStep {
            layer,
            created_by: created_by.clone(),
        }))
    }

    /// Pushes `step` as the image tagged with `key`. Its layer (if any) must be in `store`;
    /// the config and manifest are written there too. The image is written as OCI, so a Docker
    /// layer media type comes back as its OCI equivalent.
    pub async fn put(
        &self,
        key: &CacheKey,
        step: &CachedStep,
        store: &BlobStore,
    ) -> Result<(), CacheError> {
        let now = now_unix();
        let mut b = ImageBuilder::scratch(&self.platform);
        b.created(now)
            .annotation(ANNOTATION_FORMAT, FORMAT_VERSION)
            .annotation(ANNOTATION_CREATED, rfc3339(now))
            .annotation(ANNOTATION_CREATED_BY, step.created_by.clone());
        let history = History::created_by(step.created_by.clone());
        match &step.layer {
            Some(l) => {
                b.annotation(ANNOTATION_DIFF_ID, l.diff_id.to_string());
                b.add_layer(l.clone(), history);
            }
            None => {
                b.add_history(history);
            }
        }
        let image = ImageToPush::from(&b.write(store)?);
        self.client
            .push_image(&[self.reference(key)], &image, store)
            .await?;
        Ok(())
    }
}

/// The artifact type of a layer index published in a cache repository.
pub const INDEX_ARTIFACT_TYPE: &str = "application/vnd.kiln.layer-index.v1";
/// The media type of the index blob (gzip'd JSON lines, see [`crate::layer::LayerIndex`]).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.kiln.layer-index.v1.jsonl+gzip";
/// OCI's empty config, which an artifact manifest points at.
const EMPTY_CONFIG: &[u8] = b"{}";
const EMPTY_CONFIG_TYPE: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The largest index blob fetched: far above any real layer's (a million entries).
const MAX_INDEX_BYTES: u64 = 256 << 20;

/// The tag under which the index of the layer `diff_id` is published. Distribution 2.8 has no
/// referrers API, so the index is found by a name derived from the layer (as cosign's tag
/// fallback does): one GET or HEAD, no listing.
pub fn index_tag(diff_id: &Digest) -> String {
    format!("kiln-index-{}", diff_id.hex())
}

impl RepoCache {
    fn index_reference(&self, diff_id: &Digest) -> Reference {
        Reference {
            repository: self.repo.clone(),
            tag: Some(index_tag(diff_id)),
            digest: None,
        }
    }

    /// Whether the index of `diff_id` is published (a HEAD of its tag).
    pub async fn has_index(&self, diff_id: &Digest) -> Result<bool, CacheError> {
        let r = self.index_reference(diff_id);
        Ok(self.client.head_manifest(&r).await?.is_some())
    }

    /// Publishes `bytes`, the encoded index of `diff_id`, as an OCI artifact tagged
    /// [`index_tag`]: the blobs first, so the tag never names a manifest whose blob is missing.
    pub async fn put_index(
        &self,
        diff_id: &Digest,
        bytes: &[u8],
        store: &BlobStore,
    ) -> Result<(), CacheError> {
        let (config, config_size) = store.put(EMPTY_CONFIG)?;
        let (blob, blob_size) = store.put(bytes)?;
        for (digest, size) in [(&config, config_size), (&blob, blob_size)] {
            let b = crate::registry::BlobToPush {
                digest: digest.clone(),
                size,
                mount_from: None,
            };
            self.client.ensure_blob(&self.repo, &b, store).await?;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": INDEX_ARTIFACT_TYPE,
            "config": {
                "mediaType": EMPTY_CONFIG_TYPE,
                "digest": config.to_string(),
                "size": config_size,
            },
            "layers": [{
                "mediaType": INDEX_MEDIA_TYPE,
                "digest": blob.to_string(),
                "size": blob_size,
            }],
            "annotations": { ANNOTATION_DIFF_ID: diff_id.to_string() },
        });
        let bytes = serde_json::to_vec(&manifest).expect("a JSON value serialises");
        self.client
            .put_manifest(&self.repo, &index_tag(diff_id), &bytes, OCI_MANIFEST)
            .await?;
        Ok(())
    }

    /// The encoded index of `diff_id` when the repository has one (its blob lands in `store`);
    /// `None` when it has none, or something else under its tag.
    pub async fn get_index(
        &self,
        diff_id: &Digest,
        store: &BlobStore,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        let m = match self
            .client
            .get_manifest(&self.index_reference(diff_id))
            .await
        {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.bytes) else {
            return Ok(None);
        };
        if v["artifactType"] != INDEX_ARTIFACT_TYPE
            || v["annotations"][ANNOTATION_DIFF_ID] != diff_id.to_string()
        {
            return Ok(None);
        }
        let layer = &v["layers"][0];
        let (Some(digest), Some(size)) = (
            layer["digest"]
                .as_str()
                .and_then(|d| d.parse::<Digest>().ok()),
            layer["size"].as_u64(),
        ) else {
            return Ok(None);
        };
        if layer["mediaType"] != INDEX_MEDIA_TYPE || size > MAX_INDEX_BYTES {
            return Ok(None);
        }
        self.client
            .pull_blob(&self.repo, &digest, Some(size), store)
            .await?;
        let path = store.path(&digest);
        let bytes = std::fs::read(&path).at(&path)?;
        Ok(Some(bytes))
    }
}
