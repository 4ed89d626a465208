//! Base images named in FROM (and `COPY --from=image`): their manifest and config, fetched once
//! per build. Only the manifest and the config are read here; layers stay in the registry until a
//! step needs the files.
//!
//! The cache directory answers when it can. A reference pinned by digest is read from the blob
//! store when its manifest is there (content-addressed, so never stale), with no request at all.
//! A tag is always asked of the registry, since tags move; what it resolved to is recorded for
//! [`crate::cache::lookup_base`], as `kiln warm` records it. When the registry cannot answer (no
//! connection, rate limited, a server error) and such a record exists, the build uses it and says
//! so: a Docker Hub rate limit does not fail a build whose base was warmed. A registry's real
//! answer (not found, denied) is never overridden.

use super::layers::LayerRef;
use super::progress::Progress;
use crate::blob::{BlobStore, Digest};
use crate::cache::warm::platform_manifest;
use crate::cache::{lookup_base, read_manifest, remember_base, CachedBase};
use crate::cache_dir::CacheDir;
use crate::image::{
    parse_manifest, select_manifest, ImageConfig, ImageError, ImageManifest, ParsedManifest,
};
use crate::layer::toc::{index_from_toc, TocPosition};
use crate::layer::LayerIndex;
use crate::path_io::IoAt;
use crate::plan::{BaseConfig, BaseImages, Platform};
use crate::registry::{Reference, RegistryClient, RegistryError, Repository};
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

/// The platform's image manifest a reference led to.
struct Found {
    /// What the reference itself resolved to: an index, or the image manifest.
    top: Digest,
    /// The image manifest's digest and media type.
    digest: Digest,
    media_type: String,
    manifest: ImageManifest,
}

/// Resolves references through a registry client, remembering each answer (and each failure,
/// reported when a stage needs that base, at the line naming it).
pub struct BaseResolver {
    client: RegistryClient,
    runtime: Arc<tokio::runtime::Runtime>,
    store: BlobStore,
    seen: Mutex<HashMap<(String, String), Resolved>>,
    insecure_pull: bool,
    cache_dir: Option<CacheDir>,
    progress: Option<Progress>,
    /// Layers of resolved bases that carry a table of contents (zstd:chunked), by diff_id:
    /// where the layer is and where in it the table is.
    tocs: Mutex<HashMap<Digest, (Repository, Digest, TocPosition)>>,
}

