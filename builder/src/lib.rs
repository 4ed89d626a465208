//! kiln: builds container images from Dockerfiles without a Docker daemon.
//!
//! The modules follow the data of one build, in BuildKit's order (parser → instructions →
//! build plan → executor → snapshot → cache → exporter):
//!
//! 1. Dockerfile text → syntax tree ([`dockerfile::parser`]) → typed instructions
//!    ([`dockerfile::instructions`], words expanded by [`dockerfile::expand`]).
//! 2. Instructions → stages and steps with build arguments in scope ([`plan`]); the build
//!    context, filtered by `.dockerignore` ([`context`]), read through [`fsview`] views.
//! 3. The [`executor`] runs the plan: for each step it asks the step cache ([`cache`]) first,
//!    applies metadata steps to the image config ([`executor::config_step`]), runs RUN in the
//!    [`sandbox`] on a root the [`snapshot`] snapshotter prepares over the parent's extracted
//!    layers, and writes COPY/ADD/WORKDIR changes with [`copy`].
//! 4. The snapshotter commits each step's changes as a tar layer ([`layer`]: deterministic tar,
//!    parallel compression, safe extraction, metadata indexes) into the content-addressed
//!    [`blob`] store, all kept in the [`cache_dir`] layout shared by builds.
//! 5. Layers and the config become an image ([`image`]: configs, manifests, platforms,
//!    OCI layout and `docker load` exporters), pushed by the [`registry`] client; image names
//!    are [references](mod@reference), below both. [`dind`] is the other backend: the same build through a
//!    Docker daemon over TLS.
//!
//! Errors: each module has its own enum, gathered in [`Error`], whose class decides the exit
//! code. What every module shares sits in leaves ([`path_io`], [`error_chain`],
//! [`dockerfile::DockerfileError`]), so no module imports another through [`error`]; a unit
//! test keeps the modules free of import cycles.

pub mod blob;
pub mod cache;
pub mod cache_dir;
pub mod context;
pub mod copy;
pub mod dind;
pub mod dockerfile;
pub mod error;
pub mod error_chain;
pub mod executor;
pub mod fsview;
pub mod image;
pub mod layer;
pub mod path_io;
pub mod plan;
pub mod reference;
pub mod registry;
pub mod rfc3339;
#[cfg(test)]
mod rooms;
pub mod sandbox;
pub mod snapshot;
pub mod transfer;

pub use error::{Error, Result};
