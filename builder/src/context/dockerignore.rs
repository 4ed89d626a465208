//! `.dockerignore` with Docker's semantics.

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {}