impl BaseResolver {
    /// A resolver fetching with `client` on `runtime`, keeping manifests and configs in `store`.
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
            cache_dir: None,
            progress: None,
            tocs: Mutex::new(HashMap::new()),
        }
    }

    /// Pulls every image over plain HTTP (kaniko's `--insecure-pull`), and so also pushes to
    /// those images' registries that way.
    pub fn with_insecure_pull(mut self, on: bool) -> Self {
        self.insecure_pull = on;
        self
    }

    /// Records what tags resolved to in `dir`, and falls back on those records (and `kiln
    /// warm`'s) when the registry cannot answer, saying so on `progress`.
    pub fn with_cache_dir(mut self, dir: CacheDir, progress: Progress) -> Self {
        self.cache_dir = Some(dir);
        self.progress = Some(progress);
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
        if let Some(found) = self.pinned_in_store(&reference, platform) {
            return self.resolved(&reference, found);
        }
        let found = match self
            .runtime
            .block_on(self.ask_registry(&reference, platform))
        {
            Ok(found) => {
                self.remember(&reference, platform, &found);
                found
            }
            Err(e) => match self.recorded(&reference, platform, &e) {
                Some(found) => found,
                None => return Err(e),
            },
        };
        self.resolved(&reference, found)
    }

    /// A digest-pinned reference whose manifest (and, for an index, the platform's manifest)
    /// the store holds.
    fn pinned_in_store(&self, reference: &Reference, platform: &Platform) -> Option<Found> {
        let top = reference.digest.clone()?;
        let read = |d: &Digest| -> Option<ParsedManifest> {
            let bytes = std::fs::read(self.store.path(d)).ok()?;
            parse_manifest(None, &bytes).ok()
        };
        let (digest, parsed) = match read(&top)? {
            ParsedManifest::Index(index) => {
                let chosen = select_manifest(&index, platform)?;
                (chosen.digest.clone(), read(&chosen.digest)?)
            }
            image => (top.clone(), image),
        };
        let ParsedManifest::Image(manifest) = parsed else {
            return None;
        };
        Some(Found {
            top,
            digest,
            media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| crate::image::media::OCI_MANIFEST.to_string()),
            manifest: *manifest,
        })
    }

    async fn ask_registry(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Found, crate::Error> {
        let m = platform_manifest(&self.client, &self.store, reference, platform).await?;
        Ok(Found {
            top: m.top,
            digest: m.manifest.digest,
            media_type: m.manifest.media_type,
            manifest: m.image,
        })
    }

    /// Records a tag's answer for builds that find the registry unavailable. Best effort: a
    /// record that cannot be written costs only that fallback, never this build.
    fn remember(&self, reference: &Reference, platform: &Platform, found: &Found) {
        let Some(dir) = &self.cache_dir else { return };
        if reference.digest.is_some() {
            return;
        }
        let base = CachedBase {
            digest: found.top.clone(),
            manifest: found.digest.clone(),
            media_type: found.media_type.clone(),
            config: found.manifest.config.digest.clone(),
        };
        let _ = remember_base(dir, reference, platform, &base);
    }

    /// The recorded answer for `reference`, when `error` says the registry could not answer.
    fn recorded(
        &self,
        reference: &Reference,
        platform: &Platform,
        error: &crate::Error,
    ) -> Option<Found> {
        let e = match error {
            crate::Error::Registry(e)
            | crate::Error::Cache(crate::cache::CacheError::Registry(e)) => e,
            _ => return None,
        };
        if !unavailable(e) {
            return None;
        }
        let dir = self.cache_dir.as_ref()?;
        let base = lookup_base(dir, reference, platform)?;
        let manifest = read_manifest(dir, &base).ok()?;
        if let Some(p) = &self.progress {
            p.line(&format!(
                "warning: {e}; using {reference} as last resolved here ({}, recorded by kiln warm or an earlier build)",
                base.manifest
            ));
        }
        Some(Found {
            top: base.digest,
            digest: base.manifest,
            media_type: base.media_type,
            manifest,
        })
    }

    /// The base from its image manifest: its config read (from the store when there), its
    /// layers left where they are.
    fn resolved(&self, reference: &Reference, found: Found) -> Result<ResolvedBase, crate::Error> {
        let repo = &reference.repository;
        let manifest = &found.manifest;
        self.runtime.block_on(self.client.pull_blob(
            repo,
            &manifest.config.digest,
            Some(manifest.config.size),
            &self.store,
        ))?;
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
        let mut tocs = self.tocs.lock().expect("tocs");
        for (d, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if let Some(pos) = TocPosition::from_annotations(&d.annotations) {
                tocs.insert(diff_id.clone(), (repo.clone(), d.digest.clone(), pos));
            }
        }
        drop(tocs);
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
            manifest_digest: found.digest,
            reference: reference.clone(),
            config,
            layers,
        })
    }

    /// The index of base layer `diff_id` read from the table of contents it carries, with one
    /// range request to its registry; `None` when it carries none. The inner `None`: more paths
    /// than an index holds.
    pub fn toc_index(&self, diff_id: &Digest) -> Option<Result<Option<LayerIndex>, crate::Error>> {
        let (repo, blob, pos) = self.tocs.lock().expect("tocs").get(diff_id).cloned()?;
        let got = self.runtime.block_on(
            self.client
                .get_blob_range(&repo, &blob, pos.offset, pos.length),
        );
        Some(match got {
            Ok(bytes) => index_from_toc(&bytes, &pos).map_err(Into::into),
            Err(e) => Err(e.into()),
        })
    }
}

/// Whether `e` means the registry could not answer at all, as opposed to answering no: a
/// connection that failed, a rate limit, a server error (each after the client's retries).
fn unavailable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } => true,
        RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
        _ => false,
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
