//! The JSON bodies of GitLab's runner API (`/api/v4`), as far as kiln-runner uses them.

use serde::{Deserialize, Deserializer, Serialize};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What the runner can do, sent with every job request so GitLab only hands out jobs
/// it can run. Only features kiln-runner really implements are `true`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FeaturesInfo {
    /// Job variables are passed to the script.
    pub variables: bool,
    /// `image:` is honoured.
    pub image: bool,
    /// `services:` are started.
    pub services: bool,
    /// Artifacts are uploaded.
    pub artifacts: bool,
    /// `cache:` is restored and saved.
    pub cache: bool,
    /// Shared builds directory.
    pub shared: bool,
    /// Multiple artifacts uploads.
    pub upload_multiple_artifacts: bool,
    /// Raw artifacts uploads.
    pub upload_raw_artifacts: bool,
    /// Interactive web sessions.
    pub session: bool,
    /// Web terminal.
    pub terminal: bool,
    /// Refspecs in `git_info` are fetched.
    pub refspecs: bool,
    /// Masked variables are hidden in the trace.
    pub masking: bool,
    /// Session proxy.
    pub proxy: bool,
    /// Raw (unexpanded) variables.
    pub raw_variables: bool,
    /// `artifacts:exclude`.
    pub artifacts_exclude: bool,
    /// Steps other than `script`/`after_script`.
    pub multi_build_steps: bool,
    /// Trace resent from 0 on request.
    pub trace_reset: bool,
    /// CRC32 of the trace in the final update.
    pub trace_checksum: bool,
    /// Trace size in the final update.
    pub trace_size: bool,
    /// Vault secrets.
    pub vault_secrets: bool,
    /// Jobs can be cancelled.
    pub cancelable: bool,
    /// The script's exit code is reported.
    pub return_exit_code: bool,
    /// `canceling` runs `after_script` before stopping.
    pub cancel_gracefully: bool,
}

impl FeaturesInfo {
    /// The features of this build of kiln-runner.
    pub fn kiln() -> Self {
        Self {
            variables: true,
            image: false,
            services: false,
            artifacts: false,
            cache: false,
            shared: false,
            upload_multiple_artifacts: false,
            upload_raw_artifacts: false,
            session: false,
            terminal: false,
            refspecs: true,
            masking: true,
            proxy: false,
            raw_variables: false,
            artifacts_exclude: false,
            multi_build_steps: false,
            trace_reset: true,
            trace_checksum: true,
            trace_size: true,
            vault_secrets: false,
            cancelable: true,
            return_exit_code: true,
            cancel_gracefully: true,
        }
    }
}

/// The `info` object describing the runner.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// Always `kiln-runner`.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// Source revision.
    pub revision: String,
    /// `linux`, …
    pub platform: String,
    /// `amd64`, `arm64`, … (Go's names, which GitLab shows).
    pub architecture: String,
    /// The entry's executor.
    pub executor: String,
    /// The shell scripts run in.
    pub shell: String,
    /// What the runner supports.
    pub features: FeaturesInfo,
}

impl VersionInfo {
    /// The info for an entry using `executor`.
    pub fn new(executor: &str) -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Self {
            name: "kiln-runner".into(),
            version: crate::VERSION.into(),
            revision: crate::REVISION.into(),
            platform: std::env::consts::OS.into(),
            architecture: architecture.into(),
            executor: executor.into(),
            shell: "bash".into(),
            features: FeaturesInfo::kiln(),
        }
    }
}

/// `POST /runners`.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterRequest {
    /// The legacy registration token.
    pub token: String,
    /// Shown in GitLab's runner list.
    pub description: String,
    /// Comma-separated tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_list: Option<String>,
    /// Picks up jobs without tags.
    pub run_untagged: bool,
    /// Locked to the project it was registered for.
    pub locked: bool,
    /// Pause it right after registration.
    pub paused: bool,
    /// Maximum job timeout in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_timeout: Option<u64>,
    /// The runner's info.
    pub info: VersionInfo,
}

/// The answer to `POST /runners` and `POST /runners/verify`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RunnerCredentials {
    /// The runner id.
    #[serde(default)]
    pub id: Option<i64>,
    /// The runner authentication token (register) or the same one (verify).
    #[serde(default)]
    pub token: Option<String>,
    /// When it expires, if it does.
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

/// `POST /jobs/request`.
#[derive(Debug, Clone, Serialize)]
pub struct JobRequest<'a> {
    /// The runner authentication token.
    pub token: &'a str,
    /// The machine's id (see [`crate::system_id`]).
    pub system_id: &'a str,
    /// The runner's info.
    pub info: &'a VersionInfo,
    /// The last `X-GitLab-Last-Update` GitLab sent, for its long-poll cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<&'a str>,
}

