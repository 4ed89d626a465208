//! Settings of the registry client, as the CLI flags set them (kaniko's names in brackets).

use std::path::PathBuf;
use std::time::Duration;

/// Chunk size of chunked uploads. Every PATCH costs docker-registry a round of state saving:
/// on loopback 4 MiB chunks uploaded at 40-56 MiB/s, 64 MiB at 81, one streamed PATCH at 86-91
/// and a monolithic PUT at 100 (`tests/registry_bench.rs`). A broken chunk resumes from the
/// offset the registry reports, so a large chunk loses no more on failure; a proxy's request
/// limit answers 413, which halves the size down to what it accepts.
pub const DEFAULT_CHUNK_SIZE: usize = 128 << 20;

/// Blobs up to this size go in one streaming PUT; larger ones in chunks that can be resumed.
pub const DEFAULT_MONOLITHIC_THRESHOLD: u64 = 64 << 20;

/// How the client talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Hosts (with port) reached over plain HTTP (`--insecure`, `--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// PEM files of extra CA certificates trusted for TLS (`--registry-certificate`).
    pub ca_certificates: Vec<PathBuf>,
    /// Accept any TLS certificate from every registry and token server (`--skip-tls-verify`):
    /// the connection is encrypted but not authenticated.
    pub skip_tls_verify: bool,
    /// Hosts (with port) whose TLS certificates are not verified (`--skip-tls-verify-registry`).
    pub skip_tls_verify_registries: Vec<String>,
    /// Retries of a failed request on 5xx, 429 and broken connections (`--push-retry`).
    pub retries: u32,
    /// First backoff delay; doubled on each retry.
    pub retry_base_delay: Duration,
    /// Longest wait between two attempts, including a registry's `Retry-After`.
    pub retry_max_delay: Duration,
    /// Docker Hub mirrors tried before Docker Hub when pulling (`--registry-mirror`).
    pub registry_mirrors: Vec<String>,
    /// Bytes per PATCH in chunked uploads.
    pub chunk_size: usize,
    /// Blobs up to this size are uploaded in one PUT.
    pub monolithic_threshold: u64,
    /// Blobs uploaded at once.
    pub parallel_uploads: usize,
    /// Timeout for connecting.
    pub connect_timeout: Duration,
    /// Largest manifest accepted.
    pub max_manifest_size: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            ca_certificates: Vec::new(),
            skip_tls_verify: false,
            skip_tls_verify_registries: Vec::new(),
            retries: 3,
            retry_base_delay: Duration::from_millis(250),
            retry_max_delay: Duration::from_secs(30),
            registry_mirrors: Vec::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            monolithic_threshold: DEFAULT_MONOLITHIC_THRESHOLD,
            parallel_uploads: 4,
            connect_timeout: Duration::from_secs(30),
            max_manifest_size: 4 << 20,
        }
    }
}
