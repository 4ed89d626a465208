//! What can go wrong while executing a build plan.

use crate::blob::Digest;
use crate::path_io::PathIo;
use std::sync::Arc;

/// Where in the Dockerfile a step is: displays as `Dockerfile:7: [build 2/5]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepAt {
    /// The Dockerfile.
    pub file: String,
    /// The step's first line.
    pub line: usize,
    /// Which step (`[stage 3/7]`).
    pub step: String,
}

impl std::fmt::Display for StepAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.step)
    }
}

/// A build that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A RUN step's command failed.
    #[error("{0}")]
    RunFailed(Box<RunFailure>),
    /// A step asks for something the build cannot give it (a stage not built yet, a secret
    /// not given, an unknown user, ...).
    #[error("{at}: {message}")]
    Step {
        /// The step.
        at: StepAt,
        /// What is wrong.
        message: String,
    },
    /// A step could not be carried out; `source` says why.
    #[error("{at}")]
    StepFailed {
        /// The step.
        at: StepAt,
        /// Why.
        #[source]
        source: Box<crate::Error>,
    },
    /// A base image (FROM, `COPY --from=image`) could not be found or read.
    #[error("{file}:{line}: base image {reference}")]
    Base {
        /// The Dockerfile.
        file: String,
        /// The line naming the image.
        line: usize,
        /// The image as named in FROM.
        reference: String,
        /// Why; shared, as every stage on the same base reports the one failure.
        #[source]
        source: Arc<crate::Error>,
    },
    /// Local state (cache directory, scratch space) failed.
    #[error(transparent)]
    Io(#[from] PathIo),
    /// Fetching or extracting a layer, or exporting or pushing the image, failed.
    #[error("{what}")]
    Failed {
        /// What was being done (`pushing to registry/repo`, `--tar-path x`, ...).
        what: String,
        /// Why.
        #[source]
        source: Box<crate::Error>,
    },
    /// A layer the image needs is neither in the local store nor in a known repository.
    #[error("layer {0} is neither in the local store nor in a known repository")]
    LayerUnavailable(Digest),
}

impl BuildError {
    /// The base image `reference`, named at `file:line`, failing with `source`.
    pub(crate) fn base(
        file: &str,
        line: usize,
        reference: &str,
        source: Arc<crate::Error>,
    ) -> Self {
        BuildError::Base {
            file: file.to_string(),
            line,
            reference: reference.to_string(),
            source,
        }
    }

    /// `e` while doing `what`.
    pub(crate) fn failed(what: impl Into<String>, e: impl Into<crate::Error>) -> BuildError {
        BuildError::Failed {
            what: what.into(),
            source: Box::new(e.into()),
        }
    }
}

/// A RUN command that did not succeed.
#[derive(Debug)]
pub struct RunFailure {
    /// The Dockerfile.
    pub file: String,
    /// The step's first line.
    pub line: usize,
    /// `[stage 3/7]` or similar.
    pub step: String,
    /// The command as written.
    pub command: String,
    /// `exited with code 2` / `was killed by signal 9`.
    pub status: String,
    /// The output's last lines.
    pub tail: Vec<String>,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} failed: {} {}{}",
            self.file,
            self.line,
            self.step,
            self.command,
            self.status,
            tail_block(&self.tail)
        )
    }
}

fn tail_block(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nlast lines of its output:");
    for l in tail {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}
