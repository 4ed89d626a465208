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
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// The Dockerfile in the context is a symlink: following it could read any file of the
    /// host (and echo it in a parse error), so it is refused as Docker refuses it.
    #[error("{}: the Dockerfile is a symbolic link; kiln reads a Dockerfile in the context only as a regular file (name the file it points to with --dockerfile)", path.display())]
    SymlinkedDockerfile {
        /// The Dockerfile's path.
        path: PathBuf,
    },
    /// A name in the context is not UTF-8; kiln handles context paths as text.
    #[error("{}: file name is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
}
