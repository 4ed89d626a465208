//! Executors run a job's scripts somewhere; the job layer tells them when to stop
//! through a [`Control`] channel and reads their [`ExecOutcome`].

pub mod kubernetes;
pub mod local;
mod process;
mod script;

pub use local::LocalExecutor;
pub use process::StageEnd;
pub use script::{bash_quote, build_script};

use crate::config::RunnerConfig;
use crate::gitlab::JobResponse;
use crate::job::plan::{JobLayout, JobPlan, Stage};
use crate::trace::Trace;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;

/// What the job layer wants from a running job; later values win over earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Control {
    /// Keep going.
    Run,
    /// GitLab said `canceling`: stop the script, run `after_script`.
    Cancel,
    /// The job's timeout passed: stop the script.
    Timeout,
    /// Stop everything now (GitLab aborted the job, or the runner is shutting down).
    Abort,
    /// The runner's `shutdown_timeout` passed: SIGKILL, no grace.
    Kill,
}

/// Raises the control level; lower requests after a higher one are ignored.
pub fn escalate(tx: &watch::Sender<Control>, to: Control) {
    tx.send_if_modified(|c| {
        if to > *c {
            *c = to;
            true
        } else {
            false
        }
    });
}

/// How a job ended on the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The script succeeded.
    Success,
    /// A script line failed with this exit code.
    ScriptFailure {
        /// The failing line's exit code.
        exit_code: i32,
    },
    /// Stopped on [`Control::Cancel`] (`after_script` ran).
    Canceled,
    /// Stopped on [`Control::Timeout`].
    TimedOut,
    /// Stopped on [`Control::Abort`].
    Aborted,
}

/// Errors of the executors: all of them make a job fail with `runner_system_failure`.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A file or directory could not be made.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Fetching the sources failed.
    #[error("getting sources failed: {0}")]
    Git(String),
    /// The job cannot run on this executor.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Preparing was stopped because control reached this level.
    #[error("stopped while preparing ({0:?})")]
    Stopped(Control),
}

/// A boxed future, so executors can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where jobs run. The job layer decides what runs ([`JobPlan`]); an executor only
/// prepares a place for it and runs one stage's script there at a time.
pub trait Executor: Send + Sync {
    /// The name GitLab is told (`local`, `kubernetes`).
    fn name(&self) -> &'static str;

    /// Where the job's directories will be, as its scripts see them.
    fn layout(&self, job: &JobResponse, entry: &RunnerConfig) -> JobLayout;

    /// Prepares a place to run `plan` (a build directory, a pod). Returns
    /// [`ExecutorError::Stopped`] if `control` rises while it waits.
    fn prepare<'a>(
        &'a self,
        job: &'a JobResponse,
        entry: &'a RunnerConfig,
        plan: &'a JobPlan,
        trace: &'a Trace,
        control: &'a mut watch::Receiver<Control>,
    ) -> BoxFuture<'a, Result<Box<dyn Place>, ExecutorError>>;
}

/// A prepared place where a job's stages run.
pub trait Place: Send {
    /// Runs `stage` until it ends, `control` reaches `stop_at`, or `limit` passes; its
    /// output goes to `trace`.
    fn run_stage<'a>(
        &'a mut self,
        stage: &'a Stage,
        trace: &'a Trace,
        control: &'a mut watch::Receiver<Control>,
        stop_at: Control,
        limit: Option<Duration>,
    ) -> BoxFuture<'a, Result<StageEnd, ExecutorError>>;

    /// Removes everything the place holds; errors are logged, not returned (the job's
    /// outcome is already decided).
    fn cleanup(self: Box<Self>) -> BoxFuture<'static, ()>;
}
