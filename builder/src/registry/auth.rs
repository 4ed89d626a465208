//! Credentials and challenges per registry: what to send as `Authorization` for a set of scopes.
//! Tokens themselves are cached by [`TokenClient`]; this remembers each registry's challenge so
//! that later requests carry a token from the start instead of paying a 401 round trip each.

use kiln_registry_auth::{
    Challenge, CredentialResolver, CredentialSource, ResolvedCredential, ScopeSet, Secret,
    TokenClient,
};
use std::collections::HashMap;
use std::sync::Mutex;

/// Authorization state shared by all requests of one client.
pub(crate) struct Authenticator {
    resolver: CredentialResolver,
    tokens: TokenClient,
    challenges: Mutex<HashMap<String, Challenge>>,
    credentials: tokio::sync::Mutex<HashMap<String, Option<ResolvedCredential>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials and tokens stay out of Debug output entirely.
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub(crate) fn new(resolver: CredentialResolver, tokens: TokenClient) -> Self {
        Authenticator {
            resolver,
            tokens,
            challenges: Mutex::new(HashMap::new()),
            credentials: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The credential for `registry`, resolved once per client (helpers can be slow).
    pub(crate) async fn credential(
        &self,
        registry: &str,
    ) -> Result<Option<ResolvedCredential>, kiln_registry_auth::Error> {
        let mut map = self.credentials.lock().await;
        if let Some(c) = map.get(registry) {
            return Ok(c.clone());
        }
        let c = self.resolver.resolve(registry).await?;
        map.insert(registry.to_string(), c.clone());
        Ok(c)
    }

    fn challenge(&self, registry: &str) -> Option<Challenge> {
        self.lock().get(registry).cloned()
    }

    pub(crate) fn set_challenge(&self, registry: &str, challenge: Challenge) {
        self.lock().insert(registry.to_string(), challenge);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Challenge>> {
        self.challenges.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Authorization` value for `scopes`, or `None` while the registry has not asked for
    /// one (or allows anonymous access under a Basic realm).
    pub(crate) async fn authorization(
        &self,
        registry: &str,
        scopes: &ScopeSet,
    ) -> Result<Option<Secret>, kiln_registry_auth::Error> {
        let Some(challenge) = self.challenge(registry) else {
            return Ok(None);
        };
        let cred = self.credential(registry).await?;
        let auth = self
            .tokens
            .authorize(
                registry,
                &challenge,
                scopes,
                cred.as_ref().map(|c| &c.credential),
            )
            .await?;
        Ok(auth)
    }

    /// Forgets the token for `scopes`, after the registry refused it.
    pub(crate) fn invalidate(&self, registry: &str, scopes: &ScopeSet) {
        self.tokens.invalidate(registry, scopes);
    }

    /// Whose rights a denial concerns, naming where the credentials came from.
    pub(crate) async fn who(&self, registry: &str) -> String {
        let map = self.credentials.lock().await;
        match map.get(registry).cloned().flatten() {
            None => "anonymous access".to_string(),
            Some(c) => match (&c.source, &c.helper) {
                (_, Some(h)) => format!("the credentials from helper docker-credential-{h}"),
                (CredentialSource::Explicit, None) => "the given credentials".to_string(),
                (CredentialSource::DockerAuthConfigEnv, None) => {
                    "the credentials from DOCKER_AUTH_CONFIG".to_string()
                }
                (CredentialSource::DockerConfigFile(p), None)
                | (CredentialSource::KubernetesSecret(p), None) => {
                    format!("the credentials from {}", p.display())
                }
                (CredentialSource::GitLabRegistry, None) => {
                    "the credentials from CI_REGISTRY_USER/CI_REGISTRY_PASSWORD".to_string()
                }
                (CredentialSource::GitLabDependencyProxy, None) => {
                    "the credentials from CI_DEPENDENCY_PROXY_USER/CI_DEPENDENCY_PROXY_PASSWORD"
                        .to_string()
                }
            },
        }
    }
}
