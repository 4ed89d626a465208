//! The registry token handshake (distribution token spec and its OAuth2
//! variant), with a cache per registry and scope set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::challenge::Challenge;
use crate::credential::{basic_authorization, Credential};
use crate::host::normalize_host;
use crate::scope::ScopeSet;
use crate::secret::{scrub, Secret};

/// Shortest lifetime assumed for a token, as the token spec prescribes when
/// `expires_in` is absent or smaller.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A cached token is renewed this long before it expires, so a request
/// started with it does not race the expiry.
pub const RENEW_MARGIN: Duration = Duration::from_secs(10);

/// `client_id` sent in OAuth2 requests.
pub const DEFAULT_CLIENT_ID: &str = "kiln";

/// Errors from the token handshake. None of them carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The challenge is not a Bearer challenge.
    #[error("expected a Bearer challenge, got {0}")]
    NotBearer(String),
    /// The Bearer challenge has no realm to ask.
    #[error("Bearer challenge without a realm")]
    MissingRealm,
    /// The realm is not an http(s) URL.
    #[error("invalid token realm {0:?}")]
    InvalidRealm(String),
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client")]
    Client(#[source] reqwest::Error),
    /// The request to the token server failed.
    #[error("token request to {realm} failed")]
    Http {
        /// Realm without query or user info.
        realm: String,
        /// Underlying error, its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// The token server refused the credentials.
    #[error("token server {realm} rejected the credentials ({status}): {message}")]
    Unauthorized {
        /// Realm without query or user info.
        realm: String,
        /// HTTP status.
        status: u16,
        /// Server message, scrubbed of secrets.
        message: String,
    },
    /// Any other unexpected status.
    #[error("token server {realm} answered {status}: {message}")]
    Status {
        /// Realm without query or user info.
        realm: String,
        /// HTTP status.
        status: u16,
        /// Server message, scrubbed of secrets.
        message: String,
    },
    /// The answer was not a token response.
    #[error("token server {realm} sent an invalid token response")]
    InvalidResponse {
        /// Realm without query or user info.
        realm: String,
    },
}

/// Source of the current time, injectable so expiry can be tested without waiting.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A bearer token for a registry. `Debug` redacts it.
#[derive(Debug, Clone)]
pub struct BearerToken {
    token: Secret,
    expires_at: Instant,
    refresh_token: Option<Secret>,
}

impl BearerToken {
    /// The token itself.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The `Authorization` header value.
    pub fn authorization(&self) -> Secret {
        Secret::new(format!("Bearer {}", self.token.expose()))
    }

    /// When the token stops being valid (by the client's clock).
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// A refresh token the OAuth2 endpoint sent along, if any.
    pub fn refresh_token(&self) -> Option<&Secret> {
        self.refresh_token.as_ref()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<f64>,
    #[serde(default)]
    refresh_token: Option<Secret>,
}

type CacheKey = (String, String);

/// One cache entry. Its async lock is held during a fetch so that concurrent
/// callers needing the same token (parallel blob uploads) wait for one
/// request instead of each sending their own.
type Slot = Arc<tokio::sync::Mutex<Option<BearerToken>>>;

/// Fetches and caches registry bearer tokens. Cheap to share behind an `Arc`.
pub struct TokenClient {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    client_id: String,
    oauth_password: bool,
    cache: Mutex<HashMap<CacheKey, Slot>>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("client_id", &self.client_id)
            .field("oauth_password", &self.oauth_password)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    /// A client with its own HTTP connection pool (rustls, 30 s timeout).
    pub fn new() -> Result<Self, TokenError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(TokenError::Client)?;
        Ok(Self::with_http_client(http))
    }

    /// A client reusing an existing HTTP client (e.g. the registry client's,
    /// with its proxy and CA settings).
    pub fn with_http_client(http: reqwest::Client) -> Self {
        Self {
            http,
            clock: Arc::new(SystemClock),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            oauth_password: false,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the clock (for tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the OAuth2 `client_id`.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Sends username/password as an OAuth2 `grant_type=password` POST
    /// instead of a Basic-authenticated GET.
    pub fn with_oauth_password_grant(mut self, enabled: bool) -> Self {
        self.oauth_password = enabled;
        self
    }

    /// The `Authorization` header value answering `challenge`, or `None`
    /// for anonymous access to a Basic realm.
    ///
    /// Basic challenges get the credentials directly; Bearer challenges a
    /// token from [`TokenClient::token`], or the registry token itself when
    /// the credential is one.
    pub async fn authorize(
        &self,
        registry: &str,
        challenge: &Challenge,
        scopes: &ScopeSet,
        credential: Option<&Credential>,
    ) -> Result<Option<Secret>, TokenError> {
        if challenge.is_basic() {
            return Ok(credential.and_then(Credential::authorization));
        }
        if let Some(Credential::RegistryToken(t)) = credential {
            return Ok(Some(Secret::new(format!("Bearer {}", t.expose()))));
        }
        Ok(Some(
            self.token(registry, challenge, scopes, credential)
                .await?
                .authorization(),
        ))
    }

    /// A bearer token for exactly `scopes`, from the cache when a fresh one
    /// is there.
    ///
    /// Scopes named by the challenge are not added: the caller chooses the
    /// scope set (e.g. extending it with [`Challenge::scope_set`] after an
    /// `insufficient_scope` answer), so the same set given to
    /// [`TokenClient::invalidate`] names the same cache entry.
    pub async fn token(
        &self,
        registry: &str,
        challenge: &Challenge,
        scopes: &ScopeSet,
        credential: Option<&Credential>,
    ) -> Result<BearerToken, TokenError> {
        if !challenge.is_bearer() {
            return Err(TokenError::NotBearer(format!("{:?}", challenge.scheme())));
        }
        let slot = self
            .lock_cache()
            .entry(cache_key(registry, scopes))
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref() {
            if self.clock.now() + RENEW_MARGIN < t.expires_at {
                return Ok(t.clone());
            }
        }
        *cached = None;
        let token = self.fetch(challenge, scopes, credential).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets the cached token for `registry` and `scopes`, e.g. after the
    /// registry answered 401 to it mid-push, so the next call fetches anew.
    pub fn invalidate(&self, registry: &str, scopes: &ScopeSet) {
        self.lock_cache().remove(&cache_key(registry, scopes));
    }

    /// Forgets every cached token for `registry`.
    pub fn invalidate_registry(&self, registry: &str) {
        let host = normalize_host(registry);
        self.lock_cache().retain(|(h, _), _| *h != host);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Slot>> {
        // A panic elsewhere while holding the lock leaves a plain map behind,
        // which is still consistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(
        &self,
        challenge: &Challenge,
        scopes: &ScopeSet,
        credential: Option<&Credential>,
    ) -> Result<BearerToken, TokenError> {
        let realm_str = challenge.realm().ok_or(TokenError::MissingRealm)?;
        let realm = Url::parse(realm_str)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| TokenError::InvalidRealm(realm_str.to_owned()))?;
        let ctx = Ctx {
            shown: display_realm(&realm),
            secrets: credential.map(Credential::leak_forms).unwrap_or_default(),
        };
        let service = challenge.service();
        let oauth = match credential {
            Some(Credential::IdentityToken(t)) => Some(vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", t.expose().to_owned()),
            ]),
            Some(Credential::Basic { username, password }) if self.oauth_password => Some(vec![
                ("grant_type", "password".to_owned()),
                ("username", username.clone()),
                ("password", password.expose().to_owned()),
            ]),
            _ => None,
        };
        if let Some(mut form) = oauth {
            form.push(("client_id", self.client_id.clone()));
            if let Some(s) = service {
                form.push(("service", s.to_owned()));
            }
            if !scopes.is_empty() {
                form.push(("scope", scopes.to_string()));
            }
            let resp = self
                .http
                .post(realm.clone())
                .form(&form)
                .send()
                .await
                .map_err(|e| ctx.http(e))?;
            let status = resp.status();
            // Registries without the OAuth2 endpoint answer 404 (or 405 on
            // Docker Hub); the spec's GET handshake still works there.
            if status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
                return self.read(resp, &ctx).await;
            }
        }
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes.iter() {
                q.append_pair("scope", &s.to_string());
            }
        }
        // An identity token is never sent as Basic: the GET fallback for it
        // is anonymous, as with the docker CLI whose stored username and
        // password are empty for such entries.
        let mut req = self.http.get(url);
        if let Some(Credential::Basic { username, password }) = credential {
            req = req.header(
                reqwest::header::AUTHORIZATION,
                basic_authorization(username, password).expose(),
            );
        }
        let resp = req.send().await.map_err(|e| ctx.http(e))?;
        self.read(resp, &ctx).await
    }

    async fn read(&self, resp: reqwest::Response, ctx: &Ctx) -> Result<BearerToken, TokenError> {
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ctx.http(e))?;
        if !status.is_success() {
            let message = server_message(&body, &ctx.secrets);
            let realm = ctx.shown.clone();
            let status = status.as_u16();
            return Err(if status == 401 || status == 403 {
                TokenError::Unauthorized {
                    realm,
                    status,
                    message,
                }
            } else {
                TokenError::Status {
                    realm,
                    status,
                    message,
                }
            });
        }
        let invalid = || TokenError::InvalidResponse {
            realm: ctx.shown.clone(),
        };
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| invalid())?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(invalid)?;
        let lifetime = parsed
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)))
            .unwrap_or_default()
            .max(MIN_TOKEN_LIFETIME);
        Ok(BearerToken {
            token,
            expires_at: self.clock.now() + lifetime,
            refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()),
        })
    }
}

