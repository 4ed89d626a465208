//! The registry client's one error type. Every variant names the registry and repository it
//! concerns; none carries a credential or a token (registry messages are shown, our headers never).

use crate::blob::{BlobError, Digest};
use crate::reference::ReferenceError;
use std::path::PathBuf;

/// What the client was doing when the registry refused: chooses the right named in a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reading manifests and blobs.
    Pull,
    /// Writing blobs, manifests and tags.
    Push,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Pull => "pull",
            Action::Push => "push",
        })
    }
}

/// Every error of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The client could not be set up (TLS roots, HTTP client).
    #[error("registry client setup: {0}")]
    Setup(String),
    /// A CA certificate file could not be used.
    #[error("CA certificate {}: {reason}", path.display())]
    CaCertificate {
        /// The PEM file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// Looking up or exchanging credentials failed.
    #[error("authentication with {registry} for {repository}")]
    Auth {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// Cause (already free of secrets).
        #[source]
        source: Box<kiln_registry_auth::Error>,
    },
    /// The registry refused the credentials or the right (401/403).
    #[error("{action} to {registry}/{repository} denied: {who} lack{s} {action} rights (registry said: {message})", s = if who.starts_with("anonymous") { "s" } else { "" })]
    Denied {
        /// Pull or push.
        action: Action,
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// Whose rights, e.g. `the credentials from DOCKER_AUTH_CONFIG` or `anonymous access`.
        who: String,
        /// The registry's own words.
        message: String,
    },
    /// The registry refused the credentials themselves (401 to Basic credentials).
    #[error("{registry} refused {who} for {repository} (registry said: {message})")]
    Rejected {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// Whose credentials, as in [`RegistryError::Denied`].
        who: String,
        /// The registry's own words.
        message: String,
    },
    /// The manifest or blob is not there.
    #[error("{what} not found in {registry}/{repository}")]
    NotFound {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// `manifest TAG` or `blob DIGEST`.
        what: String,
    },
    /// An unexpected HTTP status (after any retries).
    #[error("{operation} at {registry}/{repository}: registry answered {status}: {message}")]
    Status {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// What was being done.
        operation: String,
        /// HTTP status.
        status: u16,
        /// The registry's error text, shortened.
        message: String,
    },
    /// The connection failed (after any retries).
    #[error("{operation} at {registry}/{repository}: {message}")]
    Transport {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// What was being done.
        operation: String,
        /// The causes, without URLs.
        message: String,
    },
    /// The registry broke the protocol (missing Location, bad Range, ...).
    #[error("{operation} at {registry}/{repository}: {message}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// What was being done.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// Content received does not match its digest.
    #[error("{registry}/{repository}: {what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// `manifest` or `blob`.
        what: String,
        /// Digest asked for.
        expected: Digest,
        /// Digest of the bytes received.
        actual: Digest,
    },
    /// The content is larger than the client accepts or announced.
    #[error("{registry}/{repository}: {what} is larger than {limit} bytes")]
    TooLarge {
        /// Registry host.
        registry: String,
        /// Repository name.
        repository: String,
        /// What was being read.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The local blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A local file could not be read.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
}

impl RegistryError {
    /// The HTTP status behind the error, when there is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            RegistryError::NotFound { .. } => Some(404),
            _ => None,
        }
    }
}
