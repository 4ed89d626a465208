//! Writing to registries in the order that keeps tags safe: every blob (HEAD, mount or upload,
//! in parallel), then the config, then the manifest by digest, and only then the tags, so a
//! failure part-way leaves no tag pointing at an incomplete image.

use super::client::{status_error, Body, RegistryClient, Req};
use super::error::{Action, RegistryError};
use super::upload::{Start, Upload};
use crate::blob::{BlobStore, Digest};
use crate::reference::{Reference, Repository};
use crate::transfer::{BlobProgress, Transfer};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use kiln_registry_auth::{Scope, ScopeSet};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use std::sync::Arc;

/// A blob of the local store to make present in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobToPush {
    /// Its digest (the store's file name).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// A repository on the same registry that already has it (a base image's), to mount from.
    pub mount_from: Option<Repository>,
}

/// How a blob got to be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The repository had it already.
    Existed,
    /// Mounted from another repository: no bytes sent.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// An image ready to push: its blobs are in the store, its manifest bytes are final.
#[derive(Debug, Clone)]
pub struct ImageToPush {
    /// Layers (any order).
    pub layers: Vec<BlobToPush>,
    /// The config blob.
    pub config: BlobToPush,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// The manifest's media type.
    pub media_type: String,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest (the same in every destination).
    pub digest: Digest,
    /// Per destination repository, what happened to each blob.
    pub blobs: Vec<(Repository, Digest, BlobOutcome)>,
}

fn push_scopes(repo: &Repository) -> ScopeSet {
    ScopeSet::new().with(Scope::push(repo.name.clone()))
}

impl RegistryClient {
    /// Makes blob `blob` present in `repo`: HEAD, else a cross-repository mount when a source
    /// is known, else an upload of the store's file.
    pub async fn ensure_blob(
        &self,
        repo: &Repository,
        blob: &BlobToPush,
        store: &BlobStore,
    ) -> Result<BlobOutcome, RegistryError> {
        self.ensure_blob_counted(repo, blob, store, None).await
    }

    /// [`RegistryClient::ensure_blob`], reporting the bytes sent to `progress` and finishing it
    /// once the blob is present (also when it existed or was mounted).
    pub async fn ensure_blob_counted(
        &self,
        repo: &Repository,
        blob: &BlobToPush,
        store: &BlobStore,
        progress: Option<&Arc<BlobProgress>>,
    ) -> Result<BlobOutcome, RegistryError> {
        let outcome = self.ensure_blob_at(repo, blob, store, progress).await?;
        if let Some(p) = progress {
            p.finish();
        }
        Ok(outcome)
    }

