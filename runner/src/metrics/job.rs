//! One job's series in `gitlab_runner_jobs` and what it adds to the counters, in
//! gitlab-runner's vocabulary for the `state`, `stage` and `executor_stage` labels.

use super::Metrics;
use crate::job::steps::Progress;
use std::sync::Arc;
use std::time::Instant;

/// gitlab-runner's runtime state of a job (its `BuildRuntimeState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Received, not yet acknowledged to GitLab.
    Pending,
    /// Running.
    Running,
    /// Ended by its own script (success or failure) or a system failure.
    Finished,
    /// Canceled from GitLab.
    Canceled,
    /// Stopped by its timeout.
    TimedOut,
    /// Aborted (runner shutdown, or GitLab dropped the job).
    Terminated,
}

impl RunState {
    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Canceled => "canceled",
            Self::TimedOut => "timedout",
            Self::Terminated => "terminated",
        }
    }
}

/// A job's labels in `gitlab_runner_jobs`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct JobStatus {
    pub(super) runner: String,
    pub(super) state: &'static str,
    pub(super) stage: &'static str,
    pub(super) executor_stage: &'static str,
}

/// A job as the metrics see it, from its receipt until dropped: the drop removes it from
/// `gitlab_runner_jobs` and records its duration, whichever way the job ended.
#[derive(Debug)]
pub struct JobMetrics {
    pub(super) metrics: Arc<Metrics>,
    pub(super) key: u64,
    pub(super) runner: String,
    pub(super) started: Instant,
}

impl JobMetrics {
    fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        if let Some(s) = self.metrics.lock().jobs.get_mut(&self.key) {
            f(s);
        }
    }

    /// GitLab accepted the job's `running` state: the executor is about to be made.
    pub fn running(&self) {
        self.update(|s| {
            s.state = RunState::Running.as_str();
            s.stage = "prepare_executor";
            s.executor_stage = "created";
        });
    }

    /// The job layer moved on. `executor_stage` takes the values gitlab-runner's generic
    /// executor stages have (`prepare` from preparation until the executor finishes, then
    /// `cleanup`), which is what its shell and Kubernetes executors report: a `docker_*`
    /// value would claim a Docker executor.
    pub fn progress(&self, p: Progress) {
        self.update(|s| match p {
            Progress::Preparing => {
                s.stage = "prepare_executor";
                s.executor_stage = "prepare";
            }
            Progress::Stage(name) => s.stage = name.as_str(),
            Progress::CleaningUp => s.executor_stage = "cleanup",
        });
    }

    /// The job's script side ended in `state`; the final update may still be going on.
    pub fn ended(&self, state: RunState) {
        self.update(|s| s.state = state.as_str());
    }

    /// The job failed for `reason` (as sent to GitLab).
    pub fn failed(&self, reason: &str) {
        *self
            .metrics
            .lock()
            .failed
            .entry((self.runner.clone(), reason.to_owned()))
            .or_default() += 1;
    }
}

impl Drop for JobMetrics {
    fn drop(&mut self) {
        let mut i = self.metrics.lock();
        i.jobs.remove(&self.key);
        i.durations
            .entry(self.runner.clone())
            .or_default()
            .observe(self.started.elapsed().as_secs_f64());
    }
}
