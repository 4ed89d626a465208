//! What can go wrong while executing a build plan.

/// A build that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A RUN step's command failed.
    #[error("{0}")]
    RunFailed(Box<RunFailure>),
    /// A step could not be carried out (COPY source missing, USER unknown, ...).
    #[error("{file}:{line}: {step}: {message}")]
    Step {
        /// The Dockerfile.
        file: String,
        /// The step's first line.
        line: usize,
        /// Which step.
        step: String,
        /// What went wrong, with its causes.
        message: String,
    },
    /// A base image could not be found or read.
    #[error("base image {reference}: {message}")]
    Base {
        /// The image as named in FROM.
        reference: String,
        /// What went wrong.
        message: String,
    },
    /// A build option is invalid.
    #[error("{0}")]
    Options(String),
    /// Local state (cache directory, scratch space) failed.
    #[error(transparent)]
    Io(#[from] crate::error::PathIo),
    /// Exporting or pushing the image failed.
    #[error("{what}: {message}")]
    Output {
        /// Which output (`push to registry/repo`, `--tar-path x`, ...).
        what: String,
        /// What went wrong, with its causes.
        message: String,
    },
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
