//! The build context: what the build may read, and `.dockerignore`.

pub mod dockerignore;

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
}
