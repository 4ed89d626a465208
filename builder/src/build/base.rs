//! Base images named in FROM (and `COPY --from=image`): their manifest and config, fetched once
//! per build. Only the manifest and the config are read here; layers stay in the registry until a
//! step needs the files.

use super::error::BuildError;
use super::layers::LayerRef;
use crate::blob::{BlobStore, Digest};
use crate::image::{parse_manifest, select_manifest, ImageConfig, Layer, ParsedManifest};
use crate::plan::{BaseConfig, BaseImages, Platform};
use crate::registry::{Reference, RegistryClient};
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

type Resolved = Result<Arc<ResolvedBase>, String>;

/// Resolves references through a registry client, remembering each answer (and each failure,
/// reported when a stage needs that base).
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
    pub fn resolve(
        &self,
        name: &str,
        platform: &Platform,
    ) -> Result<Arc<ResolvedBase>, BuildError> {
        let key = (name.to_string(), platform.to_string());
        if let Some(r) = self.seen.lock().expect("base cache").get(&key) {
            return r.clone().map_err(|message| base_err(name, message));
        }
        let r = self.fetch(name, platform).map(Arc::new);
        self.seen.lock().expect("base cache").insert(key, r.clone());
        r.map_err(|message| base_err(name, message))
    }

    fn fetch(&self, name: &str, platform: &Platform) -> Result<ResolvedBase, String> {
        let reference = Reference::parse(name).map_err(|e| e.to_string())?;
        if self.insecure_pull {
            self.client.allow_plain_http(&reference.repository.registry);
        }
        let chain = |e: &dyn std::error::Error| crate::error::chain_line(e);
        self.runtime.block_on(async {
            let mut m = self
                .client
                .get_manifest(&reference)
                .await
                .map_err(|e| chain(&e))?;
            let mut parsed =
                parse_manifest(Some(&m.media_type), &m.bytes).map_err(|e| chain(&e))?;
            if let ParsedManifest::Index(index) = &parsed {
                let chosen = select_manifest(index, platform)
                    .ok_or_else(|| format!("no image for platform {platform} in its index"))?;
                let by_digest = Reference {
                    repository: reference.repository.clone(),
                    tag: None,
                    digest: Some(chosen.digest.clone()),
                };
                m = self
                    .client
                    .get_manifest(&by_digest)
                    .await
                    .map_err(|e| chain(&e))?;
                parsed = parse_manifest(Some(&m.media_type), &m.bytes).map_err(|e| chain(&e))?;
            }
            let ParsedManifest::Image(manifest) = parsed else {
                return Err("its platform entry is an index again".to_string());
            };
            let repo = &reference.repository;
            self.client
                .pull_blob(
                    repo,
                    &manifest.config.digest,
                    Some(manifest.config.size),
                    &self.store,
                )
                .await
                .map_err(|e| chain(&e))?;
            let bytes = std::fs::read(self.store.path(&manifest.config.digest))
                .map_err(|e| format!("reading its config: {e}"))?;
            let config = ImageConfig::parse(&bytes).map_err(|e| chain(&e))?;
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(format!(
                    "its manifest lists {} layers but its config {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ));
            }
            let layers = manifest
                .layers
                .iter()
                .zip(&config.rootfs.diff_ids)
                .map(|(d, diff_id)| LayerRef {
                    layer: Layer {
                        digest: d.digest.clone(),
                        size: d.size,
                        diff_id: diff_id.clone(),
                        media_type: d.media_type.clone(),
                    },
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

fn base_err(name: &str, message: String) -> BuildError {
    BuildError::Base {
        reference: name.to_string(),
        message,
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
