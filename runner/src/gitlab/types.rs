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
