//! kiln: builds container images from Dockerfiles without a Docker daemon.
//!
//! The modules follow the data of one build: Dockerfile text ([`dockerfile::parser`]) →
//! instructions ([`dockerfile::instructions`], with words expanded by [`dockerfile::expand`]) →
//! stages and steps ([`plan`]), with the build context filtered by [`context`].

pub mod blob;
pub mod build;
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
#[cfg(test)]
mod rooms;
pub mod sandbox;
pub mod snapshot;
pub mod transfer;

pub use error::{Error, Result};
