//! The daemon: one poller per `[[runners]]` entry (times `request_concurrency`), job
//! slots bounded by `concurrent` and each entry's `limit`, configuration reloads that
//! leave running jobs alone, and shutdown (drain or abort).

mod health;

use crate::config::{ConfigWatch, ExecutorKind, RunnerConfig};
use crate::executor::kubernetes::KubernetesExecutor;
use crate::executor::{Executor, LocalExecutor, Unavailable};
use crate::gitlab::{Backoff, Client, JobRequest, JobRequestOutcome, VersionInfo};
use crate::job::{next_shutdown, run_job, JobEnv, JobReport, Shutdown, Timings};
use crate::metrics::Metrics;
use health::Health;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Jobs were still running when `shutdown_timeout` passed: they were killed.
    #[error("{0} job(s) still running after the shutdown timeout were killed")]
    ShutdownTimeout(usize),
}

/// How the daemon runs (everything not in `config.toml`).
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Sent with every job request.
    pub system_id: String,
    /// Parent of build directories for entries without `builds_dir`.
    pub builds_dir: PathBuf,
    /// Job lifecycle intervals (also the request back-off).
    pub timings: Timings,
    /// Overrides `check_interval` (tests).
    pub check_interval: Option<Duration>,
}

#[derive(Default)]
struct SlotState {
    total: usize,
    per_entry: HashMap<String, usize>,
}

/// Job slots: `concurrent` overall, `limit` per entry.
#[derive(Default)]
struct Slots {
    state: Mutex<SlotState>,
    freed: Notify,
}

struct Slot {
    slots: Arc<Slots>,
    token: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut s = self.slots.lock();
            s.total -= 1;
            if let Some(n) = s.per_entry.get_mut(&self.token) {
                *n -= 1;
            }
        }
        self.slots.freed.notify_waiters();
    }
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_take(self: &Arc<Self>, token: &str, concurrent: usize, limit: usize) -> Option<Slot> {
        let mut s = self.lock();
        let mine = s.per_entry.get(token).copied().unwrap_or(0);
        if s.total >= concurrent || (limit > 0 && mine >= limit) {
            return None;
        }
        s.total += 1;
        *s.per_entry.entry(token.to_owned()).or_default() += 1;
        Some(Slot {
            slots: self.clone(),
            token: token.to_owned(),
        })
    }

    fn running(&self) -> usize {
        self.lock().total
    }

    /// Returns once no job holds a slot.
    async fn idle(&self) {
        loop {
            let freed = self.freed.notified();
            if self.running() == 0 {
                return;
            }
            freed.await;
        }
    }
}

struct Shared {
    opts: RunnerOptions,
    config: ConfigWatch,
    shutdown: watch::Receiver<Shutdown>,
    /// What jobs are told: the daemon's own channel, for it alone decides when
    /// `shutdown_timeout` has passed and jobs are killed.
    jobs_shutdown: watch::Sender<Shutdown>,
    metrics: Arc<Metrics>,
    slots: Arc<Slots>,
    reports: Option<mpsc::UnboundedSender<JobReport>>,
    /// The Kubernetes executor, shared by every `kubernetes` entry (one watch per
    /// namespace for all their jobs); made when the first such entry starts.
    kube: tokio::sync::OnceCell<Result<Arc<KubernetesExecutor>, String>>,
}

/// How long killed jobs get to finish reporting (each of their last calls to GitLab is
/// bounded by [`crate::job::KILL_REPORT_TIMEOUT`]) before the daemon returns anyway.
const KILL_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// The runner daemon.
pub struct Runner {
    shared: Arc<Shared>,
}