struct Ctx {
    shown: String,
    secrets: Vec<Secret>,
}

impl Ctx {
    fn http(&self, e: reqwest::Error) -> TokenError {
        TokenError::Http {
            realm: self.shown.clone(),
            source: e.without_url(),
        }
    }
}

fn cache_key(registry: &str, scopes: &ScopeSet) -> CacheKey {
    (normalize_host(registry), scopes.to_string())
}

fn display_realm(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// The human part of an error body (distribution `errors[].message`, OAuth2
/// `error_description`), scrubbed and shortened.
fn server_message(body: &[u8], secrets: &[Secret]) -> String {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        details: Option<String>,
    }
    let text = match serde_json::from_slice::<Body>(body) {
        Ok(b) => {
            let mut parts: Vec<String> = b
                .errors
                .into_iter()
                .filter_map(|e| match (e.code, e.message) {
                    (Some(c), Some(m)) => Some(format!("{c}: {m}")),
                    (c, m) => c.or(m),
                })
                .collect();
            parts.extend(b.error);
            parts.extend(b.error_description);
            parts.extend(b.details);
            parts.join("; ")
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let text = scrub(&text, &secrets.iter().collect::<Vec<_>>());
    let mut out: String = text.chars().take(300).collect();
    if out.is_empty() {
        out.push_str("no details");
    } else if text.chars().count() > 300 {
        out.push('…');
    }
    out
}
