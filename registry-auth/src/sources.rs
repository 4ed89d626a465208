//! Finding the credentials for a registry across every supported source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::credential::Credential;
use crate::dockerconfig::{ConfigLookup, DockerConfig, DockerConfigError};
use crate::environment::Environment;
use crate::helper::{self, HelperError, DEFAULT_HELPER_TIMEOUT};
use crate::host::{helper_server_url, normalize_host};
use crate::secret::Secret;

/// Errors from resolving credentials.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A config file exists but could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A config's content is invalid.
    #[error(transparent)]
    Config(#[from] DockerConfigError),
    /// A credential helper failed.
    #[error(transparent)]
    Helper(#[from] HelperError),
}

/// Where a resolved credential came from, for logs ("using credentials
/// from ...") without showing the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Given by the CLI or API caller.
    Explicit,
    /// The `DOCKER_AUTH_CONFIG` variable.
    DockerAuthConfigEnv,
    /// A docker `config.json`.
    DockerConfigFile(PathBuf),
    /// A Kubernetes `.dockerconfigjson` file.
    KubernetesSecret(PathBuf),
    /// `CI_REGISTRY_USER` / `CI_REGISTRY_PASSWORD`.
    GitLabRegistry,
    /// `CI_DEPENDENCY_PROXY_USER` / `CI_DEPENDENCY_PROXY_PASSWORD`.
    GitLabDependencyProxy,
}

/// A credential and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCredential {
    /// The credential.
    pub credential: Credential,
    /// The source that supplied it.
    pub source: CredentialSource,
    /// The credential helper that produced it, when one did.
    pub helper: Option<String>,
}

/// Resolves registry credentials in the crate's documented precedence order
/// (see the crate docs).
#[derive(Debug, Clone)]
pub struct CredentialResolver {
    env: Environment,
    explicit: BTreeMap<String, Credential>,
    docker_config: Option<PathBuf>,
    kube_secrets: Vec<PathBuf>,
    helper_timeout: Duration,
}

impl CredentialResolver {
    /// A resolver reading variables (and helpers' PATH) from `env`.
    pub fn new(env: Environment) -> Self {
        Self {
            env,
            explicit: BTreeMap::new(),
            docker_config: None,
            kube_secrets: Vec::new(),
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    /// Adds credentials given explicitly for `host`; these beat every other source.
    pub fn with_credential(mut self, host: &str, credential: Credential) -> Self {
        self.explicit.insert(normalize_host(host), credential);
        self
    }

    /// Uses this docker `config.json` instead of `$DOCKER_CONFIG` / `~/.docker`.
    pub fn with_docker_config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.docker_config = Some(path.into());
        self
    }

    /// Adds a Kubernetes `.dockerconfigjson` file (a mounted pull secret).
    pub fn with_kubernetes_secret(mut self, path: impl Into<PathBuf>) -> Self {
        self.kube_secrets.push(path.into());
        self
    }

    /// Limits how long a credential helper may run.
    pub fn with_helper_timeout(mut self, timeout: Duration) -> Self {
        self.helper_timeout = timeout;
        self
    }

    /// The docker config file consulted: the explicit one, else
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn docker_config_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.docker_config {
            return Some(p.clone());
        }
        if let Some(dir) = self.env.get_nonempty("DOCKER_CONFIG") {
            return Some(Path::new(dir).join("config.json"));
        }
        self.env
            .get_nonempty("HOME")
            .map(|home| Path::new(home).join(".docker").join("config.json"))
    }

