//! The registry client: pulls manifests and blobs into the blob store and pushes images
//! (blobs, config, manifest, tags) to any OCI registry, speaking the distribution API directly.
//!
//! It is a thin client on `reqwest` rather than `oci-client`, because `oci-client` reads no
//! docker config or credential helpers, asks for mount tokens without the source repository's
//! `pull` scope (so cross-repository mounts fail on token registries), and sends one request
//! per stream item when pushing a stream. Credentials and the token handshake come from
//! `kiln_registry_auth`; everything else (retries, resumable chunked uploads, redirects that
//! drop credentials off-registry, mirrors) is here.
//!
//! The builder calls [`RegistryClient::get_manifest`], [`RegistryClient::pull_blob`],
//! [`RegistryClient::ensure_blob`], [`RegistryClient::put_manifest`] and
//! [`RegistryClient::push_image`]; the `_counted` variants of the pull and push calls report
//! bytes per chunk to [`crate::transfer`] counters (no terminal is known here).

mod auth;
mod client;
pub mod config;
pub mod error;
pub mod pull;
pub mod push;
mod retry;
mod tls;
mod upload;

/// References are below both images and registries; re-exported where they are spoken to.
pub use crate::reference::{Reference, ReferenceError, Repository};
pub use client::RegistryClient;
pub use config::RegistryConfig;
pub use error::{Action, RegistryError};
pub use kiln_registry_auth::{CredentialResolver, Environment};
pub use pull::{Manifest, ManifestInfo, MANIFEST_ACCEPT};
pub use push::{BlobOutcome, BlobToPush, ImageToPush, PushReport};
