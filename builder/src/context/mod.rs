//! The build context: what the build may read, and `.dockerignore`.

pub mod dockerignore;
pub mod walk;

use std::path::PathBuf;

/// Reading the build context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A `.dockerignore` pattern is invalid.
    #[error("{file}:{line}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The ignore file's name.
        file: String,
        /// Line (1-based).
        line: usize,
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory of the context could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A name in the context is not UTF-8; kiln handles context paths as text.
    #[error("{}: file name is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
}
