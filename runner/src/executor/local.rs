//! The `local` executor: jobs run as the runner's user on the runner's machine, in a
//! build directory that is removed afterwards.

use super::process;
use super::{BoxFuture, Control, Executor, ExecutorError, Place, StageEnd};
use crate::config::RunnerConfig;
use crate::gitlab::JobResponse;
use crate::job::plan::{JobLayout, JobPlan, JobVar, Stage, VarKind};
use crate::trace::Trace;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::watch;

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

    fn base(&self, entry: &RunnerConfig) -> PathBuf {
        entry
            .builds_dir
            .clone()
            .unwrap_or_else(|| self.builds_dir.clone())
    }

    fn job_dir(&self, job: &JobResponse, entry: &RunnerConfig) -> PathBuf {
        self.base(entry)
            .join(entry.short_token())
            .join(job.id.to_string())
    }
}

fn project_name(job: &JobResponse) -> String {
    match job.job_info.project_name.as_str() {
        "" => "project".to_owned(),
        p => p.replace(['/', '\\'], "_"),
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

/// The processes' environment: a few of the runner's own ([`PASSTHROUGH`]; the rest may
/// hold the runner's credentials), the plan's variables (file variables written under
/// `tmp_dir`, the value becoming the path), and `PATH` with kiln's directory first.
fn process_env(
    vars: &[JobVar],
    entry: &RunnerConfig,
    tmp_dir: &Path,
) -> Result<BTreeMap<String, String>, ExecutorError> {
    let mut env = BTreeMap::new();
    for key in PASSTHROUGH {
        if let Ok(v) = std::env::var(key) {
            env.insert((*key).to_owned(), v);
        }
    }
    for v in vars {
        let value = match v.kind {
            VarKind::File => {
                let path = tmp_dir.join(&v.key);
                write_private(&path, v.value.as_bytes())
                    .map_err(io_err("cannot write file variable", &path))?;
                path.to_string_lossy().into_owned()
            }
            VarKind::Plain | VarKind::Secret => v.value.clone(),
        };
        env.insert(v.key.clone(), value);
    }
    let base_path = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let path = match &entry.kiln.bin_dir {
        Some(d) => format!("{}:{base_path}", d.to_string_lossy()),
        None => base_path,
    };
    env.insert("PATH".into(), path);
    Ok(env)
}

/// A job's build directory on this machine.
struct LocalPlace {
    job_dir: PathBuf,
    tmp_dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Place for LocalPlace {
    fn run_stage<'a>(
        &'a mut self,
        stage: &'a Stage,
        trace: &'a Trace,
        control: &'a mut watch::Receiver<Control>,
        stop_at: Control,
        limit: Option<Duration>,
    ) -> BoxFuture<'a, Result<StageEnd, ExecutorError>> {
        Box::pin(async move {
            let path = self.tmp_dir.join(format!("{}.sh", stage.name.as_str()));
            std::fs::write(&path, &stage.script).map_err(io_err("cannot write script", &path))?;
            let mut c = tokio::process::Command::new("bash");
            c.env_clear()
                .envs(&self.env)
                .envs(stage.env.iter().map(|v| (&v.key, &v.value)))
                .current_dir(&self.job_dir)
                .arg("--noprofile")
                .arg("--norc")
                .arg(&path);
            process::run(c, "bash", trace, control, stop_at, limit).await
        })
    }

    fn cleanup(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = std::fs::remove_dir_all(&self.job_dir) {
                tracing::warn!(dir = %self.job_dir.display(), error = %e, "cannot remove build directory");
            }
        })
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn layout(&self, job: &JobResponse, entry: &RunnerConfig) -> JobLayout {
        JobLayout {
            builds_dir: self.base(entry).to_string_lossy().into_owned(),
            project_dir: self
                .job_dir(job, entry)
                .join(project_name(job))
                .to_string_lossy()
                .into_owned(),
        }
    }

    fn prepare<'a>(
        &'a self,
        job: &'a JobResponse,
        entry: &'a RunnerConfig,
        plan: &'a JobPlan,
        _trace: &'a Trace,
        _control: &'a mut watch::Receiver<Control>,
    ) -> BoxFuture<'a, Result<Box<dyn Place>, ExecutorError>> {
        Box::pin(async move {
            let job_dir = self.job_dir(job, entry);
            let project_dir = PathBuf::from(&plan.layout.project_dir);
            let tmp_dir = job_dir.join(format!("{}.tmp", project_name(job)));
            // A leftover from a crashed run must not leak into this one.
            let _ = std::fs::remove_dir_all(&job_dir);
            for d in [&project_dir, &tmp_dir] {
                std::fs::create_dir_all(d).map_err(io_err("cannot create", d))?;
            }
            let place = LocalPlace {
                env: BTreeMap::new(),
                job_dir,
                tmp_dir,
            };
            let env = match process_env(&plan.vars, entry, &place.tmp_dir) {
                Ok(env) => env,
                Err(e) => {
                    Box::new(place).cleanup().await;
                    return Err(e);
                }
            };
            Ok(Box::new(LocalPlace { env, ..place }) as Box<dyn Place>)
        })
    }
}
