//! One job's lifecycle: `running` → trace patches and keep-alives while the executor
//! works (watching `Job-Status`, the timeout and shutdown) → final update with the
//! trace's checksum, retried until GitLab has it.

pub mod plan;
pub mod steps;

use crate::config::RunnerConfig;
use crate::executor::{escalate, Control, ExecOutcome, Executor};
use crate::gitlab::{
    Backoff, Client, FailureReason, JobResponse, JobState, RemoteJobStatus, TraceOutput,
    UpdateJobRequest, VersionInfo,
};
use crate::metrics::{Metrics, RunState};
use crate::trace::{ShipResult, Trace, TraceShipper, MAX_PATCH};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Intervals of the job lifecycle; tests shrink them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Between trace patches, unless GitLab says otherwise.
    pub trace_interval: Duration,
    /// A `PUT` keep-alive is sent when nothing reached GitLab for this long.
    pub keepalive_interval: Duration,
    /// First wait before retrying a failed call; doubles up to `retry_cap`.
    pub retry_base: Duration,
    /// Longest wait between retries.
    pub retry_cap: Duration,
    /// Tries of the final update before giving up.
    pub final_update_tries: u32,
    /// Largest trace patch.
    pub max_patch: usize,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            trace_interval: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            // Low enough that, once GitLab is back from an outage, the next try comes within
            // seconds rather than a minute: gitlab-runner asks every `check_interval` (3 s)
            // through an outage, so a jittered 10 s is still gentler on a recovering GitLab.
            retry_cap: Duration::from_secs(10),
            // About 30 minutes of retries at the cap: an outage that long still gets the
            // job's final state to GitLab.
            final_update_tries: 240,
            max_patch: MAX_PATCH,
        }
    }
}

/// The shortest interval between status polls of a silent job, whatever the patch
/// interval: each is a `PUT` GitLab has to write.
const MIN_STATUS_POLL: Duration = Duration::from_secs(1);

/// What happened to a job, as reported to GitLab.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Job id.
    pub job_id: u64,
    /// Final state.
    pub state: JobState,
    /// Why it failed (as sent, after mapping to what GitLab supports).
    pub failure_reason: Option<String>,
    /// The failing script line's exit code.
    pub exit_code: Option<i32>,
    /// GitLab accepted the final update.
    pub delivered: bool,
    /// The trace as sent.
    pub trace: Vec<u8>,
}

/// Why the runner wants jobs to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shutdown {
    /// Keep going.
    #[default]
    None,
    /// Take no new jobs; let running ones finish (SIGQUIT).
    Drain,
    /// Abort running jobs (SIGTERM/SIGINT).
    Abort,
    /// `shutdown_timeout` passed: kill what is left of the jobs and report them within
    /// [`KILL_REPORT_TIMEOUT`].
    Kill,
}

