//! The `local` executor: jobs run as the runner's user on the runner's machine, in a
//! build directory that is removed afterwards.

use super::process::{self, ProcessEnd};
use super::{build_script, BoxFuture, Control, ExecOutcome, Executor, ExecutorError};
use crate::config::RunnerConfig;
use crate::gitlab::JobResponse;
use crate::trace::Trace;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

/// `after_script` gets at most this long, as in gitlab-runner.
pub const AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs jobs on this machine.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    builds_dir: PathBuf,
}

impl LocalExecutor {
    /// Build directories go under `builds_dir` unless the entry sets its own.
    pub fn new(builds_dir: impl Into<PathBuf>) -> Self {
        Self {
            builds_dir: builds_dir.into(),
        }
    }
}

/// Variables of the runner's environment that jobs inherit.
pub const PASSTHROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The URL git fetches from: for http(s), `gitlab-ci-token:<job token>@` replaces any
/// credentials in `repo_url`. Other schemes (`file://`, ssh) are used as they are.
pub fn clone_url(repo_url: &str, job_token: &str) -> String {
    match reqwest::Url::parse(repo_url) {
        Ok(mut u) if matches!(u.scheme(), "http" | "https") => {
            if u.set_username("gitlab-ci-token").is_ok() && u.set_password(Some(job_token)).is_ok()
            {
                u.to_string()
            } else {
                repo_url.to_owned()
            }
        }
        _ => repo_url.to_owned(),
    }
}

/// The job's environment: a few of the runner's own ([`PASSTHROUGH`]), `environment` from the entry, the job's
/// variables (file variables written under `tmp_dir`, the value becoming the path),
/// `CI_PROJECT_DIR`/`CI_BUILDS_DIR`, kiln's settings and `PATH` with kiln's directory.
pub fn job_environment(
    job: &JobResponse,
    entry: &RunnerConfig,
    project_dir: &Path,
    builds_dir: &Path,
    tmp_dir: &Path,
    trace: &Trace,
) -> Result<BTreeMap<String, String>, ExecutorError> {
    let mut env = BTreeMap::new();
    // The runner's own environment is not handed down whole (it may hold the runner's
    // credentials); only what tools need to find their way.
    for key in PASSTHROUGH {
        if let Ok(v) = std::env::var(key) {
            env.insert((*key).to_owned(), v);
        }
    }
    for e in &entry.environment {
        if let Some((k, v)) = e.split_once('=') {
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    for v in &job.variables {
        if v.key.is_empty() || v.key.contains('=') || v.key.contains('\0') {
            continue;
        }
        let value = if v.file {
            let path = tmp_dir.join(&v.key);
            write_private(&path, v.value.as_bytes()).map_err(|source| ExecutorError::Io {
                what: "cannot write file variable",
                path: path.clone(),
                source,
            })?;
            path.to_string_lossy().into_owned()
        } else {
            v.value.clone()
        };
        env.insert(v.key.clone(), value);
    }
    env.insert(
        "CI_PROJECT_DIR".into(),
        project_dir.to_string_lossy().into_owned(),
    );
    env.insert(
        "CI_BUILDS_DIR".into(),
        builds_dir.to_string_lossy().into_owned(),
    );
    env.insert("CI_SERVER".into(), "yes".into());
    env.insert("CI".into(), "true".into());

    let mut kiln = vec![("KILN_MODE", entry.kiln.mode.as_str().to_owned())];
    if let Some(c) = &entry.kiln.cache_dir {
        kiln.push(("KILN_CACHE_DIR", c.to_string_lossy().into_owned()));
    }
    for (key, value) in kiln {
        let allowed = entry.kiln.allowed_overrides.iter().any(|a| a == key);
        match env.get(key) {
            Some(v) if allowed => {
                trace.line(&format!("Using {key}={v} from the job (allowed override)"));
            }
            Some(_) => {
                trace.line(&format!(
                    "\x1b[0;33mWARNING: {key} from the job ignored: not in the runner's allowed_overrides\x1b[0;m"
                ));
                env.insert(key.to_owned(), value);
            }
            None => {
                env.insert(key.to_owned(), value);
            }
        }
    }

    let base_path = env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let path = match &entry.kiln.bin_dir {
        Some(d) => format!("{}:{base_path}", d.to_string_lossy()),
        None => base_path,
    };
    env.insert("PATH".into(), path);
    Ok(env)
}

/// Writes `data` to a new file only its owner (the job's user) can read: file variables
/// often hold keys.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(data)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExecutorError {
    let path = path.to_owned();
    move |source| ExecutorError::Io { what, path, source }
}

struct Run<'a> {
    job: &'a JobResponse,
    trace: Trace,
    control: watch::Receiver<Control>,
    env: BTreeMap<String, String>,
    project_dir: PathBuf,
    tmp_dir: PathBuf,
}

