//! GitLab's runner API (`/api/v4`), spoken the way gitlab-runner speaks it.

mod backoff;
mod client;
mod types;

pub use backoff::Backoff;
pub use client::{Client, JobRequestOutcome, PatchOutcome, RemoteJobStatus, UpdateOutcome};
pub use types::*;

/// Errors talking to GitLab.
#[derive(Debug, thiserror::Error)]
pub enum GitlabError {
    /// The configured URL is not usable.
    #[error("invalid GitLab URL {url:?}")]
    Url {
        /// The URL.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client")]
    Client(#[source] reqwest::Error),
    /// The request did not get an answer.
    #[error("{endpoint} request failed")]
    Transport {
        /// The endpoint, e.g. `request_job`.
        endpoint: &'static str,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// GitLab answered with an unexpected status.
    #[error("{endpoint}: GitLab answered {status}")]
    Status {
        /// The endpoint.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
    },
    /// GitLab's answer could not be parsed.
    #[error("{endpoint}: unexpected answer from GitLab")]
    Decode {
        /// The endpoint.
        endpoint: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}
