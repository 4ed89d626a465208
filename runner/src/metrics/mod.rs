//! Prometheus metrics and `/health` on `listen_address`.
//!
//! The series are gitlab-runner's (`gitlab_runner_*`, same names, labels and meaning, so
//! its Grafana dashboards and alerts work unchanged) plus the standard `process_*` ones;
//! what only kiln has is under `kiln_runner_*`.
//!
//! The text is rendered here rather than with `prometheus-client`: that crate writes
//! OpenMetrics (its own suffix rules and `# EOF`), has no process collector, and
//! `gitlab_runner_jobs` is a per-scrape view of the running jobs that would need a
//! custom collector anyway; the 0.0.4 text format gitlab-runner serves is a few lines.

mod errors;
mod job;
mod process;
mod serve;
mod text;

pub use errors::ErrorCounter;
pub use job::{JobMetrics, RunState};
pub use serve::serve;

use crate::config::Config;
use job::JobStatus;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use text::Text;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Upper bounds (seconds) of `gitlab_runner_job_duration_seconds`, gitlab-runner's.
const BUCKETS: &[f64] = &[
    30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 18000.0, 36000.0,
];

/// The `status` gitlab-runner counts for a request that got no HTTP answer.
const NO_RESPONSE_STATUS: &str = "-100";

/// The `runner` label gitlab-runner gives an entry: its token without the known
/// prefixes (`glrt-` with its partition `t1_`..`t3_`, `glrtr-`, `glcbt-`, the legacy
/// `GR` + 7 hex digits), cut to 9 characters.
pub fn runner_label(token: &str) -> String {
    let mut t = token;
    if let Some(rest) = t.strip_prefix("glrt-") {
        t = strip_partition(rest);
    } else if let Some(rest) = t.strip_prefix("glrtr-") {
        t = rest;
    } else {
        t = strip_partition(t);
    }
    t = t.strip_prefix("glcbt-").unwrap_or(t);
    if let Some(rest) = t.strip_prefix("GR") {
        if rest.len() >= 7 && rest.as_bytes()[..7].iter().all(u8::is_ascii_hexdigit) {
            t = &rest[7..];
        }
    }
    t.chars().take(9).collect()
}

fn strip_partition(t: &str) -> &str {
    match t.as_bytes() {
        [b't', b'1'..=b'3', b'_', ..] => &t[3..],
        _ => t,
    }
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// A configured entry, by its `runner` label.
#[derive(Debug)]
struct Entry {
    limit: usize,
}

#[derive(Debug, Default)]
struct Inner {
    system_id: String,
    concurrent: Option<usize>,
    entries: BTreeMap<String, Entry>,
    jobs: BTreeMap<u64, JobStatus>,
    next_job: u64,
    requests: BTreeMap<String, u64>,
    jobs_total: BTreeMap<String, u64>,
    failed: BTreeMap<(String, String), u64>,
    /// By runner, endpoint, status, method.
    api: BTreeMap<(String, &'static str, String, &'static str), u64>,
    durations: BTreeMap<String, Histogram>,
    healthy: BTreeMap<String, bool>,
}

/// The runner's metrics. Every method naming an entry takes its token.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    warnings: AtomicU64,
    errors: AtomicU64,
}

/// A job request in flight, counted in `gitlab_runner_request_concurrency` until dropped.
#[derive(Debug)]
pub struct RequestInFlight {
    metrics: Arc<Metrics>,
    runner: String,
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        if let Some(n) = self.metrics.lock().requests.get_mut(&self.runner) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `system_id` label of every per-entry series.
    pub fn set_system_id(&self, id: &str) {
        id.clone_into(&mut self.lock().system_id);
    }

    /// Takes `concurrent` and the entries' `limit`s from the (re)loaded configuration;
    /// the series of entries no longer there go.
    pub fn set_config(&self, cfg: &Config) {
        let mut i = self.lock();
        i.concurrent = Some(cfg.concurrent);
        i.entries = cfg
            .runners
            .iter()
            .map(|r| (runner_label(&r.token), Entry { limit: r.limit }))
            .collect();
        let Inner {
            entries,
            requests,
            healthy,
            ..
        } = &mut *i;
        requests.retain(|r, _| entries.contains_key(r));
        healthy.retain(|r, _| entries.contains_key(r));
    }