impl Runner {
    /// A daemon reading `config`, stopping as `shutdown` says.
    pub fn new(
        opts: RunnerOptions,
        config: ConfigWatch,
        shutdown: watch::Receiver<Shutdown>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_system_id(&opts.system_id);
        Self {
            shared: Arc::new(Shared {
                opts,
                config,
                shutdown,
                jobs_shutdown: watch::channel(Shutdown::None).0,
                metrics,
                slots: Arc::new(Slots::default()),
                reports: None,
                kube: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// Sends every finished job's report to `tx` (tests, embedding).
    pub fn with_reports(mut self, tx: mpsc::UnboundedSender<JobReport>) -> Self {
        if let Some(s) = Arc::get_mut(&mut self.shared) {
            s.reports = Some(tx);
        }
        self
    }

    /// Runs `kubernetes` entries' jobs through `client` instead of the cluster the
    /// environment names (tests, embedding).
    pub fn with_kube_client(self, client: kube::Client) -> Self {
        let exec = Arc::new(KubernetesExecutor::new(client));
        let _ = self.shared.kube.set(Ok(exec));
        self
    }

    /// Polls until shutdown; then waits for running jobs (all of them on drain, up to
    /// `shutdown_timeout` on abort).
    pub async fn run(self) -> Result<(), RunnerError> {
        let shared = self.shared;
        let mut config = shared.config.clone();
        let mut shutdown = shared.shutdown.clone();
        // One stop switch per entry token, for entries removed from the file.
        let mut pollers: HashMap<String, watch::Sender<bool>> = HashMap::new();
        loop {
            let cfg = config.borrow_and_update().clone();
            shared.metrics.set_config(&cfg);
            let tokens: Vec<&RunnerConfig> = cfg.runners.iter().collect();
            pollers.retain(|token, stop| {
                let keep = tokens.iter().any(|r| &r.token == token);
                if !keep {
                    tracing::info!(token = %&token[..token.len().min(8)], "entry removed: polling stops");
                    let _ = stop.send(true);
                }
                keep
            });
            for entry in tokens {
                if pollers.contains_key(&entry.token) {
                    continue;
                }
                if entry.executor == ExecutorKind::Kubernetes
                    && !start_kubernetes(&shared, entry).await
                {
                    continue;
                }
                let (stop_tx, stop_rx) = watch::channel(false);
                let health = Arc::new(Health::default());
                for _ in 0..entry.request_concurrency.max(1) {
                    tokio::spawn(poll(
                        shared.clone(),
                        entry.token.clone(),
                        health.clone(),
                        stop_rx.clone(),
                    ));
                }
                pollers.insert(entry.token.clone(), stop_tx);
            }
            tokio::select! {
                r = config.changed() => if r.is_err() { break },
                _ = next_shutdown(&mut shutdown) => {},
            }
            if *shutdown.borrow() != Shutdown::None {
                break;
            }
        }
        for stop in pollers.values() {
            let _ = stop.send(true);
        }
        let timeout = shared.config.borrow().shutdown_timeout();
        tracing::info!(mode = ?*shutdown.borrow(), running = shared.slots.running(), "shutting down");
        // Jobs run until idle on a drain; a SIGTERM (at once or after SIGQUIT) aborts them
        // and starts `shutdown_timeout`.
        let timed_out = async {
            while *shutdown.borrow() != Shutdown::Abort {
                next_shutdown(&mut shutdown).await;
            }
            shared.jobs_shutdown.send_replace(Shutdown::Abort);
            tokio::time::sleep(timeout).await;
        };
        tokio::select! {
            _ = shared.slots.idle() => return Ok(()),
            _ = timed_out => {}
        }
        let running = shared.slots.running();
        if running == 0 {
            return Ok(());
        }
        tracing::warn!(
            running,
            "shutdown timeout passed: killing the jobs' processes"
        );
        shared.jobs_shutdown.send_replace(Shutdown::Kill);
        if tokio::time::timeout(KILL_EXIT_TIMEOUT, shared.slots.idle())
            .await
            .is_err()
        {
            tracing::error!(
                running = shared.slots.running(),
                "killed jobs did not finish reporting"
            );
        }
        Err(RunnerError::ShutdownTimeout(running))
    }
}

/// How long the start-up sweep of a crashed run's pods may take before the entry
/// starts anyway (the sweep runs again at the next start).
const ORPHAN_SWEEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Readies a `kubernetes` entry: the shared executor (made once), then the removal of
/// what an earlier run of the entry left in the cluster. Returns false if the entry
/// cannot run jobs (no cluster could be configured).
async fn start_kubernetes(shared: &Shared, entry: &RunnerConfig) -> bool {
    let exec = shared
        .kube
        .get_or_init(|| async {
            KubernetesExecutor::from_environment()
                .await
                .map(Arc::new)
                .map_err(|e| crate::error_chain(&e))
        })
        .await;
    let exec = match exec {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(runner = %entry.name, error = %e, "entry not polled: no Kubernetes cluster to run its jobs in");
            return false;
        }
    };
    match tokio::time::timeout(ORPHAN_SWEEP_TIMEOUT, exec.remove_orphans(entry)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            tracing::info!(runner = %entry.name, removed = n, "removed pods and Secrets an earlier run left behind");
        }
        Ok(Err(e)) => {
            tracing::warn!(runner = %entry.name, error = %crate::error_chain(&e), "cannot remove an earlier run's pods");
        }
        Err(_) => {
            tracing::warn!(runner = %entry.name, "removing an earlier run's pods timed out");
        }
    }
    true
}

fn executor_for(shared: &Shared, entry: &RunnerConfig) -> Arc<dyn Executor> {
    match (entry.executor, shared.kube.get()) {
        (ExecutorKind::Kubernetes, Some(Ok(k))) => k.clone(),
        // Only an entry whose executor changed in a reload gets here: its job fails
        // rather than running on this machine.
        (ExecutorKind::Kubernetes, _) => Arc::new(Unavailable("kubernetes")),
        (ExecutorKind::Local, _) => Arc::new(LocalExecutor::new(shared.opts.builds_dir.clone())),
    }
}

async fn poll(
    shared: Arc<Shared>,
    token: String,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut last_update: Option<String> = None;
    let mut backoff = Backoff::new(
        shared.opts.timings.retry_base,
        shared.opts.timings.retry_cap,
    );
    let mut client: Option<(String, Client)> = None;
    let stopping = |stop: &watch::Receiver<bool>, shutdown: &watch::Receiver<Shutdown>| {
        *stop.borrow() || *shutdown.borrow() != Shutdown::None
    };
    // Waits `d`, or less when asked to stop.
    async fn pause(
        d: Duration,
        stop: &mut watch::Receiver<bool>,
        shutdown: &mut watch::Receiver<Shutdown>,
    ) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {},
            _ = stop.changed() => {},
            _ = next_shutdown(shutdown) => {},
        }
    }
    loop {
        if stopping(&stop, &shutdown) {
            return;
        }
        let cfg = shared.config.borrow().clone();
        let Some(entry) = cfg.runners.iter().find(|r| r.token == token).cloned() else {
            return;
        };
        let check = shared
            .opts
            .check_interval
            .unwrap_or_else(|| cfg.check_interval());
        if let Some(d) = health.paused_for(entry.unhealthy_interval()) {
            let mut config = shared.config.clone();
            config.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(d) => {},
                r = config.changed() => if r.is_ok() {
                    tracing::info!(runner = %entry.name, "configuration reloaded: unhealthy entry asks GitLab again");
                    health.reset();
                },
                _ = stop.changed() => {},
                _ = next_shutdown(&mut shutdown) => {},
            }
            continue;
        }
        let Some(slot) = shared.slots.try_take(&token, cfg.concurrent, entry.limit) else {
            let freed = shared.slots.freed.notified();
            tokio::select! {
                _ = freed => {},
                _ = tokio::time::sleep(check) => {},
                _ = stop.changed() => {},
                _ = next_shutdown(&mut shutdown) => {},
            }
            continue;
        };
        let c = match &client {
            Some((url, c)) if *url == entry.url => c.clone(),
            _ => match Client::new(&entry.url) {
                Ok(c) => {
                    let c = c.with_metrics(shared.metrics.clone(), &token);
                    client = Some((entry.url.clone(), c.clone()));
                    c
                }
                Err(e) => {
                    // The poller stays, so that a corrected file brings the entry back.
                    tracing::error!(runner = %entry.name, error = %crate::error_chain(&e), "entry not polled until the configuration changes");
                    drop(slot);
                    let mut config = shared.config.clone();
                    config.borrow_and_update();
                    tokio::select! {
                        _ = config.changed() => {},
                        _ = stop.changed() => {},
                        _ = next_shutdown(&mut shutdown) => {},
                    }
                    continue;
                }
            },
        };
        let info = VersionInfo::new(entry.executor.as_str());
        let req = JobRequest {
            token: &token,
            system_id: &shared.opts.system_id,
            info: &info,
            last_update: last_update.as_deref(),
        };
        let asked = tokio::time::Instant::now();
        // GitLab may hold the request for long (Workhorse's long polling): a shutdown or
        // the entry's removal must not wait for its answer.
        let outcome = {
            let _in_flight = shared.metrics.request_started(&token);
            tokio::select! {
                r = c.request_job(&req) => r,
                _ = stop.changed() => continue,
                _ = next_shutdown(&mut shutdown) => continue,
            }
        };
        match outcome {
            Ok(JobRequestOutcome::Job(job)) => {
                health.reset();
                shared.metrics.set_healthy(&token, true);
                backoff.reset();
                let env = JobEnv {
                    client: c,
                    entry: Arc::new(entry.clone()),
                    executor: executor_for(&shared, &entry),
                    timings: shared.opts.timings.clone(),
                    shutdown: shared.jobs_shutdown.subscribe(),
                    metrics: Some(shared.metrics.clone()),
                };
                let reports = shared.reports.clone();
                tokio::spawn(async move {
                    let report = run_job(env, *job).await;
                    drop(slot);
                    if let Some(tx) = reports {
                        let _ = tx.send(report);
                    }
                });
            }
            Ok(JobRequestOutcome::NoJob { last_update: lu }) => {
                health.reset();
                shared.metrics.set_healthy(&token, true);
                drop(slot);
                backoff.reset();
                if lu.is_some() {
                    last_update = lu;
                }
                // `check_interval` spaces the starts of requests, as gitlab-runner's feeder
                // does: a request Workhorse held (long polling) is followed by the next at
                // once, so a job queued just after the 204 is not left waiting a whole
                // interval.
                pause(
                    check.saturating_sub(asked.elapsed()),
                    &mut stop,
                    &mut shutdown,
                )
                .await;
            }
            // Only refusals count, as gitlab-runner counts them: an outage (5xx, no
            // connection) is met by the backoff, so the entry asks again as soon as GitLab
            // is back instead of sitting out `unhealthy_interval`.
            Ok(JobRequestOutcome::Forbidden) => {
                drop(slot);
                let limit = entry.unhealthy_requests_limit();
                if health.refused(limit) {
                    shared.metrics.set_healthy(&token, false);
                    tracing::error!(runner = %entry.name, token = %entry.short_token(), limit, pause = ?entry.unhealthy_interval(), "GitLab refused the runner token (403) too often: entry unhealthy, paused");
                } else {
                    let d = backoff.next_delay();
                    tracing::warn!(runner = %entry.name, token = %entry.short_token(), delay = ?d, "GitLab refused the runner token (403)");
                    pause(d, &mut stop, &mut shutdown).await;
                }
            }
            Ok(JobRequestOutcome::Backoff {
                status,
                retry_after,
            }) => {
                drop(slot);
                let d = backoff.delay_after(retry_after);
                tracing::warn!(runner = %entry.name, status, delay = ?d, "job request not served: backing off");
                pause(d, &mut stop, &mut shutdown).await;
            }
            Err(e) => {
                drop(slot);
                let d = backoff.next_delay();
                tracing::warn!(runner = %entry.name, error = %crate::error_chain(&e), delay = ?d, "job request failed: backing off");
                pause(d, &mut stop, &mut shutdown).await;
            }
        }
    }
}
