//! `config.toml` in gitlab-runner's format, for the keys kiln-runner shares with it,
//! plus kiln's own `[runners.kiln]` table.
//!
//! The file is read twice: once as a plain [`toml::Table`] so that keys nobody reads can
//! be reported by their dotted path (gitlab-runner users copy whole files over, and a
//! silently dropped key is a setting they think is in force), then into [`Config`].

mod duration;
pub mod kubernetes;
mod quantity;
mod reload;
mod schema;

pub use duration::ConfigDuration;
pub use kubernetes::KubernetesConfig;
pub use quantity::parse_quantity;
pub use reload::{watch_config, ConfigWatch};
pub use schema::unknown_keys;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("cannot access config file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file is TOML but does not fit the schema.
    #[error("config file {path} has invalid settings")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range.
    #[error("config: {0}")]
    Invalid(String),
    /// The file could not be serialised back.
    #[error("cannot serialise config")]
    Serialize(#[source] toml::ser::Error),
}

impl ConfigError {
    /// Whether the file's content is wrong (kiln-runner exits 1), rather than the file being
    /// unreadable or unwritable (2).
    pub fn is_input(&self) -> bool {
        match self {
            ConfigError::Syntax { .. } | ConfigError::Schema { .. } | ConfigError::Invalid(_) => {
                true
            }
            ConfigError::Io { .. } | ConfigError::Serialize(_) => false,
        }
    }
}

/// The whole `config.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Jobs run at once across all entries.
    pub concurrent: usize,
    /// Seconds between job requests when GitLab has none.
    pub check_interval: u64,
    /// `debug`, `info`, `warn`, `error` (gitlab-runner's `fatal`/`panic` map to `error`).
    pub log_level: Option<String>,
    /// `text`, `json` or `runner`.
    pub log_format: Option<String>,
    /// Where `/metrics` and `/health` are served.
    pub listen_address: Option<String>,
    /// Seconds given to running jobs to stop on SIGTERM/SIGINT.
    pub shutdown_timeout: u64,
    /// One entry per registered runner.
    pub runners: Vec<RunnerConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrent: 1,
            check_interval: 3,
            log_level: None,
            log_format: None,
            listen_address: None,
            shutdown_timeout: 30,
            runners: Vec::new(),
        }
    }
}

/// The executor an entry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Jobs run on the runner's own machine.
    #[default]
    Local,
    /// Jobs run in pods, one per job.
    Kubernetes,
}

impl ExecutorKind {
    /// The name GitLab sees.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// One `[[runners]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunnerConfig {
    /// Shown in logs and the trace header.
    pub name: String,
    /// GitLab's URL, e.g. `https://gitlab.example.com`.
    pub url: String,
    /// The runner authentication token.
    pub token: String,
    /// The runner id GitLab gave at registration (kept, not used).
    pub id: Option<i64>,
    /// Which executor runs this entry's jobs.
    pub executor: ExecutorKind,
    /// Jobs this entry runs at once (0: only `concurrent` limits).
    pub limit: usize,
    /// Job requests in flight at once for this entry.
    pub request_concurrency: usize,
    /// Job requests GitLab refuses (403) in a row before the entry is paused (0: the
    /// default, 3, as in gitlab-runner).
    pub unhealthy_requests_limit: u32,
    /// How long a paused entry sends no job request (default 60 s).
    pub unhealthy_interval: Option<ConfigDuration>,
    /// `KEY=VALUE` pairs added to every job's environment.
    pub environment: Vec<String>,
    /// Trace size limit in KiB.
    pub output_limit: usize,
    /// Where build directories are made (default: a `builds` dir beside the config).
    pub builds_dir: Option<PathBuf>,
    /// Pod settings for the kubernetes executor.
    pub kubernetes: Option<KubernetesConfig>,
    /// kiln's own settings.
    pub kiln: KilnConfig,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            token: String::new(),
            id: None,
            executor: ExecutorKind::Local,
            limit: 0,
            request_concurrency: 1,
            unhealthy_requests_limit: 3,
            unhealthy_interval: None,
            environment: Vec::new(),
            output_limit: 4096,
            builds_dir: None,
            kubernetes: None,
            kiln: KilnConfig::default(),
        }
    }
}

impl RunnerConfig {
    /// The first eight characters of the token, as gitlab-runner names entries in logs.
    pub fn short_token(&self) -> &str {
        let t = self.token.strip_prefix("glrt-").unwrap_or(&self.token);
        t.get(..8).unwrap_or(t)
    }

    /// `unhealthy_requests_limit`, 0 meaning the default as in gitlab-runner.
    pub fn unhealthy_requests_limit(&self) -> u32 {
        match self.unhealthy_requests_limit {
            0 => 3,
            n => n,
        }
    }

