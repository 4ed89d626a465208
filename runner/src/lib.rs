//! kiln-runner: a GitLab runner specialised in image-build jobs.
//!
//! The pieces follow the path of a job: [`gitlab`] talks to GitLab's runner API and
//! yields a [`gitlab::JobResponse`]; [`job`] drives its lifecycle (state updates,
//! cancellation, timeout, final report); an [`executor::Executor`] runs it; its output
//! goes through the [`trace`] sink, which masks secrets, applies the output limit and
//! ships patches back. [`runner`] polls GitLab for every configured entry and
//! [`config`] reads (and re-reads) gitlab-runner's `config.toml` format.

pub mod config;
pub mod executor;
pub mod gitlab;
pub mod job;
pub mod metrics;
pub mod runner;
pub mod system_id;
pub mod trace;

/// The runner's version, as reported to GitLab.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The revision reported to GitLab (`KILN_REVISION` at build time, else `unknown`).
pub const REVISION: &str = match option_env!("KILN_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Every error the library returns, one variant per module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or parsing the configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Talking to GitLab.
    #[error(transparent)]
    Gitlab(#[from] gitlab::GitlabError),
    /// Running a job on an executor.
    #[error(transparent)]
    Executor(#[from] executor::ExecutorError),
    /// The runner daemon.
    #[error(transparent)]
    Runner(#[from] runner::RunnerError),
    /// The system id file.
    #[error(transparent)]
    SystemId(#[from] system_id::SystemIdError),
    /// The metrics endpoint.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Formats an error with its sources, `outer: inner: innermost`, for log lines.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