    /// Finds credentials for `host`; `Ok(None)` means anonymous access.
    ///
    /// Sources are asked in precedence order and the first that has
    /// credentials wins. A source with nothing for the host (no entry, or a
    /// helper answering "not found") passes on to the next. Errors (an
    /// unreadable or invalid file, a failing helper) stop the search rather
    /// than silently falling back to weaker credentials.
    pub async fn resolve(&self, host: &str) -> Result<Option<ResolvedCredential>, SourceError> {
        let host = normalize_host(host);
        let found = |credential, source| ResolvedCredential {
            credential,
            source,
            helper: None,
        };
        if let Some(c) = self.explicit.get(&host) {
            return Ok(Some(found(c.clone(), CredentialSource::Explicit)));
        }
        if let Some(content) = self.env.get_nonempty("DOCKER_AUTH_CONFIG") {
            let cfg = DockerConfig::parse(content, "DOCKER_AUTH_CONFIG")?;
            if let Some(r) = self
                .search_config(
                    &cfg,
                    &host,
                    "DOCKER_AUTH_CONFIG",
                    CredentialSource::DockerAuthConfigEnv,
                )
                .await?
            {
                return Ok(Some(r));
            }
        }
        if let Some(path) = self.docker_config_path() {
            if let Some(r) = self
                .search_file(
                    &path,
                    &host,
                    CredentialSource::DockerConfigFile(path.clone()),
                )
                .await?
            {
                return Ok(Some(r));
            }
        }
        for path in &self.kube_secrets {
            if let Some(r) = self
                .search_file(
                    path,
                    &host,
                    CredentialSource::KubernetesSecret(path.clone()),
                )
                .await?
            {
                return Ok(Some(r));
            }
        }
        Ok(self.search_gitlab(&host))
    }

    async fn search_file(
        &self,
        path: &Path,
        host: &str,
        source: CredentialSource,
    ) -> Result<Option<ResolvedCredential>, SourceError> {
        let content = match std::fs::read_to_string(path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SourceError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let origin = path.display().to_string();
        let cfg = DockerConfig::parse(&content, &origin)?;
        self.search_config(&cfg, host, &origin, source).await
    }

    async fn search_config(
        &self,
        cfg: &DockerConfig,
        host: &str,
        origin: &str,
        source: CredentialSource,
    ) -> Result<Option<ResolvedCredential>, SourceError> {
        for step in cfg.lookup(host, origin)? {
            let (name, lenient) = match step {
                ConfigLookup::Inline(credential) => {
                    return Ok(Some(ResolvedCredential {
                        credential,
                        source,
                        helper: None,
                    }))
                }
                ConfigLookup::Helper(name) => (name, false),
                // A config copied from a workstation often names a store
                // (e.g. "desktop") that CI images lack; the inline entries
                // may still serve, so a missing store binary is skipped.
                ConfigLookup::Store(name) => (name, true),
            };
            let answer = helper::get_credentials(
                &name,
                &helper_server_url(host),
                &self.env,
                self.helper_timeout,
            )
            .await;
            match answer {
                Ok(Some(credential)) => {
                    return Ok(Some(ResolvedCredential {
                        credential,
                        source,
                        helper: Some(name),
                    }))
                }
                Ok(None) => {}
                Err(HelperError::NotFound { .. }) if lenient => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    fn search_gitlab(&self, host: &str) -> Option<ResolvedCredential> {
        let pairs = [
            (
                "CI_REGISTRY",
                "CI_REGISTRY_USER",
                "CI_REGISTRY_PASSWORD",
                CredentialSource::GitLabRegistry,
            ),
            (
                "CI_DEPENDENCY_PROXY_SERVER",
                "CI_DEPENDENCY_PROXY_USER",
                "CI_DEPENDENCY_PROXY_PASSWORD",
                CredentialSource::GitLabDependencyProxy,
            ),
        ];
        pairs
            .into_iter()
            .find_map(|(server, user, password, source)| {
                let server = self.env.get_nonempty(server)?;
                if normalize_host(server) != host {
                    return None;
                }
                Some(ResolvedCredential {
                    credential: Credential::basic(
                        self.env.get_nonempty(user)?,
                        Secret::new(self.env.get_nonempty(password)?),
                    ),
                    source,
                    helper: None,
                })
            })
    }
}