    /// `unhealthy_interval`, 60 s when unset.
    pub fn unhealthy_interval(&self) -> Duration {
        self.unhealthy_interval
            .map_or(Duration::from_secs(60), |d| d.0)
    }

    /// The pod shape of a kubernetes entry: `[runners.kubernetes] mode`, else
    /// `[runners.kiln] mode`.
    pub fn kubernetes_mode(&self) -> KilnMode {
        self.kubernetes
            .as_ref()
            .and_then(|k| k.mode)
            .unwrap_or(self.kiln.mode)
    }

    /// `output_limit` in bytes.
    pub fn output_limit_bytes(&self) -> usize {
        self.output_limit.saturating_mul(1024)
    }
}

/// How kiln builds images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KilnMode {
    /// Unprivileged builds.
    #[default]
    Rootless,
    /// Docker-in-docker compatible builds.
    Dind,
}

impl KilnMode {
    /// The spelling used in the file and in `KILN_MODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rootless => "rootless",
            Self::Dind => "dind",
        }
    }
}

/// `[runners.kiln]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct KilnConfig {
    /// Build mode.
    pub mode: KilnMode,
    /// Layer cache shared by the entry's jobs (exported as `KILN_CACHE_DIR`).
    pub cache_dir: Option<PathBuf>,
    /// Directory holding the `kiln` binary, put first on the job's `PATH`.
    pub bin_dir: Option<PathBuf>,
    /// Job variables (`KILN_MODE`, `KILN_CACHE_DIR`, …) that may override these settings.
    pub allowed_overrides: Vec<String>,
}

/// A parsed file together with the keys it had that nothing reads.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Dotted paths of unknown keys, e.g. `runners[0].docker.image`.
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Parses a file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        let unknown_keys = unknown_keys(&table);
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e| ConfigError::Schema {
                    path: path.to_owned(),
                    source: Box::new(e),
                })?;
        config.validate()?;
        Ok(Loaded {
            config,
            unknown_keys,
        })
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Reads `path` and logs a warning for each unknown key.
    pub fn load_and_warn(path: &Path) -> Result<Config, ConfigError> {
        let loaded = Self::load(path)?;
        for key in &loaded.unknown_keys {
            tracing::warn!(key = %key, file = %path.display(), "unknown config key ignored");
        }
        Ok(loaded.config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrent == 0 {
            return Err(ConfigError::Invalid("concurrent must be at least 1".into()));
        }
        for (i, r) in self.runners.iter().enumerate() {
            if r.url.is_empty() || r.token.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "runners[{i}] ({}) needs url and token",
                    r.name
                )));
            }
            if r.request_concurrency == 0 {
                return Err(ConfigError::Invalid(format!(
                    "runners[{i}].request_concurrency must be at least 1"
                )));
            }
            if let Some(k) = &r.kubernetes {
                let pods = (r.executor == ExecutorKind::Kubernetes).then(|| r.kubernetes_mode());
                k.validate(&format!("runners[{i}].kubernetes"), pods)?;
            }
        }
        Ok(())
    }

    /// `check_interval` as a duration (gitlab-runner treats 0 as 3 s).
    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(if self.check_interval == 0 {
            3
        } else {
            self.check_interval
        })
    }

    /// `shutdown_timeout` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }
}

/// Appends a `[[runners]]` entry to the file at `path` (created if missing), as
/// `register` does. Comments in the file are not kept.
pub fn append_runner(path: &Path, entry: toml::Table) -> Result<(), ConfigError> {
    edit_file(path, |table| {
        let runners = table
            .entry("runners")
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(a) = runners {
            a.push(toml::Value::Table(entry));
        }
    })
}

/// Removes the `[[runners]]` entries whose token is in `tokens`, as `unregister` does.
pub fn remove_runners(path: &Path, tokens: &[String]) -> Result<(), ConfigError> {
    edit_file(path, |table| {
        if let Some(toml::Value::Array(a)) = table.get_mut("runners") {
            a.retain(|r| {
                let token = r.get("token").and_then(|t| t.as_str()).unwrap_or_default();
                !tokens.iter().any(|t| t == token)
            });
        }
    })
}

fn edit_file(path: &Path, f: impl FnOnce(&mut toml::Table)) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "concurrent = 1\n".to_owned(),
        Err(e) => return Err(io(e)),
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        source: Box::new(e),
    })?;
    f(&mut table);
    let out = toml::to_string(&table).map_err(ConfigError::Serialize)?;
    // Written beside and renamed so a reload never sees half a file.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, out).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
