//! The crate's error type: one variant per module's error.

mod path_io;

pub use path_io::{IoAt, PathIo};
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

/// Every error kiln's library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile is wrong.
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    /// The build plan cannot be made (unknown target, cycle, ...).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Reading the build context failed.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
    /// Building, reading or exporting an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// Writing or extracting a layer failed.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// Executing the build failed.
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    /// The layer cache or warming it failed.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// A COPY, ADD or WORKDIR step could not write its files.
    #[error(transparent)]
    Copy(#[from] crate::copy::CopyError),
    /// Talking to a registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// Running a step's process failed.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// Preparing a step's filesystem or committing its changes failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// Docker-in-Docker: certificates, the daemon connection, or a build through it.
    #[error(transparent)]
    Dind(#[from] crate::dind::DindError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] PathIo),
}

/// `Result` with kiln's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, `: `-separated, as the CLI prints them. A cause is left
/// out when the line already holds its message: many errors name their cause in their own
/// message and also return it from `source()`, and it would print twice.
pub fn chain_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_names_prints_once() {
        let io = || std::io::Error::from_raw_os_error(libc::EISDIR);
        let e = crate::layer::LayerError::from(PathIo::new("/tmp", io()));
        assert_eq!(chain_line(&e), format!("/tmp: {}", io()));
        let wrapped = crate::layer::LayerError::Stream(io());
        assert_eq!(chain_line(&wrapped), format!("layer stream: {}", io()));
    }
}