    async fn ensure_blob_at(
        &self,
        repo: &Repository,
        blob: &BlobToPush,
        store: &BlobStore,
        progress: Option<&Arc<BlobProgress>>,
    ) -> Result<BlobOutcome, RegistryError> {
        let ep = self.endpoint(&repo.registry)?;
        let scopes = push_scopes(repo);
        if let Some(size) = self
            .blob_exists_at(&ep, repo, &blob.digest, &scopes, Action::Push)
            .await?
        {
            if size == blob.size || size == 0 {
                return Ok(BlobOutcome::Existed);
            }
        }
        let mut session = None;
        if let Some(src) = blob
            .mount_from
            .as_ref()
            .filter(|s| s.registry == repo.registry && s.name != repo.name)
        {
            // The token must also grant pull on the source, or token registries refuse the mount.
            let mount_scopes = push_scopes(repo).with(Scope::pull(src.name.clone()));
            match self
                .start_upload(&ep, repo, &mount_scopes, Some((&blob.digest, src)))
                .await
            {
                Ok(Start::Mounted) => return Ok(BlobOutcome::Mounted),
                Ok(Start::Session(loc)) => session = Some(loc),
                // No right on the source, or it lacks the blob: upload instead.
                Err(RegistryError::Denied { .. }) | Err(RegistryError::NotFound { .. }) => {}
                Err(RegistryError::Rejected { .. }) => {}
                Err(RegistryError::Status { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !store.has(&blob.digest, blob.size) {
            // A blob left remote for a mount the registry refused (mounting disabled, no pull
            // right on the source): fetched from its source here, then uploaded like any other.
            match &blob.mount_from {
                Some(src) => {
                    self.pull_blob(src, &blob.digest, Some(blob.size), store)
                        .await?;
                }
                None => return Err(crate::blob::BlobError::Missing(blob.digest.clone()).into()),
            }
        }
        let path = store.path(&blob.digest);
        let u = Upload {
            ep: &ep,
            repo,
            scopes: &scopes,
            digest: &blob.digest,
            size: blob.size,
            path: &path,
            progress,
        };
        self.upload(&u, session).await?;
        Ok(BlobOutcome::Uploaded)
    }

    /// PUTs a manifest's exact bytes under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let ep = self.endpoint(&repo.registry)?;
        let scopes = push_scopes(repo);
        let digest = Digest::of(bytes);
        let url = self.url(&ep, repo, &format!("manifests/{reference}"))?;
        let op = format!("put manifest {reference}");
        let req = Req::new(
            Method::PUT,
            url.clone(),
            &ep,
            repo,
            &scopes,
            Action::Push,
            &op,
        )
        .header(CONTENT_TYPE, media_type)
        .body(Body::Bytes(bytes::Bytes::copy_from_slice(bytes)));
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::CREATED && resp.status() != StatusCode::OK {
            return Err(status_error(repo, &op, resp).await);
        }
        let answered = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok());
        if let Some(a) = answered {
            if a != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: repo.registry.clone(),
                    repository: repo.name.clone(),
                    what: "stored manifest".into(),
                    expected: digest,
                    actual: a,
                });
            }
        }
        Ok(digest)
    }

    /// Pushes `image` to every destination: all blobs of all repositories (in parallel,
    /// mounting from the first repository pushed on the same registry), the manifest by digest,
    /// and then the destinations' tags.
    pub async fn push_image(
        &self,
        destinations: &[Reference],
        image: &ImageToPush,
        store: &BlobStore,
    ) -> Result<PushReport, RegistryError> {
        self.push_image_counted(destinations, image, store, None)
            .await
    }

    /// [`RegistryClient::push_image`], counting the layers of every destination repository in
    /// `layers` (announced all at once first, so its totals are the push's from the start; a
    /// layer the registry has or mounts counts as sent). The config is not counted.
    pub async fn push_image_counted(
        &self,
        destinations: &[Reference],
        image: &ImageToPush,
        store: &BlobStore,
        layers: Option<&Arc<Transfer>>,
    ) -> Result<PushReport, RegistryError> {
        let repos = repositories(destinations);
        let digest = Digest::of(&image.manifest);
        let mut report = PushReport {
            digest: digest.clone(),
            blobs: Vec::new(),
        };
        let parallel = self.inner.config.parallel_uploads.max(1);
        let mut counted: Vec<Vec<Option<Arc<BlobProgress>>>> = repos
            .iter()
            .map(|_| {
                image
                    .layers
                    .iter()
                    .map(|l| layers.map(|t| Arc::new(t.blob(Some(l.size)))))
                    .collect()
            })
            .collect();
        for (i, repo) in repos.iter().enumerate() {
            let progress = std::mem::take(&mut counted[i]);
            let layers: Vec<BlobToPush> = image
                .layers
                .iter()
                .map(|b| with_source(&repos, i, b))
                .collect();
            let outcomes: Vec<(Digest, BlobOutcome)> =
                stream::iter(layers.into_iter().zip(progress))
                    .map(|(b, p)| async move {
                        let o = self
                            .ensure_blob_counted(repo, &b, store, p.as_ref())
                            .await?;
                        Ok::<_, RegistryError>((b.digest, o))
                    })
                    .buffer_unordered(parallel)
                    .try_collect()
                    .await?;
            let config = with_source(&repos, i, &image.config);
            let co = self.ensure_blob(repo, &config, store).await?;
            report
                .blobs
                .extend(outcomes.into_iter().map(|(d, o)| ((*repo).clone(), d, o)));
            report.blobs.push(((*repo).clone(), config.digest, co));
            self.put_manifest(
                repo,
                &digest.to_string(),
                &image.manifest,
                &image.media_type,
            )
            .await?;
        }
        for d in destinations {
            if let Some(tag) = &d.tag {
                self.put_manifest(&d.repository, tag, &image.manifest, &image.media_type)
                    .await?;
            }
        }
        Ok(report)
    }

    /// Makes `blob` present in every repository of `destinations` ahead of their image's push
    /// (so a layer can be sent while the build goes on), as
    /// [`RegistryClient::push_image_counted`] would: each repository once, one on the registry
    /// of a repository done before mounting from it, each counted in `layers`.
    pub async fn ensure_blob_everywhere(
        &self,
        destinations: &[Reference],
        blob: &BlobToPush,
        store: &BlobStore,
        layers: Option<&Arc<Transfer>>,
    ) -> Result<Vec<(Repository, BlobOutcome)>, RegistryError> {
        let repos = repositories(destinations);
        let counted: Vec<Option<Arc<BlobProgress>>> = repos
            .iter()
            .map(|_| layers.map(|t| Arc::new(t.blob(Some(blob.size)))))
            .collect();
        let mut out = Vec::with_capacity(repos.len());
        for (i, (repo, p)) in repos.iter().zip(counted).enumerate() {
            let b = with_source(&repos, i, blob);
            let o = self
                .ensure_blob_counted(repo, &b, store, p.as_ref())
                .await?;
            out.push(((*repo).clone(), o));
        }
        Ok(out)
    }
}

/// The repositories of `destinations`, each once, in order.
fn repositories(destinations: &[Reference]) -> Vec<&Repository> {
    let mut repos: Vec<&Repository> = Vec::new();
    for d in destinations {
        if !repos.contains(&&d.repository) {
            repos.push(&d.repository);
        }
    }
    repos
}

/// `blob` as pushed to `repos[i]`: mounted from the first repository before it on the same
/// registry, which has it by then.
fn with_source(repos: &[&Repository], i: usize, blob: &BlobToPush) -> BlobToPush {
    let mut b = blob.clone();
    if let Some(e) = repos[..i].iter().find(|r| r.registry == repos[i].registry) {
        b.mount_from = Some((*e).clone());
    }
    b
}

impl From<&crate::image::Descriptor> for BlobToPush {
    /// The blob a descriptor names, as the local store holds it (no mount source).
    fn from(d: &crate::image::Descriptor) -> BlobToPush {
        BlobToPush {
            digest: d.digest.clone(),
            size: d.size,
            mount_from: None,
        }
    }
}

impl From<&crate::image::BuiltImage> for ImageToPush {
    /// The image as written to the blob store, ready to push (no mount sources).
    fn from(image: &crate::image::BuiltImage) -> ImageToPush {
        ImageToPush {
            layers: image.layers.iter().map(BlobToPush::from).collect(),
            config: BlobToPush::from(&image.config),
            manifest: image.manifest.clone(),
            media_type: image.media_type.to_string(),
        }
    }
}
