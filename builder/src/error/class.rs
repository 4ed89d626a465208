//! Whose failure an error is, and so what `kiln` exits with: the table of every module's
//! variants in one place. The matches name every variant, so a new one needs a decision here.

use super::{Class, Error};
use crate::blob::BlobError;
use crate::cache::CacheError;
use crate::copy::CopyError;
use crate::dind::DindError;
use crate::executor::BuildError;
use crate::image::ImageError;
use crate::layer::LayerError;
use crate::registry::RegistryError;
use crate::sandbox::SandboxError;
use crate::snapshot::SnapshotError;
use Class::{Environment, Input};

impl Error {
    /// Whose failure this is: the input's (exit code 1) or kiln's and its environment's (2).
    pub fn class(&self) -> Class {
        match self {
            Error::Dockerfile(_) | Error::Plan(_) | Error::Context(_) | Error::Read(_) => Input,
            Error::Blob(e) => e.class(),
            Error::Image(e) => e.class(),
            Error::Layer(e) => e.class(),
            Error::Build(e) => e.class(),
            Error::Cache(e) => e.class(),
            Error::Copy(e) => e.class(),
            Error::Registry(e) => e.class(),
            Error::Sandbox(e) => e.class(),
            Error::Snapshot(e) => e.class(),
            Error::Dind(e) => e.class(),
            Error::Io(_) => Environment,
        }
    }

    /// The exit code `kiln` ends with for this error.
    pub fn exit_code(&self) -> i32 {
        self.class().exit_code()
    }
}

impl BuildError {
    fn class(&self) -> Class {
        match self {
            // The step's own command, or what the Dockerfile asks of the step.
            BuildError::RunFailed(_) | BuildError::Step { .. } => Input,
            BuildError::StepFailed { source, .. } | BuildError::Failed { source, .. } => {
                source.class()
            }
            BuildError::Base { source, .. } => source.class(),
            BuildError::Io(_) | BuildError::LayerUnavailable(_) => Environment,
        }
    }
}

impl BlobError {
    fn class(&self) -> Class {
        match self {
            // The store is kiln's; a digest mismatch is the registry sending other bytes.
            BlobError::Io(_) | BlobError::DigestMismatch { .. } | BlobError::Missing(_) => {
                Environment
            }
        }
    }
}

impl ImageError {
    fn class(&self) -> Class {
        match self {
            ImageError::Blob(e) => e.class(),
            ImageError::Io(_) | ImageError::Json { .. } | ImageError::LayerMissing { .. } => {
                Environment
            }
            // What the base image (or a destination's name) is.
            ImageError::UnsupportedMediaType(_)
            | ImageError::LayerCountMismatch { .. }
            | ImageError::Reference(_) => Input,
            // An --oci-layout-path that holds something else.
            ImageError::BadLayout { .. } => Environment,
        }
    }
}

impl LayerError {
    fn class(&self) -> Class {
        match self {
            LayerError::Io(_) | LayerError::Stream(_) | LayerError::Changed { .. } => Environment,
            LayerError::Blob(e) => e.class(),
            // What a base image's layer or a step's files hold.
            LayerError::Unsupported { .. }
            | LayerError::Unsafe { .. }
            | LayerError::TooLarge { .. }
            | LayerError::Malformed { .. } => Input,
        }
    }
}

impl CacheError {
    fn class(&self) -> Class {
        match self {
            CacheError::Io(_) => Environment,
            CacheError::Blob(e) => e.class(),
            CacheError::Registry(e) => e.class(),
            CacheError::Image(e) => e.class(),
            CacheError::Reference(_)
            | CacheError::Dockerfile(_)
            | CacheError::Plan(_)
            | CacheError::NoPlatform { .. } => Input,
        }
    }
}

impl CopyError {
    fn class(&self) -> Class {
        match self {
            CopyError::NotFound { .. }
            | CopyError::OutsideContext { .. }
            | CopyError::NotADirectory { .. }
            | CopyError::ReplaceDir { .. }
            | CopyError::BadChmod { .. }
            | CopyError::BadPattern { .. }
            | CopyError::Unsupported { .. }
            | CopyError::Invalid { .. }
            | CopyError::Checksum { .. }
            | CopyError::Archive { .. }
            | CopyError::Context(_) => Input,
            // The network or the host's disk.
            CopyError::Download { .. } | CopyError::Io(_) => Environment,
        }
    }
}

