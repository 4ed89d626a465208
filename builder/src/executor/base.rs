//! Base images named in FROM (and `COPY --from=image`): their manifest and config, fetched once
//! per build. Only the manifest and the config are read here; layers stay in the registry until a
//! step needs the files.

use super::error::BuildError;
use super::layers::LayerRef;
use crate::blob::{BlobStore, Digest};
use crate::image::{parse_manifest, select_manifest, ImageConfig, ImageError, ParsedManifest};
use crate::path_io::IoAt;
use crate::plan::{BaseConfig, BaseImages, Platform};
use crate::registry::{Reference, RegistryClient, RegistryError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A base image as far as the build needs it before any file is read.
#[derive(Debug, Clone)]
pub struct ResolvedBase {
    /// Where it lives.
    pub reference: Reference,
    /// Digest of the image manifest chosen for the platform.
    pub manifest_digest: Digest,
    /// Its config.
    pub config: ImageConfig,
    /// Its layers, bottom first, with where to fetch or mount them from.
    pub layers: Vec<LayerRef>,
}

type Resolved = Result<Arc<ResolvedBase>, Arc<crate::Error>>;

/// Resolves references through a registry client, remembering each answer (and each failure,
/// reported when a stage needs that base, at the line naming it).
pub struct BaseResolver {
    client: RegistryClient,
    runtime: Arc<tokio::runtime::Runtime>,
    store: BlobStore,
    seen: Mutex<HashMap<(String, String), Resolved>>,
    insecure_pull: bool,
}

impl BaseResolver {
    /// A resolver fetching with `client` on `runtime`, keeping configs in `store`.
    pub fn new(
        client: RegistryClient,
        runtime: Arc<tokio::runtime::Runtime>,
        store: BlobStore,
    ) -> Self {
        BaseResolver {
            client,
            runtime,
            store,
            seen: Mutex::new(HashMap::new()),
            insecure_pull: false,
        }
    }

    /// Pulls every image over plain HTTP (kaniko's `--insecure-pull`), and so also pushes to
    /// those images' registries that way.
    pub fn with_insecure_pull(mut self, on: bool) -> Self {
        self.insecure_pull = on;
        self
    }

    /// The image `name` for `platform`.
    ///
    /// # Errors
    /// Why the image cannot be used; the same error each time it is asked for.
    pub fn resolve(&self, name: &str, platform: &Platform) -> Resolved {
        let key = (name.to_string(), platform.to_string());
        if let Some(r) = self.seen.lock().expect("base cache").get(&key) {
            return r.clone();
        }
        let r = self.fetch(name, platform).map(Arc::new).map_err(Arc::new);
        self.seen.lock().expect("base cache").insert(key, r.clone());
        r
    }

    fn fetch(&self, name: &str, platform: &Platform) -> Result<ResolvedBase, crate::Error> {
        let reference = Reference::parse(name).map_err(RegistryError::from)?;
        if self.insecure_pull {
            self.client.allow_plain_http(&reference.repository.registry);
        }
        self.runtime.block_on(async {
            let mut m = self.client.get_manifest(&reference).await?;
            let mut parsed = parse_manifest(Some(&m.media_type), &m.bytes)?;
            if let ParsedManifest::Index(index) = &parsed {
                let chosen = select_manifest(index, platform)
                    .ok_or_else(|| BuildError::NoPlatform(platform.to_string()))?;
                let by_digest = Reference {
                    repository: reference.repository.clone(),
                    tag: None,
                    digest: Some(chosen.digest.clone()),
                };
                m = self.client.get_manifest(&by_digest).await?;
                parsed = parse_manifest(Some(&m.media_type), &m.bytes)?;
            }
            let ParsedManifest::Image(manifest) = parsed else {
                return Err(BuildError::NestedIndex.into());
            };
            let repo = &reference.repository;
            self.client
                .pull_blob(
                    repo,
                    &manifest.config.digest,
                    Some(manifest.config.size),
                    &self.store,
                )
                .await?;
            let config_path = self.store.path(&manifest.config.digest);
            let bytes = std::fs::read(&config_path).at(&config_path)?;
            let config = ImageConfig::parse(&bytes)?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(ImageError::LayerCountMismatch {
                    layers: manifest.layers.len(),
                    diff_ids: config.rootfs.diff_ids.len(),
                }
                .into());
            }
            let layers = manifest
                .layers
                .iter()
                .zip(&config.rootfs.diff_ids)
                .map(|(d, diff_id)| LayerRef {
                    layer: d.layer(diff_id.clone()),
                    source: Some(repo.clone()),
                })
                .collect();
            Ok(ResolvedBase {
                manifest_digest: m.digest.clone(),
                reference: reference.clone(),
                config,
                layers,
            })
        })
    }
}

impl BaseImages for BaseResolver {
    fn config(&self, reference: &str, platform: &Platform) -> Option<BaseConfig> {
        let base = self.resolve(reference, platform).ok()?;
        let c = &base.config.config;
        Some(BaseConfig {
            env: c
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.clone(), String::new()),
                })
                .collect(),
            onbuild: c.on_build.clone(),
        })
    }
}