    /// A job of the entry `token` was received: counted in `gitlab_runner_jobs_total`
    /// and shown in `gitlab_runner_jobs` until the returned handle drops.
    pub fn job_received(self: &Arc<Self>, token: &str) -> JobMetrics {
        let runner = runner_label(token);
        let mut i = self.lock();
        *i.jobs_total.entry(runner.clone()).or_default() += 1;
        let key = i.next_job;
        i.next_job += 1;
        i.jobs.insert(
            key,
            JobStatus {
                runner: runner.clone(),
                state: RunState::Pending.as_str(),
                stage: "",
                executor_stage: "",
            },
        );
        JobMetrics {
            metrics: self.clone(),
            key,
            runner,
            started: Instant::now(),
        }
    }

    /// Counts one API request of the entry `token`; `status` is `None` when no HTTP
    /// answer came.
    pub fn api_request(
        &self,
        token: &str,
        endpoint: &'static str,
        method: &'static str,
        status: Option<u16>,
    ) {
        let status = status.map_or_else(|| NO_RESPONSE_STATUS.to_owned(), |s| s.to_string());
        *self
            .lock()
            .api
            .entry((runner_label(token), endpoint, status, method))
            .or_default() += 1;
    }

    /// A job request of the entry `token` starts; it ends when the guard drops.
    pub fn request_started(self: &Arc<Self>, token: &str) -> RequestInFlight {
        let runner = runner_label(token);
        *self.lock().requests.entry(runner.clone()).or_default() += 1;
        RequestInFlight {
            metrics: self.clone(),
            runner,
        }
    }

    /// Records whether GitLab accepts the entry `token` (false once it is unhealthy).
    pub fn set_healthy(&self, token: &str, healthy: bool) {
        self.lock().healthy.insert(runner_label(token), healthy);
    }

    /// False when some entries are known and none of them is healthy.
    pub fn healthy(&self) -> bool {
        let i = self.lock();
        i.healthy.is_empty() || i.healthy.values().any(|h| *h)
    }

