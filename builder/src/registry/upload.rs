//! Blob upload sessions: open (or mount), send the bytes in one streaming PUT or in chunks,
//! resume a broken chunked upload from the offset the registry reports, and start over when the
//! registry lost the session.

use super::client::{location, protocol_error, status_error, Body, Endpoint, RegistryClient, Req};
use super::error::{Action, RegistryError};
use crate::blob::Digest;
use crate::reference::Repository;
use crate::transfer::BlobProgress;
use kiln_registry_auth::ScopeSet;
use reqwest::header::{CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Smallest chunk a 413 may halve the chunk size to.
const MIN_CHUNK: usize = 64 << 10;
const OCTET_STREAM: &str = "application/octet-stream";

/// What opening an upload gave.
pub(crate) enum Start {
    /// The registry mounted the blob from the source repository: nothing to upload.
    Mounted,
    /// An upload session at this URL.
    Session(Url),
}

/// One blob upload's fixed facts.
pub(crate) struct Upload<'a> {
    pub(crate) ep: &'a Endpoint,
    pub(crate) repo: &'a Repository,
    pub(crate) scopes: &'a ScopeSet,
    pub(crate) digest: &'a Digest,
    pub(crate) size: u64,
    pub(crate) path: &'a Path,
    /// Where the bytes sent are counted.
    pub(crate) progress: Option<&'a Arc<BlobProgress>>,
}

/// A failure after which a fresh session may succeed.
fn restartable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } | RegistryError::Protocol { .. } => true,
        // 404/400: session unknown or invalid (state lost, bytes mis-ordered, DIGEST_INVALID);
        // 416: offsets disagree; 5xx/429: the registry had trouble.
        RegistryError::Status { status, .. } => {
            matches!(*status, 400 | 404 | 408 | 416 | 429) || *status >= 500
        }
        _ => false,
    }
}

