//! The pod's labels and annotations: gitlab-runner's names for the job and project, plus the
//! two labels a restarted runner selects its leftovers by.

use super::names::label_value;
use crate::config::RunnerConfig;
use crate::gitlab::JobResponse;
use std::collections::BTreeMap;

/// Marks every object kiln-runner creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kiln-runner");
/// The entry that made the object (its short token, as gitlab-runner's label of that name).
pub const RUNNER_LABEL: &str = "manager.runner.gitlab.com/id-short";

/// Labels the job's variables cannot overwrite (the selector of [`runner_selector`]).
pub(super) const PROTECTED: [&str; 2] = [MANAGED_BY.0, RUNNER_LABEL];

/// The label selector of every pod and Secret an entry's runner made, for finding what a
/// crashed predecessor left: `app.kubernetes.io/managed-by=kiln-runner,manager…=<token>`.
pub fn runner_selector(entry: &RunnerConfig) -> String {
    format!(
        "{}={},{RUNNER_LABEL}={}",
        MANAGED_BY.0,
        MANAGED_BY.1,
        label_value(entry.short_token())
    )
}

/// The labels both objects carry: who made them and which job they are for.
pub(super) fn labels(
    job: &JobResponse,
    entry: &RunnerConfig,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    // The configured and job-given labels first, so kiln's own win.
    let mut l = extra.clone();
    let var = |k: &str| label_value(job.variable(k).unwrap_or_default());
    let mut put = |k: &str, v: String| {
        l.insert(k.to_owned(), v);
    };
    put(MANAGED_BY.0, MANAGED_BY.1.to_owned());
    put(RUNNER_LABEL, label_value(entry.short_token()));
    put("manager.runner.gitlab.com/name", label_value(&entry.name));
    put("job.runner.gitlab.com/id", job.id.to_string());
    put(
        "project.runner.gitlab.com/id",
        job.job_info.project_id.to_string(),
    );
    put(
        "project.runner.gitlab.com/name",
        label_value(&job.job_info.project_name),
    );
    put(
        "project.runner.gitlab.com/namespace",
        var("CI_PROJECT_NAMESPACE"),
    );
    put(
        "project.runner.gitlab.com/root-namespace",
        var("CI_PROJECT_ROOT_NAMESPACE"),
    );
    put("pipeline.runner.gitlab.com/id", var("CI_PIPELINE_ID"));
    l.retain(|_, v| !v.is_empty());
    l
}

/// gitlab-runner's default annotations (free text, so unsanitised), after the configured ones.
pub(super) fn annotations(
    job: &JobResponse,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut a = extra.clone();
    let gi = &job.git_info;
    let url = job.variable("CI_JOB_URL").unwrap_or_default();
    for (k, v) in [
        ("job.runner.gitlab.com/id", job.id.to_string()),
        ("job.runner.gitlab.com/url", url.to_owned()),
        ("job.runner.gitlab.com/sha", gi.sha.clone()),
        ("job.runner.gitlab.com/before_sha", gi.before_sha.clone()),
        ("job.runner.gitlab.com/ref", gi.ref_name.clone()),
        ("job.runner.gitlab.com/name", job.job_info.name.clone()),
        (
            "job.runner.gitlab.com/timeout",
            format!("{}s", job.runner_info.timeout),
        ),
        (
            "project.runner.gitlab.com/id",
            job.job_info.project_id.to_string(),
        ),
    ] {
        if !v.is_empty() {
            a.insert(k.to_owned(), v);
        }
    }
    a
}
