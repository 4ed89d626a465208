//! What a job will run, decided before any executor is asked: its variables and its stages'
//! scripts. Executors only place them (a build directory, a pod), so the local and the
//! Kubernetes executor run the same plan.

use crate::config::RunnerConfig;
use crate::executor::{bash_quote, build_script};
use crate::gitlab::JobResponse;
use crate::trace::Trace;

/// How a variable must be handled on its way to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    /// May appear in clear where the job's environment is written down (a pod spec).
    Plain,
    /// Masked, a token or a credential: only through a secret store (a Kubernetes Secret).
    Secret,
    /// A file variable: the value is the file's content; the job sees the file's path.
    File,
}

/// One variable of the job's environment.
#[derive(Clone, PartialEq, Eq)]
pub struct JobVar {
    /// Name.
    pub key: String,
    /// Value (for [`VarKind::File`]: the file's content).
    pub value: String,
    /// How it must be handled.
    pub kind: VarKind,
}

impl std::fmt::Debug for JobVar {
    // A plan is logged at debug level; values of secret kinds must not be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match self.kind {
            VarKind::Plain => self.value.as_str(),
            VarKind::Secret | VarKind::File => "[MASKED]",
        };
        f.debug_struct("JobVar")
            .field("key", &self.key)
            .field("value", &value)
            .field("kind", &self.kind)
            .finish()
    }
}

/// A stage of the job, in gitlab-runner's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageName {
    /// Fetching the repository at the job's commit.
    GetSources,
    /// `before_script` + `script`.
    StepScript,
    /// `after_script`.
    AfterScript,
}

impl StageName {
    /// gitlab-runner's name, used in file and container names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetSources => "get_sources",
            Self::StepScript => "step_script",
            Self::AfterScript => "after_script",
        }
    }
}

/// One stage: a bash script and what it adds to the job's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Which stage.
    pub name: StageName,
    /// The whole bash script (see [`crate::executor::build_script`]).
    pub script: String,
    /// Variables only this stage sees (the clone URL with the job token).
    pub env: Vec<JobVar>,
}

/// Where the job's directories are, as the job sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLayout {
    /// `CI_BUILDS_DIR`.
    pub builds_dir: String,
    /// `CI_PROJECT_DIR`: the repository's checkout.
    pub project_dir: String,
}

/// Everything a job runs, in order.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// The job's directories.
    pub layout: JobLayout,
    /// The job's environment, in the order it is set (later keys win).
    pub vars: Vec<JobVar>,
    /// The stages that have something to run, in order.
    pub stages: Vec<Stage>,
}