/// A job handed out by GitLab.
#[derive(Debug, Clone, Deserialize)]
pub struct JobResponse {
    /// Job id.
    pub id: u64,
    /// The job token: authenticates trace and update calls; secret.
    pub token: String,
    /// About the job.
    #[serde(default)]
    pub job_info: JobInfo,
    /// What to clone.
    #[serde(default)]
    pub git_info: GitInfo,
    /// Limits set on the runner side.
    #[serde(default)]
    pub runner_info: RunnerInfo,
    /// Variables, predefined ones (`CI_*`) included.
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<JobVariable>,
    /// The scripts.
    #[serde(default, deserialize_with = "null_default")]
    pub steps: Vec<Step>,
    /// What GitLab supports for this job.
    #[serde(default, deserialize_with = "null_default")]
    pub features: JobFeatures,
    /// The job's `image:` (empty name when the job names none).
    #[serde(default, deserialize_with = "null_default")]
    pub image: JobImage,
    /// The job's `services:`.
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<JobService>,
}

impl JobResponse {
    /// The step named `name` (`script`, `after_script`).
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The value of variable `key` (the last one wins, as in GitLab).
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }
}

/// A port of an image or service, as `image:ports` declares it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ImagePort {
    /// Port number.
    #[serde(default)]
    pub number: u16,
    /// `http` or `https` (GitLab's web terminal proxy); empty when not given.
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    /// A name for the port.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
}

/// The job's `image:`. GitLab's `executor_opts` (docker/kubernetes options) are not read.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct JobImage {
    /// Image reference; empty when the job has no `image:`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Host name alias.
    #[serde(default, deserialize_with = "null_default")]
    pub alias: String,
    /// Overrides the image's entrypoint.
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    /// Exposed ports.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<ImagePort>,
    /// `always`, `if-not-present`, `never`, in the order to try.
    #[serde(default, deserialize_with = "null_default")]
    pub pull_policy: Vec<String>,
}

/// One of the job's `services:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct JobService {
    /// Image reference.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Host name aliases: GitLab sends one string, space or comma separated for several.
    #[serde(default, deserialize_with = "null_default")]
    pub alias: String,
    /// Overrides the image's entrypoint.
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    /// Overrides the image's command.
    #[serde(default, deserialize_with = "null_default")]
    pub command: Vec<String>,
    /// Exposed ports.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<ImagePort>,
    /// Variables only this service sees.
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<JobVariable>,
    /// `always`, `if-not-present`, `never`, in the order to try.
    #[serde(default, deserialize_with = "null_default")]
    pub pull_policy: Vec<String>,
}

impl JobService {
    /// The host names the service answers to: its aliases, else the names gitlab-runner
    /// derives from the image (`docker:27-dind` → `docker`; `registry.io/a/b:1` →
    /// `registry.io__a__b` and `registry.io-a-b`).
    pub fn aliases(&self) -> Vec<String> {
        let given: Vec<String> = self
            .alias
            .split([' ', ','])
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if !given.is_empty() {
            return given;
        }
        let repo = image_repository(&self.name);
        let mut out = vec![repo.replace('/', "__"), repo.replace('/', "-")];
        out.dedup();
        out
    }
}

/// `name` without its tag and digest (`docker:27-dind@sha256:…` → `docker`).
fn image_repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    // A `:` after the last `/` starts the tag; one before it is a registry port.
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// `job_info`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobInfo {
    /// Job name.
    #[serde(default)]
    pub name: String,
    /// Stage.
    #[serde(default)]
    pub stage: String,
    /// Project id.
    #[serde(default)]
    pub project_id: u64,
    /// Project name.
    #[serde(default)]
    pub project_name: String,
}

/// `git_info`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitInfo {
    /// Clone URL (may already hold credentials).
    #[serde(default)]
    pub repo_url: String,
    /// Branch or tag name.
    #[serde(default, rename = "ref")]
    pub ref_name: String,
    /// The commit to check out.
    #[serde(default)]
    pub sha: String,
    /// The previous commit of the push.
    #[serde(default)]
    pub before_sha: String,
    /// `branch` or `tag`.
    #[serde(default)]
    pub ref_type: String,
    /// What to fetch.
    #[serde(default, deserialize_with = "null_default")]
    pub refspecs: Vec<String>,
    /// Shallow clone depth (0: full).
    #[serde(default)]
    pub depth: u32,
}

/// `runner_info`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunnerInfo {
    /// Job timeout in seconds.
    #[serde(default)]
    pub timeout: u64,
}

/// One job variable.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct JobVariable {
    /// Name.
    pub key: String,
    /// Value (for a file variable: the file's content).
    #[serde(default)]
    pub value: String,
    /// May be shown.
    #[serde(default)]
    pub public: bool,
    /// Must be hidden in the trace.
    #[serde(default)]
    pub masked: bool,
    /// Written to a file whose path becomes the value.
    #[serde(default)]
    pub file: bool,
    /// Not expanded.
    #[serde(default)]
    pub raw: bool,
}

/// When a step runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepWhen {
    /// Only when everything before succeeded.
    #[default]
    OnSuccess,
    /// Only when something failed.
    OnFailure,
    /// Always.
    Always,
}

/// One step (`script`, `after_script`, …).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Step {
    /// `script`, `after_script`, `release`, …
    pub name: String,
    /// Lines (GitLab joins `before_script` into `script`).
    #[serde(default, deserialize_with = "null_default")]
    pub script: Vec<String>,
    /// Seconds.
    #[serde(default)]
    pub timeout: u64,
    /// When it runs.
    #[serde(default)]
    pub when: StepWhen,
    /// Failure does not fail the job.
    #[serde(default)]
    pub allow_failure: bool,
}