impl RegistryClient {
    /// `POST /v2/u.repo/blobs/uploads/`, with `?mount=&from=` when `mount` is given.
    pub(crate) async fn start_upload(
        &self,
        ep: &Endpoint,
        repo: &Repository,
        scopes: &ScopeSet,
        mount: Option<(&Digest, &Repository)>,
    ) -> Result<Start, RegistryError> {
        let mut url = self.url(ep, repo, "blobs/uploads/")?;
        if let Some((d, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &d.to_string())
                .append_pair("from", &from.name);
        }
        let op = match mount {
            Some((d, from)) => format!("mount blob {d} from {}", from.name),
            None => "start blob upload".to_string(),
        };
        let req = Req::new(
            Method::POST,
            url.clone(),
            ep,
            repo,
            scopes,
            Action::Push,
            &op,
        );
        let resp = self.send(req).await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(Start::Mounted),
            StatusCode::ACCEPTED => match location(&resp, &url) {
                Some(l) => Ok(Start::Session(l)),
                None => Err(protocol_error(
                    repo,
                    &op,
                    "upload opened without a Location",
                )),
            },
            _ => Err(status_error(repo, &op, resp).await),
        }
    }

    /// Uploads the blob, continuing `session` when one is open already.
    pub(crate) async fn upload(
        &self,
        u: &Upload<'_>,
        session: Option<Url>,
    ) -> Result<(), RegistryError> {
        let policy = self.retry_policy();
        let mut session = session;
        let mut restarts = 0;
        let mut chunked = u.size > self.inner.config.monolithic_threshold;
        loop {
            let loc = match session.take() {
                Some(l) => l,
                None => match self.start_upload(u.ep, u.repo, u.scopes, None).await? {
                    Start::Session(l) => l,
                    Start::Mounted => return Ok(()),
                },
            };
            let result = if chunked {
                self.put_chunked(u, loc).await
            } else {
                self.put_whole(u, loc).await
            };
            match result {
                Ok(()) => return Ok(()),
                // A request size limit in front of the registry: chunks get under it.
                Err(RegistryError::Status { status: 413, .. }) if !chunked => chunked = true,
                Err(e) if restartable(&e) && restarts < policy.retries => {
                    tokio::time::sleep(policy.delay(restarts, None)).await;
                    restarts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One streaming PUT with the whole blob: the fewest round trips.
    async fn put_whole(&self, u: &Upload<'_>, loc: Url) -> Result<(), RegistryError> {
        let url = with_digest(loc, u.digest);
        let op = format!("upload blob {}", u.digest);
        let req = Req::new(
            Method::PUT,
            url.clone(),
            u.ep,
            u.repo,
            u.scopes,
            Action::Push,
            &op,
        )
        .header(CONTENT_TYPE, OCTET_STREAM)
        .body(Body::File {
            path: u.path.to_path_buf(),
            offset: 0,
            len: u.size,
            progress: u.progress.cloned(),
        })
        .no_retry();
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(());
        }
        Err(status_error(u.repo, &op, resp).await)
    }

    /// PATCH chunks then a closing PUT. A chunk that fails is not simply sent again: the
    /// registry may have kept part of it, so the session's status says where to go on.
    async fn put_chunked(&self, u: &Upload<'_>, mut loc: Url) -> Result<(), RegistryError> {
        let policy = self.retry_policy();
        let op = format!("upload blob {}", u.digest);
        let mut offset = 0u64;
        let mut failures = 0;
        // Chunks accepted without the registry's offset moving forward: a registry in that
        // state would otherwise be fed the same bytes forever.
        let mut stalled = 0;
        while offset < u.size {
            let chunk = self.inner.chunk_size.load(Ordering::Relaxed).max(1) as u64;
            let len = chunk.min(u.size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let req = Req::new(
                Method::PATCH,
                loc.clone(),
                u.ep,
                u.repo,
                u.scopes,
                Action::Push,
                &op,
            )
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(reqwest::header::CONTENT_RANGE, &range)
            .body(Body::File {
                path: u.path.to_path_buf(),
                offset,
                len,
                progress: u.progress.cloned(),
            })
            .no_retry();
            let failed = match self.send(req).await {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    let next = location(&resp, &loc);
                    let reported = range_end(&resp).map(|end| end + 1);
                    loc = match next {
                        Some(l) => l,
                        None => {
                            return Err(protocol_error(
                                u.repo,
                                &op,
                                "chunk accepted without a Location",
                            ));
                        }
                    };
                    let next_offset = reported.unwrap_or(offset + len);
                    if next_offset <= offset {
                        stalled += 1;
                        if stalled > policy.retries {
                            return Err(protocol_error(
                                u.repo,
                                &op,
                                &format!(
                                    "the registry accepts chunks but its upload stays at byte {next_offset} of {}",
                                    u.size
                                ),
                            ));
                        }
                    } else {
                        stalled = 0;
                        failures = 0;
                    }
                    offset = next_offset;
                    None
                }
                Ok(resp)
                    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE
                        && len as usize > MIN_CHUNK =>
                {
                    // Later blobs keep the smaller size: the limit belongs to the registry.
                    let half = ((len / 2) as usize).max(MIN_CHUNK);
                    self.inner.chunk_size.store(half, Ordering::Relaxed);
                    continue;
                }
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    if s == 416 || super::retry::retryable_status(s) {
                        let after = super::retry::parse_retry_after(
                            resp.headers().get(reqwest::header::RETRY_AFTER),
                        );
                        Some((status_error(u.repo, &op, resp).await, after, s == 416))
                    } else {
                        return Err(status_error(u.repo, &op, resp).await);
                    }
                }
                Err(e @ RegistryError::Transport { .. }) => Some((e, None, false)),
                Err(e) => return Err(e),
            };
            if let Some((e, retry_after, unsatisfiable)) = failed {
                if failures >= policy.retries {
                    return Err(e);
                }
                tokio::time::sleep(policy.delay(failures, retry_after)).await;
                failures += 1;
                // An error here (session lost) goes up and restarts the upload afresh.
                let (l, o) = self.upload_status(u, &loc, offset).await?;
                if unsatisfiable && o == offset {
                    // Both sides agree where the upload stands, yet the registry refuses the
                    // next bytes: sending them again would get the same answer.
                    return Err(protocol_error(
                        u.repo,
                        &op,
                        &format!(
                            "the registry refused bytes {range} with 416 (range not satisfiable) although its upload stands at byte {o}; the upload cannot go on"
                        ),
                    ));
                }
                loc = l;
                offset = o;
            }
        }
        let url = with_digest(loc, u.digest);
        let req = Req::new(
            Method::PUT,
            url.clone(),
            u.ep,
            u.repo,
            u.scopes,
            Action::Push,
            &op,
        );
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(());
        }
        Err(status_error(u.repo, &op, resp).await)
    }

    /// `GET` of the session: where it stands (next offset) and its current URL. `sent_from` is
    /// where the failed request started, to read distribution's ambiguous `0-0`.
    async fn upload_status(
        &self,
        u: &Upload<'_>,
        loc: &Url,
        sent_from: u64,
    ) -> Result<(Url, u64), RegistryError> {
        let op = format!("resume upload of blob {}", u.digest);
        let req = Req::new(
            Method::GET,
            loc.clone(),
            u.ep,
            u.repo,
            u.scopes,
            Action::Push,
            &op,
        );
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(status_error(u.repo, &op, resp).await);
        }
        let next = location(&resp, loc).unwrap_or_else(|| loc.clone());
        // No Range means nothing received yet. distribution writes `0-0` for an empty session as
        // for one byte: when nothing was confirmed before, it is the empty one.
        let offset = match range_end(&resp) {
            None => 0,
            Some(0) if sent_from == 0 => 0,
            Some(e) => e + 1,
        };
        if offset > u.size {
            return Err(protocol_error(
                u.repo,
                &op,
                "registry reports more bytes than the blob has",
            ));
        }
        Ok((next, offset))
    }
}

/// The end of `Range: 0-END` (some registries write `bytes=0-END`). `0-0` with nothing sent is
/// ambiguous in distribution; the closing PUT's digest check catches a wrong guess.
fn range_end(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(RANGE)?.to_str().ok()?;
    let v = v.trim().trim_start_matches("bytes=");
    let (start, end) = v.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse().ok()
}

/// Adds `digest=` to a session URL, keeping its query (`_state` and the like).
fn with_digest(mut loc: Url, digest: &Digest) -> Url {
    loc.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    loc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_any_query() {
        let d = Digest::of(b"");
        let u = with_digest(
            Url::parse("http://r/v2/a/blobs/uploads/x?_state=ab%3D%3D").unwrap(),
            &d,
        );
        assert_eq!(
            u.as_str(),
            format!(
                "http://r/v2/a/blobs/uploads/x?_state=ab%3D%3D&digest=sha256%3A{}",
                d.hex()
            )
        );
        let u = with_digest(Url::parse("http://r/up/x").unwrap(), &d);
        assert_eq!(
            u.query(),
            Some(format!("digest=sha256%3A{}", d.hex()).as_str())
        );
    }
}