/// After [`Shutdown::Kill`], each of the job's last calls to GitLab (the pending trace,
/// then the final update) gets this long: a GitLab that does not answer must not hold up
/// the runner's exit.
pub const KILL_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns [`KILL_REPORT_TIMEOUT`] after the runner said [`Shutdown::Kill`] (or after
/// now, if it already has).
async fn kill_deadline(mut rx: watch::Receiver<Shutdown>) {
    while *rx.borrow_and_update() != Shutdown::Kill {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::time::sleep(KILL_REPORT_TIMEOUT).await;
}

/// Waits for the next shutdown request. With the sender gone no request can come, so
/// this never returns rather than spinning on the closed channel.
pub(crate) async fn next_shutdown(rx: &mut watch::Receiver<Shutdown>) -> Shutdown {
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => std::future::pending().await,
    }
}

/// Everything a job needs from the runner.
#[derive(Clone)]
pub struct JobEnv {
    /// The GitLab client for the entry.
    pub client: Client,
    /// The entry, as configured when the job started.
    pub entry: Arc<RunnerConfig>,
    /// Runs the job.
    pub executor: Arc<dyn Executor>,
    /// Intervals.
    pub timings: Timings,
    /// Runner shutdown requests.
    pub shutdown: watch::Receiver<Shutdown>,
    /// Where job counts and durations go.
    pub metrics: Option<Arc<Metrics>>,
}

fn map_reason(job: &JobResponse, r: FailureReason) -> String {
    let supported = &job.features.failure_reasons;
    if supported.is_empty() || supported.iter().any(|s| s == r.as_str()) {
        r.as_str().to_owned()
    } else {
        FailureReason::UnknownFailure.as_str().to_owned()
    }
}

struct MonitorEnd {
    shipper: TraceShipper,
    remote_aborted: bool,
    shutdown: bool,
}

/// Sends patches and keep-alives, and turns `Job-Status`, the timeout and shutdown into
/// control levels, until `done` flips.
async fn monitor(
    env: JobEnv,
    job_id: u64,
    token: String,
    mut shipper: TraceShipper,
    ctl: watch::Sender<Control>,
    mut done: watch::Receiver<bool>,
    timeout: Duration,
) -> MonitorEnd {
    let mut shutdown_rx = env.shutdown.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_contact = Instant::now();
    let mut remote_aborted = false;
    let mut shutdown = false;
    let info = VersionInfo::new(env.executor.name());
    loop {
        let interval = shipper
            .update_interval
            .unwrap_or(env.timings.trace_interval)
            .max(Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = done.changed() => break,
            _ = tokio::time::sleep_until(deadline), if *ctl.borrow() < Control::Timeout => {
                escalate(&ctl, Control::Timeout);
                continue;
            }
            s = next_shutdown(&mut shutdown_rx), if *ctl.borrow() < Control::Kill => {
                match s {
                    Shutdown::Abort => escalate(&ctl, Control::Abort),
                    Shutdown::Kill => escalate(&ctl, Control::Kill),
                    Shutdown::None | Shutdown::Drain => {}
                }
                shutdown |= matches!(s, Shutdown::Abort | Shutdown::Kill);
                continue;
            }
        }
        if !shipper.up_to_date() {
            let before = shipper.sent();
            let r = shipper.ship().await;
            if shipper.sent() != before {
                last_contact = Instant::now();
            }
            match r {
                ShipResult::Canceling => escalate(&ctl, Control::Cancel),
                ShipResult::Aborted => {
                    remote_aborted = true;
                    escalate(&ctl, Control::Abort);
                }
                ShipResult::UpToDate | ShipResult::Behind => {}
            }
        }
        // A silent job sends no patch, whose answer would carry a cancel: its status is
        // asked for as often as GitLab wants patches (3 s while someone watches the job,
        // which is when a cancel comes), not only at the keep-alive.
        let silent_poll = env
            .timings
            .keepalive_interval
            .min(interval.max(MIN_STATUS_POLL));
        if last_contact.elapsed() >= silent_poll {
            let req = UpdateJobRequest {
                token: &token,
                state: JobState::Running,
                failure_reason: None,
                exit_code: None,
                output: None,
                info: Some(&info),
            };
            if let Ok(o) = env.client.update_job(job_id, &req).await {
                last_contact = Instant::now();
                // GitLab's answer says how often it wants to hear: the poll follows it.
                if let Some(i) = o.update_interval {
                    shipper.update_interval = Some(i);
                }
                if matches!(o.status, 403 | 404) || o.remote == RemoteJobStatus::Aborted {
                    remote_aborted = true;
                    escalate(&ctl, Control::Abort);
                } else if o.remote == RemoteJobStatus::Canceling {
                    escalate(&ctl, Control::Cancel);
                }
            }
        }
    }
    MonitorEnd {
        shipper,
        remote_aborted,
        shutdown,
    }
}

/// Runs `job` from its first `running` update to the final one.
pub async fn run_job(env: JobEnv, job: JobResponse) -> JobReport {
    let started = Instant::now();
    let entry = env.entry.clone();
    let info = VersionInfo::new(env.executor.name());
    let mut report = JobReport {
        job_id: job.id,
        state: JobState::Failed,
        failure_reason: None,
        exit_code: None,
        delivered: false,
        trace: Vec::new(),
    };
    tracing::info!(job = job.id, runner = %entry.name, project = job.job_info.project_id, "job received");
    // Dropped on every way out of this function: the job leaves `gitlab_runner_jobs`.
    let job_metrics = env.metrics.as_ref().map(|m| m.job_received(&entry.token));

    // GitLab must know the job started before anything of it runs.
    let running = UpdateJobRequest {
        token: &job.token,
        state: JobState::Running,
        failure_reason: None,
        exit_code: None,
        output: None,
        info: Some(&info),
    };
    let mut backoff = Backoff::new(env.timings.retry_base, env.timings.retry_cap);
    for attempt in 0..3 {
        match env.client.update_job(job.id, &running).await {
            Ok(o) if matches!(o.status, 403 | 404) || o.remote != RemoteJobStatus::Running => {
                tracing::warn!(
                    job = job.id,
                    status = o.status,
                    "job aborted before it started"
                );
                return report;
            }
            Ok(o) if o.status == 200 => break,
            Ok(o) => {
                tracing::warn!(
                    job = job.id,
                    status = o.status,
                    attempt,
                    "running update not accepted"
                );
                tokio::time::sleep(backoff.delay_after(o.retry_after)).await;
            }
            Err(e) => {
                tracing::warn!(job = job.id, error = %crate::error_chain(&e), attempt, "running update failed");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    if let Some(m) = &job_metrics {
        m.running();
    }

    let mut secrets: Vec<String> = job
        .variables
        .iter()
        .filter(|v| v.masked)
        .map(|v| v.value.clone())
        .collect();
    secrets.push(job.token.clone());
    let trace = Trace::new(&secrets, entry.output_limit_bytes());
    trace.line(&format!(
        "Running with kiln-runner {} ({})",
        crate::VERSION,
        crate::REVISION
    ));
    trace.line(&format!("  on {} {}", entry.name, entry.short_token()));

    let shipper = TraceShipper::new(env.client.clone(), job.id, job.token.clone(), trace.clone())
        .with_max_patch(env.timings.max_patch);
    let (ctl_tx, ctl_rx) = watch::channel(Control::Run);
    let (done_tx, done_rx) = watch::channel(false);
    let timeout = match job.runner_info.timeout {
        0 => Duration::from_secs(3600),
        t => Duration::from_secs(t),
    };
    let mon = tokio::spawn(monitor(
        env.clone(),
        job.id,
        job.token.clone(),
        shipper,
        ctl_tx,
        done_rx,
        timeout,
    ));

    let on_progress = |p: steps::Progress| {
        if let Some(m) = &job_metrics {
            m.progress(p);
        }
    };
    let outcome = steps::run(
        &*env.executor,
        &job,
        &entry,
        trace.clone(),
        ctl_rx,
        &on_progress,
    )
    .await;
    let _ = done_tx.send(true);
    // The monitor may be in the middle of a patch to a GitLab that does not answer.
    let mut mon = mon;
    let mon = tokio::select! {
        r = &mut mon => r.ok(),
        _ = kill_deadline(env.shutdown.clone()) => {
            mon.abort();
            None
        }
    };
    let mon = match mon {
        Some(m) => m,
        None => MonitorEnd {
            shipper: TraceShipper::new(
                env.client.clone(),
                job.id,
                job.token.clone(),
                trace.clone(),
            )
            .with_max_patch(env.timings.max_patch),
            remote_aborted: false,
            shutdown: matches!(*env.shutdown.borrow(), Shutdown::Abort | Shutdown::Kill),
        },
    };

    let reason = match &outcome {
        Ok(ExecOutcome::Success) => {
            trace.line("\x1b[32;1mJob succeeded\x1b[0;m");
            report.state = JobState::Success;
            None
        }
        Ok(ExecOutcome::ScriptFailure { exit_code }) => {
            trace.line(&format!(
                "\x1b[31;1mERROR: Job failed: exit code {exit_code}\x1b[0;m"
            ));
            report.exit_code = Some(*exit_code);
            Some(FailureReason::ScriptFailure)
        }
        Ok(ExecOutcome::TimedOut) => {
            trace.line(&format!(
                "\x1b[31;1mERROR: Job failed: execution took longer than {} seconds\x1b[0;m",
                timeout.as_secs()
            ));
            Some(FailureReason::JobExecutionTimeout)
        }
        Ok(ExecOutcome::Canceled) => {
            trace.line("\x1b[31;1mERROR: Job failed: canceled\x1b[0;m");
            Some(FailureReason::JobCanceled)
        }
        Ok(ExecOutcome::Aborted) if mon.shutdown && !mon.remote_aborted => {
            trace.line("\x1b[31;1mERROR: Job failed (system failure): aborted: runner shutting down\x1b[0;m");
            Some(FailureReason::RunnerSystemFailure)
        }
        Ok(ExecOutcome::Aborted) => {
            trace.line("\x1b[31;1mERROR: Job failed: aborted by GitLab\x1b[0;m");
            Some(FailureReason::JobCanceled)
        }
        Err(e) => {
            let reason = e.failure_reason();
            let kind = match reason {
                FailureReason::RunnerSystemFailure => " (system failure)",
                _ => "",
            };
            trace.line(&format!(
                "\x1b[31;1mERROR: Job failed{kind}: {}\x1b[0;m",
                crate::error_chain(e)
            ));
            Some(reason)
        }
    };
    report.failure_reason = reason.map(|r| map_reason(&job, r));
    if let Some(m) = &job_metrics {
        m.ended(run_state(&outcome));
        if let Some(r) = &report.failure_reason {
            m.failed(r);
        }
    }
    trace.finish();

    // Even a job GitLab aborted gets its last trace and final state sent, as gitlab-runner
    // does: GitLab refusing them is its answer, and ends the job here.
    report.delivered = tokio::select! {
        d = final_update(&env, &job, &info, mon.shipper, &report, &trace) => d,
        _ = kill_deadline(env.shutdown.clone()) => {
            tracing::error!(job = job.id, "final update abandoned: the runner is exiting");
            false
        }
    };
    report.trace = trace.contents();
    let state = match report.state {
        JobState::Success => "success",
        _ => "failed",
    };
    if report.delivered {
        tracing::info!(job = job.id, runner = %entry.name, state, reason = ?report.failure_reason, duration = ?started.elapsed(), "job finished");
    } else {
        // Not `state`: GitLab does not hold it.
        tracing::warn!(job = job.id, runner = %entry.name, ended = state, reason = ?report.failure_reason, remote_aborted = mon.remote_aborted, duration = ?started.elapsed(), "job ended; GitLab refused or did not get its final state");
    }
    report
}

/// gitlab-runner's runtime state for how the job's script side ended.
fn run_state(outcome: &Result<ExecOutcome, crate::executor::ExecutorError>) -> RunState {
    match outcome {
        Ok(ExecOutcome::Canceled) => RunState::Canceled,
        Ok(ExecOutcome::TimedOut) => RunState::TimedOut,
        Ok(ExecOutcome::Aborted) => RunState::Terminated,
        Ok(ExecOutcome::Success | ExecOutcome::ScriptFailure { .. }) | Err(_) => RunState::Finished,
    }
}

async fn final_update(
    env: &JobEnv,
    job: &JobResponse,
    info: &VersionInfo,
    mut shipper: TraceShipper,
    report: &JobReport,
    trace: &Trace,
) -> bool {
    let mut backoff = Backoff::new(env.timings.retry_base, env.timings.retry_cap);
    for _ in 0..env.timings.final_update_tries {
        // GitLab refusing the trace (the job was canceled or removed) still gets the
        // state sent, once: it is what GitLab records.
        let trace_refused = match shipper.ship().await {
            ShipResult::Aborted => true,
            ShipResult::Behind => {
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            ShipResult::UpToDate | ShipResult::Canceling => false,
        };
        let (checksum, bytesize) = trace.summary();
        let req = UpdateJobRequest {
            token: &job.token,
            state: report.state,
            failure_reason: report.failure_reason.as_deref(),
            exit_code: report.exit_code,
            output: Some(TraceOutput { checksum, bytesize }),
            info: Some(info),
        };
        let answer = env.client.update_job(job.id, &req).await;
        if trace_refused {
            return matches!(answer, Ok(ref o) if o.status == 200);
        }
        match answer {
            Ok(o) => match o.status {
                200 => return true,
                202 => {
                    // Accepted but the trace is still being processed: ask again.
                    let wait = o
                        .retry_after
                        .or(o.update_interval)
                        .or(shipper.update_interval)
                        .unwrap_or(env.timings.trace_interval);
                    tokio::time::sleep(wait).await;
                }
                412 => {
                    tracing::warn!(
                        job = job.id,
                        "trace checksum mismatch: resending the whole trace"
                    );
                    shipper.reset();
                }
                403 | 404 => return false,
                s => {
                    let wait = backoff.delay_after(o.retry_after);
                    tracing::warn!(job = job.id, status = s, ?wait, "final update not accepted");
                    tokio::time::sleep(wait).await;
                }
            },
            Err(e) => {
                tracing::warn!(job = job.id, error = %crate::error_chain(&e), "final update failed");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    false
}
