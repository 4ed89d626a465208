//! The one place where registry requests are built and sent: endpoint and scheme per host,
//! `Authorization` from challenges, retries with backoff, and redirects that drop credentials
//! when they leave the registry.

use super::auth::Authenticator;
use super::config::RegistryConfig;
use super::error::{Action, RegistryError};
use super::retry::{self, RetryPolicy};
use crate::reference::{Repository, DOCKER_HUB, DOCKER_HUB_API_HOST};
use crate::transfer::BlobProgress;
use kiln_registry_auth::{
    normalize_host, parse_www_authenticate_headers, preferred, CredentialResolver, ScopeSet,
    TokenClient,
};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::path::PathBuf;
use std::sync::Arc;

const MAX_REDIRECTS: usize = 10;
const MAX_ERROR_BODY: usize = 64 << 10;

/// A registry client: cheap to clone, share one per build.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    /// The client that accepts any certificate, for the registries named in
    /// `skip_tls_verify_registries` (all of them with `skip_tls_verify`).
    unverified: Option<reqwest::Client>,
    skip_verify: Vec<String>,
    pub(crate) auth: Authenticator,
    pub(crate) config: RegistryConfig,
    /// Registries spoken to over plain HTTP: the configured ones, and those
    /// [`RegistryClient::allow_plain_http`] adds while building (`--insecure-pull`'s bases).
    insecure: std::sync::RwLock<Vec<String>>,
    /// Starts at the configured size; a 413 halves it for the rest of the client's life.
    pub(crate) chunk_size: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A registry as requests reach it: the key credentials are looked up under, and the base URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) key: String,
    pub(crate) base: Url,
}

/// A request body that can be made again for a retry.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// `len` bytes of a file from `offset`, streamed, each chunk reported to `progress`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        progress: Option<Arc<BlobProgress>>,
    },
}

/// One logical request; [`RegistryClient::send`] may send it several times.
pub(crate) struct Req<'a> {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) repo: &'a Repository,
    pub(crate) scopes: &'a ScopeSet,
    pub(crate) action: Action,
    pub(crate) operation: &'a str,
    /// Retry on 5xx, 429 and broken connections; off where the caller must first learn what the
    /// registry kept (PATCH of a chunk).
    pub(crate) retry: bool,
}

