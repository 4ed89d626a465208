//! Stored credentials for container registries and the registry token handshake.
//!
//! # Credential precedence
//!
//! [`CredentialResolver::resolve`] asks these sources in order; the first
//! that has credentials for the (normalised, see [`normalize_host`]) host wins:
//!
//! 1. **Explicit** credentials given by the CLI or API
//!    ([`CredentialResolver::with_credential`]).
//! 2. **`DOCKER_AUTH_CONFIG`**: the JSON content of a docker config, as GitLab
//!    CI users set it.
//! 3. **Docker `config.json`**: the file given with
//!    [`CredentialResolver::with_docker_config_file`], else
//!    `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
//! 4. **Kubernetes `.dockerconfigjson`** files, in the order added
//!    ([`CredentialResolver::with_kubernetes_secret`]).
//! 5. **GitLab CI variables**: `CI_REGISTRY_USER`/`CI_REGISTRY_PASSWORD` for the
//!    host of `CI_REGISTRY`, then `CI_DEPENDENCY_PROXY_USER`/
//!    `CI_DEPENDENCY_PROXY_PASSWORD` for the host of `CI_DEPENDENCY_PROXY_SERVER`.
//! 6. Otherwise anonymous (`Ok(None)`).
//!
//! Within one docker config (sources 2–4) the order is `credHelpers[host]`,
//! then `credsStore`, then the inline `auths` entry (`registrytoken`, then
//! `identitytoken`, then `auth`, then `username`/`password`).
//!
//! A source that has nothing for the host — no entry, an empty entry, or a
//! helper answering "credentials not found" — passes on to the next one. A
//! source that is broken — unreadable or invalid JSON, a helper that fails,
//! hangs or prints garbage — is an error, not a silent fallback to weaker
//! credentials. The one leniency: a `credsStore` helper that is not installed
//! is skipped, because configs copied from workstations name stores (such as
//! `desktop`) that CI images lack. A `credHelpers` entry naming a missing
//! helper is an error.
//!
//! All variables, including the `PATH` on which helpers are found and the
//! environment helpers run with, come from an injected [`Environment`].
//!
//! # Secrets
//!
//! Passwords and tokens are held in [`Secret`], whose `Debug` and `Display`
//! print `<redacted>`. Errors never contain them: server and helper messages
//! are scrubbed, and JSON parse errors omit serde's text (which can quote values).
//!
//! # Token handshake
//!
//! [`TokenClient`] answers a [`Challenge`] parsed from `WWW-Authenticate`
//! ([`parse_www_authenticate`]) for a [`ScopeSet`], caching tokens per
//! (registry, scope set) until shortly before they expire. With an identity
//! token it uses the OAuth2 POST (`grant_type=refresh_token`), falling back
//! to the GET handshake when the endpoint answers 404 or 405; with a
//! username and password it uses the GET handshake with Basic auth (or the
//! OAuth2 password grant when enabled).
//!
//! # Example: what a registry client does
//!
//! ```no_run
//! use kiln_registry_auth::{
//!     parse_www_authenticate, preferred, CredentialResolver, Environment, Scope, ScopeSet,
//!     TokenClient,
//! };
//!
//! # async fn demo(www_authenticate: &str) -> Result<(), kiln_registry_auth::Error> {
//! let registry = "registry.gitlab.com";
//! let resolver = CredentialResolver::new(Environment::from_process());
//! let tokens = TokenClient::new()?;
//! let resolved = resolver.resolve(registry).await?;
//! let credential = resolved.as_ref().map(|r| &r.credential);
//!
//! // After a 401 from GET /v2/ (or any request):
//! let challenges = parse_www_authenticate(www_authenticate)?;
//! let Some(challenge) = preferred(&challenges) else { return Ok(()) };
//! let scopes = ScopeSet::new().with(Scope::push("group/project"));
//! let authorization = tokens.authorize(registry, challenge, &scopes, credential).await?;
//! // Send `authorization.map(|a| a.expose().to_owned())` as the Authorization header.
//! // On a 401 with that token mid-push: forget it and ask again.
//! tokens.invalidate(registry, &scopes);
//! # Ok(()) }
//! ```

pub mod challenge;
pub mod credential;
pub mod dockerconfig;
pub mod environment;
pub mod helper;
pub mod host;
pub mod scope;
pub mod secret;
pub mod sources;
pub mod token;

pub use challenge::{
    parse_www_authenticate, parse_www_authenticate_headers, preferred, AuthErrorCode, AuthScheme,
    Challenge, ChallengeError,
};
pub use credential::{basic_authorization, Credential};
pub use dockerconfig::{AuthEntry, ConfigLookup, DockerConfig, DockerConfigError};
pub use environment::Environment;
pub use helper::HelperError;
pub use host::{helper_server_url, normalize_host, same_host};
pub use scope::{Scope, ScopeError, ScopeSet};
pub use secret::Secret;
pub use sources::{CredentialResolver, CredentialSource, ResolvedCredential, SourceError};
pub use token::{BearerToken, Clock, SystemClock, TokenClient, TokenError};

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Parsing a `WWW-Authenticate` header.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// Parsing a scope.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// Reading a docker config.
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
    /// Running a credential helper.
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// Resolving credentials.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The token handshake.
    #[error(transparent)]
    Token(#[from] TokenError),
}