impl JobPlan {
    /// The stage called `name`, if the job has one.
    pub fn stage(&self, name: StageName) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

impl JobPlan {
    /// The plan for `job` on `entry`, its directories at `layout`. Warnings (an ignored
    /// `KILN_*` override) go to `trace`.
    pub fn new(job: &JobResponse, entry: &RunnerConfig, layout: JobLayout, trace: &Trace) -> Self {
        let vars = job_vars(job, entry, &layout, trace);
        let mut stages = Vec::new();
        if let Some(s) = get_sources(job, &layout) {
            stages.push(s);
        }
        let script = job
            .step("script")
            .map(|s| s.script.clone())
            .unwrap_or_default();
        stages.push(Stage {
            name: StageName::StepScript,
            script: build_script(&layout.project_dir, &script),
            env: Vec::new(),
        });
        if let Some(after) = job.step("after_script").filter(|s| !s.script.is_empty()) {
            stages.push(Stage {
                name: StageName::AfterScript,
                script: build_script(&layout.project_dir, &after.script),
                env: Vec::new(),
            });
        }
        Self {
            layout,
            vars,
            stages,
        }
    }
}

fn set(vars: &mut Vec<JobVar>, key: &str, value: String, kind: VarKind) {
    vars.retain(|v| v.key != key);
    vars.push(JobVar {
        key: key.to_owned(),
        value,
        kind,
    });
}

/// `environment` from the entry, the job's variables, `CI_PROJECT_DIR`/`CI_BUILDS_DIR`,
/// and kiln's settings (a job may override those only where `allowed_overrides` says).
fn job_vars(
    job: &JobResponse,
    entry: &RunnerConfig,
    layout: &JobLayout,
    trace: &Trace,
) -> Vec<JobVar> {
    let mut vars = Vec::new();
    for e in &entry.environment {
        if let Some((k, v)) = e.split_once('=') {
            set(&mut vars, k, v.to_owned(), VarKind::Plain);
        }
    }
    for v in &job.variables {
        if v.key.is_empty() || v.key.contains('=') || v.key.contains('\0') {
            continue;
        }
        let kind = if v.file {
            VarKind::File
        } else if v.masked || !v.public {
            // GitLab marks its predefined, shareable variables `public`; anything else is
            // a project or group variable and may be a credential even when not masked.
            VarKind::Secret
        } else {
            VarKind::Plain
        };
        set(&mut vars, &v.key, v.value.clone(), kind);
    }
    set(
        &mut vars,
        "CI_PROJECT_DIR",
        layout.project_dir.clone(),
        VarKind::Plain,
    );
    set(
        &mut vars,
        "CI_BUILDS_DIR",
        layout.builds_dir.clone(),
        VarKind::Plain,
    );
    set(&mut vars, "CI_SERVER", "yes".into(), VarKind::Plain);
    set(&mut vars, "CI", "true".into(), VarKind::Plain);

    let mut kiln = vec![("KILN_MODE", entry.kiln.mode.as_str().to_owned())];
    if let Some(c) = &entry.kiln.cache_dir {
        kiln.push(("KILN_CACHE_DIR", c.to_string_lossy().into_owned()));
    }
    for (key, value) in kiln {
        let allowed = entry.kiln.allowed_overrides.iter().any(|a| a == key);
        match vars.iter().find(|v| v.key == key) {
            Some(v) if allowed => {
                trace.line(&format!(
                    "Using {key}={} from the job (allowed override)",
                    v.value
                ));
            }
            Some(_) => {
                trace.line(&format!(
                    "\x1b[0;33mWARNING: {key} from the job ignored: not in the runner's allowed_overrides\x1b[0;m"
                ));
                set(&mut vars, key, value, VarKind::Plain);
            }
            None => set(&mut vars, key, value, VarKind::Plain),
        }
    }
    vars
}

/// The variable holding the clone URL (with the job token) for the get_sources stage only.
pub const CLONE_URL_VAR: &str = "KILN_GIT_CLONE_URL";

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

/// The get_sources stage as gitlab-runner's `fetch` strategy does it, or `None` for
/// `GIT_STRATEGY=none`. The URL comes from the environment, not the script, so the job
/// token is in no process's arguments.
fn get_sources(job: &JobResponse, layout: &JobLayout) -> Option<Stage> {
    let strategy = job.variable("GIT_STRATEGY").unwrap_or("fetch");
    if strategy == "none" {
        return None;
    }
    let gi = &job.git_info;
    let depth: u32 = job
        .variable("GIT_DEPTH")
        .and_then(|d| d.parse().ok())
        .unwrap_or(gi.depth);
    let mut refspecs = gi.refspecs.clone();
    if refspecs.is_empty() {
        refspecs = vec![
            "+refs/heads/*:refs/remotes/origin/*".into(),
            "+refs/tags/*:refs/tags/*".into(),
        ];
    }
    let say = |s: &str| format!("printf '%s\\n' {}", bash_quote(s));
    let mut s = String::from("set -eo pipefail\nexport GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=true\n");
    s.push_str(&format!(
        "mkdir -p {0}\ncd {0}\n",
        bash_quote(&layout.project_dir)
    ));
    s.push_str(&say(&if depth > 0 {
        format!("Fetching changes with git depth set to {depth}...")
    } else {
        "Fetching changes...".to_owned()
    }));
    s.push('\n');
    s.push_str("git init -q .\n");
    s.push_str(&say(&format!(
        "Initialized empty Git repository in {}/.git/",
        layout.project_dir
    )));
    s.push('\n');
    s.push_str(&format!("git remote add origin \"${CLONE_URL_VAR}\"\n"));
    s.push_str("git fetch --prune --quiet");
    if depth > 0 {
        s.push_str(&format!(" --depth={depth}"));
    }
    s.push_str(" origin");
    for r in &refspecs {
        s.push(' ');
        s.push_str(&bash_quote(r));
    }
    s.push('\n');
    let short = gi.sha.get(..8).unwrap_or(&gi.sha);
    s.push_str(&say(&format!(
        "Checking out {short} as detached HEAD (ref is {})...",
        gi.ref_name
    )));
    s.push('\n');
    s.push_str(&format!(
        "git -c advice.detachedHead=false checkout -f -q {}\n",
        bash_quote(&gi.sha)
    ));
    s.push_str("echo\n");
    Some(Stage {
        name: StageName::GetSources,
        script: s,
        env: vec![JobVar {
            key: CLONE_URL_VAR.into(),
            value: clone_url(&gi.repo_url, &job.token),
            kind: VarKind::Secret,
        }],
    })
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