impl<'a> Req<'a> {
    pub(crate) fn new(
        method: Method,
        url: Url,
        endpoint: &'a Endpoint,
        repo: &'a Repository,
        scopes: &'a ScopeSet,
        action: Action,
        operation: &'a str,
    ) -> Self {
        Req {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            endpoint,
            repo,
            scopes,
            action,
            operation,
            retry: true,
        }
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub(crate) fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

impl RegistryClient {
    /// A client with `config`, finding credentials with `credentials`.
    pub fn new(
        config: RegistryConfig,
        credentials: CredentialResolver,
    ) -> Result<RegistryClient, RegistryError> {
        let http = super::tls::http_client(&config, !config.skip_tls_verify)?;
        let unverified = if config.skip_tls_verify_registries.is_empty() || config.skip_tls_verify {
            None
        } else {
            Some(super::tls::http_client(&config, false)?)
        };
        // The token server may sit behind the same custom CA as the registry.
        let tokens = TokenClient::with_http_client(http.clone());
        let skip_verify = config
            .skip_tls_verify_registries
            .iter()
            .map(|h| normalize_host(h))
            .collect();
        let insecure = config
            .insecure_registries
            .iter()
            .map(|h| normalize_host(h))
            .collect();
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                unverified,
                skip_verify,
                auth: Authenticator::new(credentials, tokens),
                chunk_size: std::sync::atomic::AtomicUsize::new(config.chunk_size),
                config,
                insecure: std::sync::RwLock::new(insecure),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Speaks plain HTTP to `registry` from now on, for every clone of this client: how
    /// `--insecure-pull` reaches the registries of the images a build pulls, which only
    /// planning the Dockerfile names.
    pub fn allow_plain_http(&self, registry: &str) {
        let host = normalize_host(registry);
        let mut set = self.inner.insecure.write().expect("insecure registries");
        if !set.contains(&host) {
            set.push(host);
        }
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.inner
            .insecure
            .read()
            .expect("insecure registries")
            .contains(&normalize_host(registry))
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        let c = &self.inner.config;
        RetryPolicy {
            retries: c.retries,
            base: c.retry_base_delay,
            max: c.retry_max_delay,
        }
    }

    /// The HTTP client for requests to `endpoint`: the one accepting any certificate when the
    /// registry is named in `skip_tls_verify_registries`.
    fn http_for(&self, endpoint: &Endpoint) -> &reqwest::Client {
        match &self.inner.unverified {
            Some(u)
                if self
                    .inner
                    .skip_verify
                    .contains(&normalize_host(&endpoint.key)) =>
            {
                u
            }
            _ => &self.inner.http,
        }
    }

    /// The endpoint serving `registry` (a host as it appears in references).
    pub(crate) fn endpoint(&self, registry: &str) -> Result<Endpoint, RegistryError> {
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            registry
        };
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| RegistryError::Setup(format!("registry {registry:?}: {e}")))?;
        Ok(Endpoint {
            key: registry.to_string(),
            base,
        })
    }

    /// Endpoints to pull `registry` from: the mirrors first for Docker Hub.
    pub(crate) fn pull_endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, RegistryError> {
        let mut out = Vec::new();
        if registry == DOCKER_HUB {
            for m in &self.inner.config.registry_mirrors {
                out.push(self.mirror_endpoint(m)?);
            }
        }
        out.push(self.endpoint(registry)?);
        Ok(out)
    }

    fn mirror_endpoint(&self, mirror: &str) -> Result<Endpoint, RegistryError> {
        let m = mirror.trim().trim_end_matches('/');
        let (scheme, rest) = if let Some(r) = m.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = m.strip_prefix("http://") {
            ("http", r)
        } else if self.is_insecure(m) {
            ("http", m)
        } else {
            ("https", m)
        };
        let host = rest.split('/').next().unwrap_or(rest);
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| RegistryError::Setup(format!("registry mirror {mirror:?}: {e}")))?;
        Ok(Endpoint {
            key: host.to_string(),
            base,
        })
    }

    /// `base/v2/REPO/<tail>`.
    pub(crate) fn url(
        &self,
        endpoint: &Endpoint,
        repo: &Repository,
        tail: &str,
    ) -> Result<Url, RegistryError> {
        endpoint
            .base
            .join(&format!("v2/{}/{}", repo.name, tail))
            .map_err(|e| RegistryError::Setup(format!("URL for {repo}: {e}")))
    }

