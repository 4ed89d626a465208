//! Reading from registries: manifests (whole, size-capped) and blobs (streamed into the blob
//! store, digest checked on the way, never whole in memory).

use super::client::{protocol_error, status_error, transport_error, Endpoint, RegistryClient, Req};
use super::error::{Action, RegistryError};
use crate::blob::{BlobError, BlobStore, BlobWriter, Digest};
use crate::reference::{Reference, Repository};
use crate::transfer::BlobProgress;
use kiln_registry_auth::{Scope, ScopeSet};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::io::Write;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest type kiln reads; registries answer 404 or 400 to a request without it.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest as the registry sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The exact bytes (their digest is the image's identity).
    pub bytes: Vec<u8>,
    /// `Content-Type` as sent.
    pub media_type: String,
    /// Digest of `bytes`.
    pub digest: Digest,
}

/// What a manifest HEAD tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `Docker-Content-Digest`, when the registry sent a valid one.
    pub digest: Option<Digest>,
    /// `Content-Type`.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
}

fn pull_scopes(repo: &Repository) -> ScopeSet {
    ScopeSet::new().with(Scope::pull(repo.name.clone()))
}

fn content_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or(s).trim().to_string())
}

fn header_digest(resp: &reqwest::Response) -> Option<Digest> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

impl RegistryClient {
    /// Tries `f` on each pull endpoint of `registry` (mirrors first for Docker Hub); the last
    /// endpoint's error is the one reported.
    async fn on_pull_endpoints<T, F, Fut>(&self, registry: &str, f: F) -> Result<T, RegistryError>
    where
        F: Fn(Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let endpoints = self.pull_endpoints(registry)?;
        let mut last = None;
        for ep in endpoints {
            match f(ep).await {
                Ok(v) => return Ok(v),
                // A mirror that lacks the image or fails falls through to the next endpoint.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Setup(format!("no endpoint for {registry}"))))
    }

    /// Fetches the manifest `reference` names (by digest when it has one, which is verified).
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest, RegistryError> {
        self.on_pull_endpoints(&reference.repository.registry, |ep| async move {
            self.get_manifest_at(&ep, reference).await
        })
        .await
    }

    async fn get_manifest_at(
        &self,
        ep: &Endpoint,
        reference: &Reference,
    ) -> Result<Manifest, RegistryError> {
        let repo = &reference.repository;
        let wanted = reference.manifest_reference();
        let scopes = pull_scopes(repo);
        let url = self.url(ep, repo, &format!("manifests/{wanted}"))?;
        let op = format!("get manifest {wanted}");
        let req = Req::new(Method::GET, url, ep, repo, &scopes, Action::Pull, &op)
            .header(ACCEPT, MANIFEST_ACCEPT);
        let mut resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: repo.registry.clone(),
                repository: repo.name.clone(),
                what: format!("manifest {wanted}"),
            });
        }
        if resp.status() != StatusCode::OK {
            return Err(status_error(repo, &op, resp).await);
        }
        let limit = self.inner.config.max_manifest_size;
        let too_large = || RegistryError::TooLarge {
            registry: repo.registry.clone(),
            repository: repo.name.clone(),
            what: format!("manifest {wanted}"),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let media_type = content_type(&resp).unwrap_or_default();
        let announced = header_digest(&resp);
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    bytes.extend_from_slice(&c);
                    if bytes.len() as u64 > limit {
                        return Err(too_large());
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(transport_error(repo, &op, e)),
            }
        }
        let digest = Digest::of(&bytes);
        let expected = reference.digest.clone().or(announced);
        if let Some(expected) = expected {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: repo.registry.clone(),
                    repository: repo.name.clone(),
                    what: "manifest".into(),
                    expected,
                    actual: digest,
                });
            }
        }
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Whether the manifest exists, without fetching it.
    pub async fn head_manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let repo = &reference.repository;
        let ep = self.endpoint(&repo.registry)?;
        let wanted = reference.manifest_reference();
        let scopes = pull_scopes(repo);
        let url = self.url(&ep, repo, &format!("manifests/{wanted}"))?;
        let op = format!("check manifest {wanted}");
        let req = Req::new(Method::HEAD, url, &ep, repo, &scopes, Action::Pull, &op)
            .header(ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(ManifestInfo {
                digest: header_digest(&resp),
                media_type: content_type(&resp),
                size: resp.content_length(),
            })),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(repo, &op, resp).await),
        }
    }

    /// The size of blob `digest` in `repo`, or `None` when the registry does not have it there.
    pub async fn blob_exists(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let ep = self.endpoint(&repo.registry)?;
        self.blob_exists_at(&ep, repo, digest, &pull_scopes(repo), Action::Pull)
            .await
    }

    pub(crate) async fn blob_exists_at(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        digest: &Digest,
        scopes: &ScopeSet,
        action: Action,
    ) -> Result<Option<u64>, RegistryError> {
        let url = self.url(ep, repo, &format!("blobs/{digest}"))?;
        let op = format!("check blob {digest}");
        let req = Req::new(Method::HEAD, url, ep, repo, scopes, action, &op);
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(resp.content_length().unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(repo, &op, resp).await),
        }
    }

    /// Downloads blob `digest` of `repo` into `store` (nothing is stored unless the bytes match
    /// the digest). `size`, from the manifest, bounds what is read. Returns the blob's size. A
    /// blob already in the store is not fetched again. A body that breaks mid-way is continued
    /// with a `Range` request from the bytes already written, as Docker and containerd do, so a
    /// flaky link costs the lost bytes, not the whole layer again.
    pub async fn pull_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        size: Option<u64>,
        store: &BlobStore,
    ) -> Result<u64, RegistryError> {
        self.pull_blob_counted(repo, digest, size, store, None)
            .await
    }

    /// [`RegistryClient::pull_blob`], reporting the bytes received to `progress` (the caller
    /// finishes it).
    pub async fn pull_blob_counted(
        &self,
        repo: &Repository,
        digest: &Digest,
        size: Option<u64>,
        store: &BlobStore,
        progress: Option<&BlobProgress>,
    ) -> Result<u64, RegistryError> {
        if let Some(size) = store.size(digest) {
            return Ok(size);
        }
        self.on_pull_endpoints(&repo.registry, |ep| async move {
            let policy = self.retry_policy();
            let mut attempt = 0;
            let mut sink = Sink {
                store,
                w: store.writer()?,
                progress,
            };
            loop {
                let before = sink.w.size();
                match self.pull_blob_at(&ep, repo, digest, size, &mut sink).await {
                    Ok(()) => break,
                    Err(RegistryError::Transport { .. }) if attempt < policy.retries => {
                        // Bytes that came in are progress: only a fruitless attempt counts
                        // (a server ignoring Range restarts the writer: that is no progress).
                        if sink.w.size() <= before {
                            attempt += 1;
                        }
                        tokio::time::sleep(policy.delay(attempt, None)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            match sink.w.commit_expecting(digest) {
                Ok((_, size)) => Ok(size),
                Err(BlobError::DigestMismatch { expected, actual }) => {
                    Err(RegistryError::DigestMismatch {
                        registry: repo.registry.clone(),
                        repository: repo.name.clone(),
                        what: "blob".into(),
                        expected,
                        actual,
                    })
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// `length` bytes of blob `digest` from byte `offset`, in one `Range` request: a layer's
    /// table of contents without the layer. A registry that answers with the whole blob is
    /// refused rather than read, since the caller has a way that costs no more (extraction).
    pub async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        self.on_pull_endpoints(&repo.registry, |ep| async move {
            let scopes = pull_scopes(repo);
            let url = self.url(&ep, repo, &format!("blobs/{digest}"))?;
            let op = format!("get bytes {offset}-{} of blob {digest}", offset + length);
            let range = format!("bytes={offset}-{}", (offset + length).saturating_sub(1));
            let req = Req::new(Method::GET, url, &ep, repo, &scopes, Action::Pull, &op)
                .header(reqwest::header::RANGE, &range);
            let mut resp = self.send(req).await?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => {}
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        registry: repo.registry.clone(),
                        repository: repo.name.clone(),
                        what: format!("blob {digest}"),
                    })
                }
                StatusCode::OK => {
                    return Err(protocol_error(repo, &op, "the registry ignored the range"))
                }
                _ => return Err(status_error(repo, &op, resp).await),
            }
            range_starts_at(&resp, offset, repo, &op)?;
            let mut bytes = Vec::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        bytes.extend_from_slice(&c);
                        if bytes.len() as u64 > length {
                            return Err(protocol_error(repo, &op, "more bytes than asked for"));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(transport_error(repo, &op, e)),
                }
            }
            if bytes.len() as u64 != length {
                return Err(protocol_error(repo, &op, "fewer bytes than asked for"));
            }
            Ok(bytes)
        })
        .await
    }

    /// One GET of the blob into the sink, from where its writer stands (a `Range` request when
    /// it holds bytes already; a registry that answers with the whole blob makes it start over).
    async fn pull_blob_at(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        digest: &Digest,
        size: Option<u64>,
        sink: &mut Sink<'_>,
    ) -> Result<(), RegistryError> {
        let Sink { store, w, progress } = sink;
        let scopes = pull_scopes(repo);
        let url = self.url(ep, repo, &format!("blobs/{digest}"))?;
        let op = format!("get blob {digest}");
        let from = w.size();
        let mut req = Req::new(Method::GET, url, ep, repo, &scopes, Action::Pull, &op);
        if from > 0 {
            req = req.header(reqwest::header::RANGE, &format!("bytes={from}-"));
        }
        let mut resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: repo.registry.clone(),
                repository: repo.name.clone(),
                what: format!("blob {digest}"),
            });
        }
        let rest = match resp.status() {
            StatusCode::OK => {
                if from > 0 {
                    *w = store.writer()?;
                }
                resp.content_length()
            }
            StatusCode::PARTIAL_CONTENT if from > 0 => {
                range_starts_at(&resp, from, repo, &op)?;
                resp.content_length()
            }
            _ => return Err(status_error(repo, &op, resp).await),
        };
        let limit = match (size, rest.map(|r| r + w.size())) {
            (Some(s), Some(c)) if c != s => {
                return Err(protocol_error(
                    repo,
                    &op,
                    &format!("blob is {c} bytes, the manifest says {s}"),
                ))
            }
            (s, c) => s.or(c),
        };
        let io =
            |source| RegistryError::from(crate::path_io::PathIo::new(store.path(digest), source));
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    w.write_all(&c).map_err(io)?;
                    if let Some(p) = progress {
                        p.at(w.size());
                    }
                    if limit.is_some_and(|n| w.size() > n) {
                        return Err(protocol_error(repo, &op, "blob longer than announced"));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(transport_error(repo, &op, e)),
            }
        }
    }
}

/// Where a download goes: the writer survives a broken body, so the next request resumes.
struct Sink<'a> {
    store: &'a BlobStore,
    w: BlobWriter,
    progress: Option<&'a BlobProgress>,
}

/// Checks that a 206 answer's `Content-Range` starts at `from`, the byte asked for.
fn range_starts_at(
    resp: &reqwest::Response,
    from: u64,
    repo: &Repository,
    op: &str,
) -> Result<(), RegistryError> {
    let start = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(content_range_start);
    if start == Some(from) {
        return Ok(());
    }
    Err(protocol_error(
        repo,
        op,
        &format!("asked for bytes from {from}, got a range starting at {start:?}"),
    ))
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` value.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::content_range_start;

    #[test]
    fn content_range_start_reads_the_first_byte() {
        assert_eq!(
            content_range_start("bytes 1048576-4194303/4194304"),
            Some(1048576)
        );
        assert_eq!(content_range_start("bytes 0-9/*"), Some(0));
        assert_eq!(content_range_start("bytes */100"), None);
        assert_eq!(content_range_start("items 0-9/10"), None);
    }
}