impl RegistryError {
    fn class(&self) -> Class {
        match self {
            // The registry says the image named does not exist, or the name is not one.
            RegistryError::NotFound { .. } | RegistryError::Reference(_) => Input,
            // Unreachable, 5xx, refused credentials, or content that breaks the protocol.
            RegistryError::Setup(_)
            | RegistryError::CaCertificate { .. }
            | RegistryError::Auth { .. }
            | RegistryError::Denied { .. }
            | RegistryError::Rejected { .. }
            | RegistryError::Status { .. }
            | RegistryError::Transport { .. }
            | RegistryError::Protocol { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::TooLarge { .. }
            | RegistryError::Io(_) => Environment,
            RegistryError::Blob(e) => e.class(),
        }
    }
}

impl SandboxError {
    fn class(&self) -> Class {
        match self {
            // What the step runs, as what user, with which mounts: the Dockerfile's words.
            SandboxError::ProgramNotFound { .. }
            | SandboxError::EmptyArgv
            | SandboxError::User(_)
            | SandboxError::MountTarget { .. } => Input,
            SandboxError::OverlayUnsupported { .. }
            | SandboxError::Setup { .. }
            | SandboxError::UnconfinedRefused
            | SandboxError::IsolationUnavailable { .. }
            | SandboxError::Unsupported(_)
            | SandboxError::UserNamespace(_)
            | SandboxError::Io(_)
            | SandboxError::Spawn(_)
            | SandboxError::Seccomp(_)
            | SandboxError::Output(_) => Environment,
        }
    }
}

impl SnapshotError {
    fn class(&self) -> Class {
        match self {
            SnapshotError::Io(_) | SnapshotError::DiffIdMismatch { .. } => Environment,
            SnapshotError::Layer(e) | SnapshotError::InLayer { source: e, .. } => e.class(),
            // A base image's layer type, or what a step left in its tree.
            SnapshotError::MediaType(_) | SnapshotError::Unsupported { .. } => Input,
        }
    }
}

impl DindError {
    fn class(&self) -> Class {
        match self {
            DindError::Dockerfile(_)
            | DindError::Plan(_)
            | DindError::Context(_)
            | DindError::Reference(_)
            | DindError::BuildFailed(_) => Input,
            DindError::Image(e) => e.class(),
            DindError::Certificate(_)
            | DindError::Io(_)
            | DindError::BadHost { .. }
            | DindError::TlsFile { .. }
            | DindError::NothingListens { .. }
            | DindError::Connect { .. }
            | DindError::Tls { .. }
            | DindError::NotReady { .. }
            | DindError::Timeout { .. }
            | DindError::Api { .. }
            | DindError::PushFailed { .. }
            | DindError::Protocol { .. }
            | DindError::Unsupported(_)
            | DindError::Credentials { .. } => Environment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::DockerfileError;
    use crate::executor::error::{RunFailure, StepAt};
    use crate::path_io::PathIo;
    use std::sync::Arc;

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    }

    fn at() -> StepAt {
        StepAt {
            file: "Dockerfile".into(),
            line: 2,
            step: "[stage 1/1]".into(),
        }
    }

    fn in_step(e: impl Into<Error>) -> Error {
        BuildError::StepFailed {
            at: at(),
            source: Box::new(e.into()),
        }
        .into()
    }

    fn base(e: impl Into<Error>) -> Error {
        BuildError::Base {
            file: "Dockerfile".into(),
            line: 1,
            reference: "registry.example/app:1".into(),
            source: Arc::new(e.into()),
        }
        .into()
    }

    fn registry(status: u16) -> RegistryError {
        RegistryError::Status {
            registry: "registry.example".into(),
            repository: "app".into(),
            operation: "get manifest 1".into(),
            status,
            message: "".into(),
        }
    }

    #[test]
    fn the_input_and_the_builds_own_steps_exit_1() {
        let input: Vec<Error> = vec![
            DockerfileError {
                file: "Dockerfile".into(),
                line: 1,
                message: "unknown instruction".into(),
            }
            .into(),
            crate::plan::PlanError::UnknownTarget {
                target: "ap".into(),
                file: "Dockerfile".into(),
                stages: "app".into(),
            }
            .into(),
            crate::context::ContextError::BadPattern {
                file: ".dockerignore".into(),
                line: 1,
                pattern: "[".into(),
                reason: "unclosed".into(),
            }
            .into(),
            in_step(CopyError::NotFound {
                keyword: "COPY",
                source_arg: "a".into(),
                path: "a".into(),
            }),
            BuildError::RunFailed(Box::new(RunFailure {
                file: "Dockerfile".into(),
                line: 2,
                step: "[stage 1/1]".into(),
                command: "exit 3".into(),
                status: "exited with code 3".into(),
                tail: Vec::new(),
            }))
            .into(),
            base(RegistryError::NotFound {
                registry: "registry.example".into(),
                repository: "app".into(),
                what: "manifest 1".into(),
            }),
            Error::Read(PathIo::new("Dockerfile", io())),
        ];
        for e in input {
            assert_eq!((e.class(), e.exit_code()), (Input, 1), "{e:?}");
        }
    }

    #[test]
    fn usage_kiln_and_its_environment_exit_2() {
        let environment: Vec<Error> = vec![
            in_step(SandboxError::Setup {
                step: "mount proc on /proc".into(),
                source: io(),
                detail: String::new(),
            }),
            in_step(SnapshotError::from(PathIo::new("/cache/layers", io()))),
            CacheError::from(PathIo::new("/cache", io())).into(),
            base(RegistryError::Transport {
                registry: "127.0.0.1:1".into(),
                repository: "app".into(),
                operation: "get manifest 1".into(),
                message: "connection refused".into(),
            }),
            base(registry(503)),
            BuildError::failed(
                "pushing to registry.example/app",
                RegistryError::Rejected {
                    registry: "registry.example".into(),
                    repository: "app".into(),
                    who: "the credentials from DOCKER_AUTH_CONFIG".into(),
                    message: "unauthorized".into(),
                },
            )
            .into(),
            Error::Io(PathIo::new("/cache", io())),
        ];
        for e in environment {
            assert_eq!((e.class(), e.exit_code()), (Environment, 2), "{e:?}");
        }
    }
}
