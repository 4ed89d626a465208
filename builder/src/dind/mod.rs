//! Docker-in-Docker over TLS without races: per-job certificates ([`certs`]), a readiness check
//! that tells apart the ways a daemon can be unreachable ([`ready`]), and `kiln build
//! --backend docker` ([`backend`]), which builds through a Docker daemon's HTTP API.
//!
//! The certificates are a pure function of the job: the runner makes them before the pod
//! exists and hands them to both containers through a Secret, so neither waits on files the
//! other has yet to write. The daemon side gets `server/{ca,cert,key}.pem` and no CA key: the
//! `docker:dind` entrypoint then uses the given certificates as they are ("user managing CA
//! themselves") instead of regenerating them over a read-only mount.

pub mod backend;
mod client;
pub mod endpoint;
mod error;
pub mod progress;
pub mod ready;
mod tar_context;

pub use client::DockerClient;
pub use endpoint::{DockerEndpoint, EndpointFlags, TlsFiles, Transport};
pub use error::{DindError, TlsProblem};
/// The certificates live in their own crate so kiln-runner can make them without the builder.
pub use kiln_dind_certs as certs;
pub use tar_context::DockerfileSource;