impl Run<'_> {
    fn command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        c.env_clear().envs(&self.env).current_dir(&self.project_dir);
        c
    }

    async fn git(&mut self, args: &[&str]) -> Result<(), ExecutorError> {
        let mut c = self.command("git");
        c.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true");
        match process::run(
            c,
            "git",
            &self.trace,
            &mut self.control,
            Control::Cancel,
            None,
        )
        .await?
        {
            ProcessEnd::Exited(0) => Ok(()),
            ProcessEnd::Exited(code) => Err(ExecutorError::Git(format!(
                "git {} exited with code {code}",
                args.first().unwrap_or(&"")
            ))),
            ProcessEnd::Stopped(_) | ProcessEnd::TimedOut => {
                Err(ExecutorError::Git("interrupted".into()))
            }
        }
    }

    async fn get_sources(&mut self) -> Result<(), ExecutorError> {
        let strategy = self.job.variable("GIT_STRATEGY").unwrap_or("fetch");
        if strategy == "none" {
            self.trace.line("Skipping Git repository setup");
            return Ok(());
        }
        let gi = &self.job.git_info;
        let depth = self
            .job
            .variable("GIT_DEPTH")
            .and_then(|d| d.parse().ok())
            .unwrap_or(gi.depth);
        if depth > 0 {
            self.trace.line(&format!(
                "Fetching changes with git depth set to {depth}..."
            ));
        } else {
            self.trace.line("Fetching changes...");
        }
        let url = clone_url(&gi.repo_url, &self.job.token);
        let sha = gi.sha.clone();
        let mut refspecs = gi.refspecs.clone();
        if refspecs.is_empty() {
            refspecs = vec![
                "+refs/heads/*:refs/remotes/origin/*".into(),
                "+refs/tags/*:refs/tags/*".into(),
            ];
        }
        self.git(&["init", "-q", "."]).await?;
        self.trace.line(&format!(
            "Initialized empty Git repository in {}/.git/",
            self.project_dir.display()
        ));
        self.git(&["remote", "add", "origin", &url]).await?;
        let depth_arg = format!("--depth={depth}");
        let mut fetch = vec!["fetch", "--prune", "--quiet"];
        if depth > 0 {
            fetch.push(&depth_arg);
        }
        fetch.push("origin");
        fetch.extend(refspecs.iter().map(String::as_str));
        self.git(&fetch).await?;
        let short = sha.get(..8).unwrap_or(&sha);
        self.trace.line(&format!(
            "Checking out {short} as detached HEAD (ref is {})...",
            gi.ref_name
        ));
        self.git(&[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-f",
            "-q",
            &sha,
        ])
        .await?;
        self.trace.line("");
        Ok(())
    }

    async fn script(
        &mut self,
        name: &str,
        lines: &[String],
        stop_at: Control,
        limit: Option<Duration>,
    ) -> Result<ProcessEnd, ExecutorError> {
        let path = self.tmp_dir.join(format!("{name}.sh"));
        std::fs::write(&path, build_script(&self.project_dir, lines))
            .map_err(io_err("cannot write script", &path))?;
        let mut c = self.command("bash");
        c.arg("--noprofile").arg("--norc").arg(&path);
        process::run(c, "bash", &self.trace, &mut self.control, stop_at, limit).await
    }

    async fn steps(&mut self) -> Result<ExecOutcome, ExecutorError> {
        if let Err(e) = self.get_sources().await {
            // A fetch interrupted on purpose is not a system failure.
            return match *self.control.borrow() {
                Control::Run => Err(e),
                Control::Cancel => Ok(ExecOutcome::Canceled),
                Control::Timeout => Ok(ExecOutcome::TimedOut),
                Control::Abort | Control::Kill => Ok(ExecOutcome::Aborted),
            };
        }
        let lines = self
            .job
            .step("script")
            .map(|s| s.script.clone())
            .unwrap_or_default();
        self.trace
            .line("\x1b[32;1mExecuting \"step_script\" stage of the job script\x1b[0;m");
        let end = self.script("script", &lines, Control::Cancel, None).await?;
        let outcome = match end {
            ProcessEnd::Exited(0) => ExecOutcome::Success,
            ProcessEnd::Exited(exit_code) => ExecOutcome::ScriptFailure { exit_code },
            ProcessEnd::Stopped(Control::Cancel) => ExecOutcome::Canceled,
            ProcessEnd::Stopped(Control::Timeout) | ProcessEnd::TimedOut => ExecOutcome::TimedOut,
            ProcessEnd::Stopped(_) => ExecOutcome::Aborted,
        };
        if matches!(outcome, ExecOutcome::Aborted | ExecOutcome::TimedOut) {
            return Ok(outcome);
        }
        if let Some(after) = self
            .job
            .step("after_script")
            .filter(|s| !s.script.is_empty())
        {
            let limit = match after.timeout {
                0 => AFTER_SCRIPT_TIMEOUT,
                t => Duration::from_secs(t).min(AFTER_SCRIPT_TIMEOUT),
            };
            let lines = after.script.clone();
            self.trace.line("");
            self.trace.line("\x1b[32;1mRunning after_script\x1b[0;m");
            match self.script("after_script", &lines, Control::Abort, Some(limit)).await? {
                ProcessEnd::Exited(0) => {}
                ProcessEnd::Exited(code) => self.trace.line(&format!(
                    "\x1b[0;33mWARNING: after_script failed, but job will continue unaffected: exit code {code}\x1b[0;m"
                )),
                ProcessEnd::TimedOut => self.trace.line(
                    "\x1b[0;33mWARNING: after_script failed, but job will continue unaffected: timed out\x1b[0;m",
                ),
                ProcessEnd::Stopped(_) => return Ok(ExecOutcome::Aborted),
            }
        }
        Ok(outcome)
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run<'a>(
        &'a self,
        job: &'a JobResponse,
        entry: &'a RunnerConfig,
        trace: Trace,
        control: watch::Receiver<Control>,
    ) -> BoxFuture<'a, Result<ExecOutcome, ExecutorError>> {
        Box::pin(async move {
            trace.line("\x1b[36;1mPreparing the \"local\" executor\x1b[0;m");
            let base = entry
                .builds_dir
                .clone()
                .unwrap_or_else(|| self.builds_dir.clone());
            let job_dir = base.join(entry.short_token()).join(job.id.to_string());
            let project = match job.job_info.project_name.as_str() {
                "" => "project".to_owned(),
                p => p.replace(['/', '\\'], "_"),
            };
            let project_dir = job_dir.join(&project);
            let tmp_dir = job_dir.join(format!("{project}.tmp"));
            // A leftover from a crashed run must not leak into this one.
            let _ = std::fs::remove_dir_all(&job_dir);
            for d in [&project_dir, &tmp_dir] {
                std::fs::create_dir_all(d).map_err(io_err("cannot create", d))?;
            }
            let result = async {
                let env = job_environment(job, entry, &project_dir, &base, &tmp_dir, &trace)?;
                let mut run = Run {
                    job,
                    trace: trace.clone(),
                    control,
                    env,
                    project_dir: project_dir.clone(),
                    tmp_dir: tmp_dir.clone(),
                };
                run.steps().await
            }
            .await;
            if let Err(e) = std::fs::remove_dir_all(&job_dir) {
                tracing::warn!(dir = %job_dir.display(), error = %e, "cannot remove build directory");
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_url_puts_job_token_in_http_urls() {
        assert_eq!(
            clone_url("https://gitlab.example.com/g/p.git", "tok"),
            "https://gitlab-ci-token:tok@gitlab.example.com/g/p.git"
        );
        assert_eq!(
            clone_url(
                "https://gitlab-ci-token:old@gitlab.example.com/g/p.git",
                "new"
            ),
            "https://gitlab-ci-token:new@gitlab.example.com/g/p.git"
        );
        assert_eq!(clone_url("file:///tmp/r.git", "tok"), "file:///tmp/r.git");
    }
}
