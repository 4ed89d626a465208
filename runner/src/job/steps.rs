//! The order of a job's stages, the same on every executor: get_sources, step_script,
//! then after_script (after a success, a failure or a cancel, within its own limit), and
//! how a stage's end maps to the job's outcome.

use super::plan::{JobPlan, StageName};
use crate::config::RunnerConfig;
use crate::executor::{Control, ExecOutcome, Executor, ExecutorError, Place, StageEnd};
use crate::gitlab::JobResponse;
use crate::trace::Trace;
use std::time::Duration;
use tokio::sync::watch;

/// `after_script` gets at most this long, as in gitlab-runner.
pub const AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The outcome of a job stopped at `level` before its script ended.
fn stopped(level: Control) -> ExecOutcome {
    match level {
        Control::Cancel => ExecOutcome::Canceled,
        Control::Timeout => ExecOutcome::TimedOut,
        Control::Run | Control::Abort | Control::Kill => ExecOutcome::Aborted,
    }
}

/// Where a job is, told to whoever watches it (the metrics' `stage` labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The executor is preparing the job's place.
    Preparing,
    /// A stage starts.
    Stage(StageName),
    /// The place is being cleaned up.
    CleaningUp,
}

/// Runs `job` on `executor`: plans it, prepares a place, runs its stages there and
/// cleans up, whatever happened; `progress` hears of each step as it starts.
pub async fn run(
    executor: &dyn Executor,
    job: &JobResponse,
    entry: &RunnerConfig,
    trace: Trace,
    mut control: watch::Receiver<Control>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ExecOutcome, ExecutorError> {
    progress(Progress::Preparing);
    trace.line(&format!(
        "\x1b[36;1mPreparing the \"{}\" executor\x1b[0;m",
        executor.name()
    ));
    let plan = JobPlan::new(job, entry, executor.layout(job, entry), &trace);
    let mut place = match executor
        .prepare(job, entry, &plan, &trace, &mut control)
        .await
    {
        Ok(p) => p,
        Err(ExecutorError::Stopped(level)) => return Ok(stopped(level)),
        Err(e) => return Err(e),
    };
    let result = run_stages(&mut *place, &plan, job, &trace, &mut control, progress).await;
    progress(Progress::CleaningUp);
    place.cleanup().await;
    result
}

async fn run_stages(
    place: &mut dyn Place,
    plan: &JobPlan,
    job: &JobResponse,
    trace: &Trace,
    control: &mut watch::Receiver<Control>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<ExecOutcome, ExecutorError> {
    match plan.stage(StageName::GetSources) {
        None => trace.line("Skipping Git repository setup"),
        Some(stage) => {
            progress(Progress::Stage(StageName::GetSources));
            let end = place
                .run_stage(stage, trace, control, Control::Cancel, None)
                .await?;
            match end {
                StageEnd::Exited(0) => {}
                StageEnd::Exited(code) => {
                    return Err(ExecutorError::Git(format!(
                        "get_sources exited with code {code}"
                    )))
                }
                // A fetch interrupted on purpose is not a system failure.
                StageEnd::Stopped(level) => return Ok(stopped(level)),
                StageEnd::TimedOut => return Ok(ExecOutcome::TimedOut),
            }
        }
    }

    trace.line("\x1b[32;1mExecuting \"step_script\" stage of the job script\x1b[0;m");
    let outcome = match plan.stage(StageName::StepScript) {
        None => ExecOutcome::Success,
        Some(stage) => {
            progress(Progress::Stage(StageName::StepScript));
            match place
                .run_stage(stage, trace, control, Control::Cancel, None)
                .await?
            {
                StageEnd::Exited(0) => ExecOutcome::Success,
                StageEnd::Exited(exit_code) => ExecOutcome::ScriptFailure { exit_code },
                StageEnd::Stopped(level) => stopped(level),
                StageEnd::TimedOut => ExecOutcome::TimedOut,
            }
        }
    };
    if matches!(outcome, ExecOutcome::Aborted | ExecOutcome::TimedOut) {
        return Ok(outcome);
    }
    if let Some(stage) = plan.stage(StageName::AfterScript) {
        let limit = match job.step("after_script").map_or(0, |s| s.timeout) {
            0 => AFTER_SCRIPT_TIMEOUT,
            t => Duration::from_secs(t).min(AFTER_SCRIPT_TIMEOUT),
        };
        progress(Progress::Stage(StageName::AfterScript));
        trace.line("");
        trace.line("\x1b[32;1mRunning after_script\x1b[0;m");
        let warn = |why: &str| {
            trace.line(&format!(
                "\x1b[0;33mWARNING: after_script failed, but job will continue unaffected: {why}\x1b[0;m"
            ))
        };
        match place
            .run_stage(stage, trace, control, Control::Abort, Some(limit))
            .await?
        {
            StageEnd::Exited(0) => {}
            StageEnd::Exited(code) => warn(&format!("exit code {code}")),
            StageEnd::TimedOut => warn("timed out"),
            StageEnd::Stopped(_) => return Ok(ExecOutcome::Aborted),
        }
    }
    Ok(outcome)
}