/// `features` of a job payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobFeatures {
    /// Failure reasons GitLab understands; others are sent as `unknown_failure`.
    #[serde(default, deserialize_with = "null_default")]
    pub failure_reasons: Vec<String>,
}

/// A job's state as the runner reports it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Started.
    Running,
    /// Finished well.
    Success,
    /// Finished badly.
    Failed,
}

/// Why a job failed, in GitLab's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The script exited non-zero.
    ScriptFailure,
    /// The runner could not run the job.
    RunnerSystemFailure,
    /// The job ran past its timeout.
    JobExecutionTimeout,
    /// The job's image (or a service's) could not be pulled.
    ImagePullFailure,
    /// The job was cancelled (internal to runners; GitLab maps it).
    JobCanceled,
    /// Anything else.
    UnknownFailure,
}

impl FailureReason {
    /// GitLab's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScriptFailure => "script_failure",
            Self::RunnerSystemFailure => "runner_system_failure",
            Self::JobExecutionTimeout => "job_execution_timeout",
            Self::ImagePullFailure => "image_pull_failure",
            Self::JobCanceled => "job_canceled",
            Self::UnknownFailure => "unknown_failure",
        }
    }
}

/// `output` of the final update.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TraceOutput {
    /// `crc32:<8 hex digits>` of the whole trace.
    pub checksum: String,
    /// Trace length in bytes.
    pub bytesize: u64,
}

/// `PUT /jobs/:id`.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateJobRequest<'a> {
    /// The job token.
    pub token: &'a str,
    /// New state.
    pub state: JobState,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<&'a str>,
    /// The script's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Trace summary (final update only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<TraceOutput>,
    /// The runner's info.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<&'a VersionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped like GitLab 17's `POST /jobs/request` answer (trimmed), nulls included.
    const PAYLOAD: &str = r#"{
      "id": 42, "token": "glcbt-x", "allow_git_fetch": true,
      "job_info": {"id": 42, "name": "build", "stage": "build", "project_id": 7,
                   "project_name": "app", "time_in_queue_seconds": 1.5},
      "git_info": {"repo_url": "https://gitlab.example.com/g/app.git", "ref": "main",
                   "sha": "0123456789abcdef", "before_sha": "00", "ref_type": "branch",
                   "refspecs": null, "depth": 20},
      "runner_info": {"timeout": 3600, "runner_session_url": null},
      "variables": [{"key": "CI_PROJECT_PATH", "value": "g/app", "public": true, "masked": false}],
      "steps": [{"name": "script", "script": ["docker build ."], "timeout": 3600,
                 "when": "on_success", "allow_failure": false}],
      "image": {"name": "docker:27", "alias": null, "entrypoint": null, "ports": [],
                "executor_opts": {"docker": {"platform": "linux/amd64"}},
                "pull_policy": ["if-not-present"]},
      "services": [
        {"name": "docker:27-dind", "alias": "docker dind", "entrypoint": null, "command": ["--tls=true"],
         "ports": [{"number": 2376, "protocol": null, "name": null}],
         "variables": [{"key": "DOCKER_TLS_CERTDIR", "value": "/certs"}],
         "pull_policy": null, "executor_opts": {}},
        {"name": "registry.example.com:5000/tools/db:1@sha256:ab", "alias": "", "entrypoint": ["run"]}
      ],
      "artifacts": null, "cache": [], "credentials": [], "dependencies": [],
      "features": {"trace_sections": true, "failure_reasons": ["script_failure"]}
    }"#;

    #[test]
    fn image_and_services_are_read_from_a_real_shaped_payload() {
        let job: JobResponse = serde_json::from_str(PAYLOAD).unwrap();
        assert_eq!(job.image.name, "docker:27");
        assert_eq!(job.image.alias, "");
        assert!(job.image.entrypoint.is_empty());
        assert_eq!(job.image.pull_policy, ["if-not-present"]);
        let dind = &job.services[0];
        assert_eq!(dind.command, ["--tls=true"]);
        assert_eq!(dind.ports[0].number, 2376);
        assert_eq!(dind.variables[0].key, "DOCKER_TLS_CERTDIR");
        assert_eq!(dind.aliases(), ["docker", "dind"]);
        assert_eq!(job.services[1].entrypoint, ["run"]);
        assert_eq!(
            job.services[1].aliases(),
            [
                "registry.example.com:5000__tools__db",
                "registry.example.com:5000-tools-db"
            ]
        );
    }

    #[test]
    fn image_and_services_may_be_null_or_missing() {
        let job: JobResponse =
            serde_json::from_str(r#"{"id": 1, "token": "t", "image": null, "services": null}"#)
                .unwrap();
        assert_eq!(job.image, JobImage::default());
        assert!(job.services.is_empty());
        let job: JobResponse = serde_json::from_str(r#"{"id": 1, "token": "t"}"#).unwrap();
        assert!(job.image.name.is_empty());
    }
}
