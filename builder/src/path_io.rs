//! A file operation's error with the file it concerns: the one shape every module's I/O
//! failures take, so the path is named once and the OS error is its cause. A leaf: every
//! module uses it without depending on the crate's [`crate::Error`], which gathers them all.

use std::io;
use std::path::{Path, PathBuf};

/// A file operation failed on `path`: displays as the path, its cause is the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{}", path.display())]
pub struct PathIo {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl PathIo {
    /// `source` on `path`.
    pub fn new(path: impl AsRef<Path>, source: impl Into<io::Error>) -> Self {
        PathIo {
            path: path.as_ref().to_path_buf(),
            source: source.into(),
        }
    }
}

/// Names the file a failed operation was on: `std::fs::read(&p).at(&p)?`.
pub trait IoAt<T> {
    /// The error as a [`PathIo`] on `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T, PathIo>;
}

// Any error an `io::Error` can be made of: rustix's `Errno`, tempfile's `PersistError`, a
// `BufWriter`'s `IntoInnerError` all fail with one.
impl<T, E: Into<io::Error>> IoAt<T> for Result<T, E> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, PathIo> {
        self.map_err(|e| PathIo::new(path, e))
    }
}