    /// Sends `req`: answers auth challenges once, retries as the policy says, follows redirects
    /// of GET and HEAD (without `Authorization` once they leave the registry). Returns the final
    /// response whatever its status, except that 401 and 403 become [`RegistryError::Denied`].
    pub(crate) async fn send(&self, req: Req<'_>) -> Result<reqwest::Response, RegistryError> {
        let policy = self.retry_policy();
        let mut attempt = 0u32;
        let mut reauthorized = false;
        let mut url = req.url.clone();
        let mut redirects = 0usize;
        loop {
            let on_registry = same_origin(&url, &req.endpoint.base);
            let authorization = if on_registry {
                self.inner
                    .auth
                    .authorization(&req.endpoint.key, req.scopes)
                    .await
                    .map_err(|e| auth_error(req.repo, e))?
            } else {
                None
            };
            let mut rb = self
                .http_for(req.endpoint)
                .request(req.method.clone(), url.clone())
                .headers(req.headers.clone());
            if let Some(a) = &authorization {
                let mut v = HeaderValue::from_str(a.expose()).map_err(|_| {
                    RegistryError::Setup("authorization is not a header value".into())
                })?;
                v.set_sensitive(true);
                rb = rb.header(AUTHORIZATION, v);
            }
            rb = match &req.body {
                Body::Empty => {
                    if req.method == Method::POST
                        || req.method == Method::PUT
                        || req.method == Method::PATCH
                    {
                        rb.header(CONTENT_LENGTH, "0")
                    } else {
                        rb
                    }
                }
                Body::Bytes(b) => rb.body(b.clone()),
                Body::File {
                    path,
                    offset,
                    len,
                    progress,
                } => {
                    let body = file_body(path, *offset, *len, progress.clone()).await?;
                    rb.header(CONTENT_LENGTH, len.to_string()).body(body)
                }
            };
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    if req.retry && retry::retryable_error(&e) && attempt < policy.retries {
                        tokio::time::sleep(policy.delay(attempt, None)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(transport_error(req.repo, req.operation, e));
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && on_registry {
                let challenges = parse_www_authenticate_headers(
                    resp.headers()
                        .get_all(reqwest::header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                )
                .unwrap_or_default();
                if let (false, Some(ch)) = (reauthorized, preferred(&challenges)) {
                    // A token that was accepted before may have expired or been revoked.
                    if authorization.is_some() {
                        self.inner.auth.invalidate(&req.endpoint.key, req.scopes);
                    }
                    self.inner.auth.set_challenge(&req.endpoint.key, ch.clone());
                    reauthorized = true;
                    // Basic auth without credentials would only be refused again.
                    let anonymous_basic = ch.is_basic()
                        && self
                            .inner
                            .auth
                            .credential(&req.endpoint.key)
                            .await
                            .map_err(|e| auth_error(req.repo, e))?
                            .is_none();
                    if !anonymous_basic {
                        continue;
                    }
                }
                // Basic auth has no rights to lack: a 401 to credentials is a wrong password.
                let rejected =
                    authorization.is_some() && preferred(&challenges).is_some_and(|c| c.is_basic());
                return Err(self.denied(&req, resp, rejected).await);
            }
            if status == StatusCode::FORBIDDEN && on_registry {
                return Err(self.denied(&req, resp, false).await);
            }
            if status.is_redirection()
                && (req.method == Method::GET || req.method == Method::HEAD)
                && status != StatusCode::NOT_MODIFIED
            {
                if let Some(next) = location(&resp, &url) {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(protocol_error(
                            req.repo,
                            req.operation,
                            "too many redirects",
                        ));
                    }
                    url = next;
                    continue;
                }
            }
            if req.retry && retry::retryable_status(status.as_u16()) && attempt < policy.retries {
                let after =
                    retry::parse_retry_after(resp.headers().get(reqwest::header::RETRY_AFTER));
                tokio::time::sleep(policy.delay(attempt, after)).await;
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    async fn denied(
        &self,
        req: &Req<'_>,
        resp: reqwest::Response,
        rejected: bool,
    ) -> RegistryError {
        let header_msg = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| parse_www_authenticate_headers([h]).ok())
            .and_then(|cs| {
                cs.first()
                    .and_then(|c| c.param("error").map(str::to_string))
            });
        let status = resp.status().as_u16();
        let mut message = error_message(resp).await;
        if message.is_empty() {
            message = header_msg.unwrap_or_else(|| format!("HTTP {status}"));
        }
        let who = self.inner.auth.who(&req.endpoint.key).await;
        if rejected {
            return RegistryError::Rejected {
                registry: req.repo.registry.clone(),
                repository: req.repo.name.clone(),
                who,
                message,
            };
        }
        RegistryError::Denied {
            action: req.action,
            registry: req.repo.registry.clone(),
            repository: req.repo.name.clone(),
            who,
            message,
        }
    }
}

fn auth_error(repo: &Repository, source: kiln_registry_auth::Error) -> RegistryError {
    RegistryError::Auth {
        registry: repo.registry.clone(),
        repository: repo.name.clone(),
        source: Box::new(source),
    }
}

/// A broken connection, with the causes' text (reqwest's own message alone says little).
pub(crate) fn transport_error(
    repo: &Repository,
    operation: &str,
    e: reqwest::Error,
) -> RegistryError {
    let message = crate::error_chain::chain_line(&e.without_url());
    RegistryError::Transport {
        registry: repo.registry.clone(),
        repository: repo.name.clone(),
        operation: operation.to_string(),
        message,
    }
}

/// The registry broke the protocol.
pub(crate) fn protocol_error(repo: &Repository, operation: &str, message: &str) -> RegistryError {
    RegistryError::Protocol {
        registry: repo.registry.clone(),
        repository: repo.name.clone(),
        operation: operation.to_string(),
        message: message.to_string(),
    }
}

/// An unexpected answer, with the registry's error text.
pub(crate) async fn status_error(
    repo: &Repository,
    operation: &str,
    resp: reqwest::Response,
) -> RegistryError {
    let status = resp.status().as_u16();
    RegistryError::Status {
        registry: repo.registry.clone(),
        repository: repo.name.clone(),
        operation: operation.to_string(),
        status,
        message: error_message(resp).await,
    }
}

/// The registry's error text: `CODE: message` from its JSON errors, else the start of the body.
pub(crate) async fn error_message(resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{}: {}", i.code, i.message))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    let mut out: String = text.chars().take(300).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `Location` of `resp` resolved against `base` (registries send both forms).
pub(crate) fn location(resp: &reqwest::Response, base: &Url) -> Option<Url> {
    let l = resp.headers().get(LOCATION)?.to_str().ok()?;
    base.join(l).ok()
}

async fn file_body(
    path: &PathBuf,
    offset: u64,
    len: u64,
    progress: Option<Arc<BlobProgress>>,
) -> Result<reqwest::Body, RegistryError> {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io = |source| RegistryError::from(crate::path_io::PathIo::new(path, source));
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10);
    let Some(progress) = progress else {
        return Ok(reqwest::Body::wrap_stream(stream));
    };
    // Handed to the connection is as far as a client can see; the registry's answer settles it.
    let mut position = offset;
    let stream = stream.inspect(move |chunk| {
        if let Ok(c) = chunk {
            position += c.len() as u64;
            progress.at(position);
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_registry_auth::Environment;

    fn client(cfg: RegistryConfig) -> RegistryClient {
        RegistryClient::new(cfg, CredentialResolver::new(Environment::new())).unwrap()
    }

    #[test]
    fn endpoints_follow_insecure_list_and_mirrors() {
        let c = client(RegistryConfig {
            insecure_registries: vec!["http://LocalHost:5000/".into()],
            registry_mirrors: vec!["mirror.example:5000".into(), "http://m2.example".into()],
            ..RegistryConfig::default()
        });
        assert_eq!(
            c.endpoint("docker.io").unwrap().base.as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            c.endpoint("localhost:5000").unwrap().base.as_str(),
            "http://localhost:5000/"
        );
        assert_eq!(
            c.endpoint("localhost:5001").unwrap().base.as_str(),
            "https://localhost:5001/"
        );
        let hub: Vec<String> = c
            .pull_endpoints("docker.io")
            .unwrap()
            .iter()
            .map(|e| format!("{} {}", e.key, e.base))
            .collect();
        assert_eq!(
            hub,
            [
                "mirror.example:5000 https://mirror.example:5000/",
                "m2.example http://m2.example/",
                "docker.io https://registry-1.docker.io/"
            ]
        );
        assert_eq!(c.pull_endpoints("ghcr.io").unwrap().len(), 1);
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://r.example/v2/x").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://r.example:443/").unwrap()
        ));
        assert!(!same_origin(&a, &Url::parse("http://r.example/").unwrap()));
        assert!(!same_origin(
            &a,
            &Url::parse("https://s3.example/").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://r.example:5000/").unwrap()
        ));
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let e = RegistryClient::new(
            RegistryConfig {
                ca_certificates: vec!["/nonexistent/ca.pem".into()],
                ..RegistryConfig::default()
            },
            CredentialResolver::new(Environment::new()),
        )
        .unwrap_err();
        let line = crate::error_chain::chain_line(&e);
        assert!(line.starts_with("/nonexistent/ca.pem: "), "{line}");
    }
}