    /// Counts a log event of `level` (warnings and errors only).
    pub fn logged(&self, level: tracing::Level) {
        let counter = match level {
            tracing::Level::ERROR => &self.errors,
            tracing::Level::WARN => &self.warnings,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut t = Text::default();
        self.render_runner(&mut t);
        self.render_errors(&mut t);
        process::render(&mut t);
        t.finish()
    }

    fn render_runner(&self, t: &mut Text) {
        let i = self.lock();
        let sid = i.system_id.as_str();

        t.family(
            "gitlab_runner_version_info",
            "gauge",
            "A metric with a constant '1' value labeled by different build stats fields.",
        );
        t.sample(
            "gitlab_runner_version_info",
            &[
                ("name", "kiln-runner"),
                ("version", crate::VERSION),
                ("revision", crate::REVISION),
                ("os", std::env::consts::OS),
                ("architecture", std::env::consts::ARCH),
            ],
            1.0,
        );

        if let Some(c) = i.concurrent {
            t.family(
                "gitlab_runner_concurrent",
                "gauge",
                "The current value of concurrent setting",
            );
            t.sample("gitlab_runner_concurrent", &[], c as f64);
        }
        t.family(
            "gitlab_runner_limit",
            "gauge",
            "The current value of limit setting",
        );
        for (r, e) in &i.entries {
            let labels = [("runner", r.as_str()), ("system_id", sid)];
            t.sample("gitlab_runner_limit", &labels, e.limit as f64);
        }

        // As gitlab-runner does, every entry has an `idle` series so that the family is
        // there (at 0) while nothing runs.
        let mut jobs: BTreeMap<JobStatus, u64> = i
            .entries
            .keys()
            .map(|r| {
                let idle = JobStatus {
                    runner: r.clone(),
                    state: "idle",
                    stage: "idle",
                    executor_stage: "idle",
                };
                (idle, 0)
            })
            .collect();
        for j in i.jobs.values() {
            *jobs.entry(j.clone()).or_default() += 1;
        }
        t.family(
            "gitlab_runner_jobs",
            "gauge",
            "The current number of running builds.",
        );
        for (j, n) in &jobs {
            let labels = [
                ("runner", j.runner.as_str()),
                ("system_id", sid),
                ("state", j.state),
                ("stage", j.stage),
                ("executor_stage", j.executor_stage),
            ];
            t.sample("gitlab_runner_jobs", &labels, *n as f64);
        }

        t.family(
            "gitlab_runner_request_concurrency",
            "gauge",
            "The current number of concurrent requests for a new job",
        );
        for r in i.entries.keys() {
            let n = i.requests.get(r).copied().unwrap_or(0);
            let labels = [("runner", r.as_str()), ("system_id", sid)];
            t.sample("gitlab_runner_request_concurrency", &labels, n as f64);
        }
        // kiln runs exactly `request_concurrency` request loops per entry, so a request
        // is never refused for exceeding it: the counter exists for the dashboards, at 0.
        t.family(
            "gitlab_runner_request_concurrency_exceeded_total",
            "counter",
            "Count of excess requests above the configured request_concurrency limit",
        );
        for r in i.entries.keys() {
            let labels = [("runner", r.as_str()), ("system_id", sid)];
            t.sample(
                "gitlab_runner_request_concurrency_exceeded_total",
                &labels,
                0.0,
            );
        }

        t.family(
            "gitlab_runner_jobs_total",
            "counter",
            "Total number of handled jobs",
        );
        for (r, n) in &i.jobs_total {
            let labels = [("runner", r.as_str()), ("system_id", sid)];
            t.sample("gitlab_runner_jobs_total", &labels, *n as f64);
        }
        t.family(
            "gitlab_runner_failed_jobs_total",
            "counter",
            "Total number of failed jobs",
        );
        for ((r, reason), n) in &i.failed {
            let labels = [
                ("runner", r.as_str()),
                ("system_id", sid),
                ("failure_reason", reason.as_str()),
            ];
            t.sample("gitlab_runner_failed_jobs_total", &labels, *n as f64);
        }

        t.family(
            "gitlab_runner_job_duration_seconds",
            "histogram",
            "Histogram of job durations",
        );
        for (r, h) in &i.durations {
            for (c, b) in h.counts.iter().zip(BUCKETS) {
                let le = text::format_value(*b);
                let labels = [("runner", r.as_str()), ("system_id", sid), ("le", &le)];
                t.sample(
                    "gitlab_runner_job_duration_seconds_bucket",
                    &labels,
                    *c as f64,
                );
            }
            let labels = [("runner", r.as_str()), ("system_id", sid), ("le", "+Inf")];
            t.sample(
                "gitlab_runner_job_duration_seconds_bucket",
                &labels,
                h.count as f64,
            );
            let labels = [("runner", r.as_str()), ("system_id", sid)];
            t.sample("gitlab_runner_job_duration_seconds_sum", &labels, h.sum);
            t.sample(
                "gitlab_runner_job_duration_seconds_count",
                &labels,
                h.count as f64,
            );
        }

        t.family(
            "gitlab_runner_api_request_statuses_total",
            "counter",
            "The total number of API requests made by GitLab Runner, partitioned by runner, system_id, endpoint, status and method.",
        );
        for ((r, endpoint, status, method), n) in &i.api {
            let labels = [
                ("runner", r.as_str()),
                ("system_id", sid),
                ("endpoint", endpoint),
                ("status", status.as_str()),
                ("method", method),
            ];
            t.sample(
                "gitlab_runner_api_request_statuses_total",
                &labels,
                *n as f64,
            );
        }

        t.family(
            "kiln_runner_healthy",
            "gauge",
            "1 while GitLab accepts the entry's token, 0 once it is unhealthy.",
        );
        for (r, h) in &i.healthy {
            let labels = [("runner", r.as_str()), ("system_id", sid)];
            t.sample("kiln_runner_healthy", &labels, f64::from(u8::from(*h)));
        }
    }

    fn render_errors(&self, t: &mut Text) {
        t.family(
            "gitlab_runner_errors_total",
            "counter",
            "The number of caught errors.",
        );
        // gitlab-runner's levels (logrus's names); kiln never logs at panic or fatal.
        let counts = [
            ("panic", 0),
            ("fatal", 0),
            ("error", self.errors.load(Ordering::Relaxed)),
            ("warning", self.warnings.load(Ordering::Relaxed)),
        ];
        for (level, n) in counts {
            t.sample("gitlab_runner_errors_total", &[("level", level)], n as f64);
        }
    }
}

#[cfg(test)]
mod tests;
