//! The crate's error type: one variant per module's error.

mod class;

use crate::dockerfile::DockerfileError;
use crate::path_io::PathIo;

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
    Build(#[from] crate::executor::BuildError),
    /// The step cache or warming the cache directory failed.
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
    /// A file kiln reads or writes for itself could not be.
    #[error(transparent)]
    Io(#[from] PathIo),
    /// A file the build reads as its input (the Dockerfile) could not be read.
    #[error(transparent)]
    Read(PathIo),
}

/// Whose failure an error is: decides the exit code (see [`Error::class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The input or the build's own steps: the Dockerfile, the build plan, the context, a RUN
    /// command, a base image that does not exist. Exit code 1.
    Input,
    /// Usage, kiln itself or its environment: the sandbox, the cache directory, a registry
    /// that is unreachable, fails or refuses the credentials. Exit code 2.
    Environment,
}

impl Class {
    /// The exit code of a failure of this class.
    pub fn exit_code(self) -> i32 {
        match self {
            Class::Input => 1,
            Class::Environment => 2,
        }
    }
}

/// `Result` with kiln's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dind::DindError;
    use crate::error_chain::chain_line;
    use crate::executor::error::{BuildError, StepAt};
    use crate::image::ImageError;
    use crate::layer::LayerError;
    use crate::registry::RegistryError;
    use crate::sandbox::SandboxError;
    use crate::snapshot::SnapshotError;
    use std::sync::Arc;

    /// The innermost cause of most errors below: it must print exactly once.
    const CAUSE: &str = "the innermost cause";

    fn io() -> std::io::Error {
        std::io::Error::other(CAUSE)
    }

    fn path_io() -> PathIo {
        PathIo::new("/cache/dir", io())
    }

    fn at() -> StepAt {
        StepAt {
            file: "Dockerfile".into(),
            line: 3,
            step: "[stage 1/2]".into(),
        }
    }

    fn config_unreadable() -> kiln_registry_auth::SourceError {
        kiln_registry_auth::SourceError::Read {
            path: "/home/u/.docker/config.json".into(),
            source: io(),
        }
    }

    /// One error of each kind that has a cause, nested as builds nest them.
    fn representatives() -> Vec<Error> {
        let registry_auth = RegistryError::Auth {
            registry: "registry.example".into(),
            repository: "app".into(),
            source: Box::new(config_unreadable().into()),
        };
        vec![
            Error::Io(path_io()),
            Error::Read(path_io()),
            crate::blob::BlobError::from(path_io()).into(),
            crate::cache::CacheError::from(path_io()).into(),
            crate::copy::CopyError::from(path_io()).into(),
            crate::context::ContextError::from(path_io()).into(),
            ImageError::from(path_io()).into(),
            LayerError::Stream(io()).into(),
            SnapshotError::InLayer {
                diff_id: crate::blob::Digest::of(b""),
                source: LayerError::from(path_io()),
            }
            .into(),
            SandboxError::Setup {
                step: "mount proc on /proc".into(),
                source: io(),
                detail: " (kernel: masked)".into(),
            }
            .into(),
            SandboxError::from(path_io()).into(),
            DindError::Timeout {
                host: "tcp://docker:2376".into(),
                waited: std::time::Duration::from_secs(1),
                last: Box::new(DindError::NothingListens {
                    host: "tcp://docker:2376".into(),
                    source: io(),
                }),
            }
            .into(),
            DindError::Connect {
                host: "tcp://docker:2376".into(),
                source: io(),
            }
            .into(),
            DindError::Credentials {
                host: "registry.example".into(),
                source: config_unreadable(),
            }
            .into(),
            RegistryError::from(path_io()).into(),
            BuildError::StepFailed {
                at: at(),
                source: Box::new(registry_auth.into()),
            }
            .into(),
            BuildError::Base {
                file: "Dockerfile".into(),
                line: 3,
                reference: "registry.example/app:1".into(),
                source: Arc::new(SnapshotError::from(path_io()).into()),
            }
            .into(),
            BuildError::Failed {
                what: "pushing to registry.example/app".into(),
                source: Box::new(LayerError::from(path_io()).into()),
            }
            .into(),
        ]
    }

    #[test]
    fn every_cause_prints_once_and_none_is_lost() {
        let json = ImageError::Json {
            what: "image config".into(),
            source: serde_json::from_str::<u32>("x").unwrap_err(),
        };
        let mut all = representatives();
        all.push(json.into());
        for e in &all {
            let mut messages = vec![e.to_string()];
            let mut cur = std::error::Error::source(e);
            while let Some(c) = cur {
                messages.push(c.to_string());
                cur = c.source();
            }
            assert!(messages.len() > 1, "{e:?} has no cause");
            for pair in messages.windows(2) {
                assert!(
                    !pair[1].is_empty() && !pair[0].contains(&pair[1]),
                    "{:?} repeats its cause {:?}",
                    pair[0],
                    pair[1]
                );
            }
            assert_eq!(chain_line(e), messages.join(": "));
        }
        for e in representatives() {
            let line = chain_line(&e);
            assert!(line.ends_with(CAUSE), "{line}");
            assert_eq!(line.matches(CAUSE).count(), 1, "{line}");
        }
    }

    #[test]
    fn chain_line_joins_an_error_and_its_causes() {
        let diff_id = crate::blob::Digest::of(b"");
        let e = Error::from(BuildError::StepFailed {
            at: at(),
            source: Box::new(
                SnapshotError::InLayer {
                    diff_id: diff_id.clone(),
                    source: LayerError::Stream(io()),
                }
                .into(),
            ),
        });
        assert_eq!(
            chain_line(&e),
            format!("Dockerfile:3: [stage 1/2]: layer {diff_id}: layer stream: {CAUSE}")
        );
        let layer = LayerError::from(PathIo::new("/tmp", io()));
        assert_eq!(chain_line(&layer), format!("/tmp: {CAUSE}"));
    }
}
