//! The Dockerfile's own errors, located in the file.

use std::path::PathBuf;

/// A Dockerfile problem located in its file: displays as `Dockerfile:7: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct DockerfileError {
    /// The Dockerfile as the user named it.
    pub file: PathBuf,
    /// Line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}
