//! The image config (`application/vnd.oci.image.config.v1+json`, Docker's
//! `container.image.v1+json`): the runtime defaults, the layers' diff_ids and the history.
//!
//! Field names and omission follow the Go types peers serialise with (`omitempty` becomes
//! "skip when empty"); `null` reads as empty, and unknown fields are ignored.

use super::json::{null_default, EmptyObject};
use crate::blob::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Docker's PATH for a Linux process whose environment has none; BuildKit also writes it into
/// the config of an image built `FROM scratch`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version (Windows).
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(
        rename = "os.features",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    /// CPU variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Defaults for containers run from the image.
    #[serde(deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// The layers' uncompressed digests.
    #[serde(deserialize_with = "null_default")]
    pub rootfs: RootFs,
    /// How each layer (or empty step) was made.
    #[serde(
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// The `config` object: what a container runs with by default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(rename = "User", skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// `EXPOSE`: `80/tcp` → `{}`.
    #[serde(
        rename = "ExposedPorts",
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    /// `ENV`, as `KEY=value`, in order.
    #[serde(
        rename = "Env",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `ENTRYPOINT`; `None` when unset.
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`; `None` when unset.
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`: path → `{}`.
    #[serde(
        rename = "Volumes",
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, EmptyObject>,
    /// `WORKDIR`.
    #[serde(rename = "WorkingDir", skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    /// `LABEL`.
    #[serde(
        rename = "Labels",
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(rename = "StopSignal", skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// `HEALTHCHECK` (a Docker extension OCI runtimes ignore).
    #[serde(rename = "Healthcheck", skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers (Docker extension).
    #[serde(
        rename = "OnBuild",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    /// `SHELL` (Docker extension).
    #[serde(
        rename = "Shell",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
    /// Whether `Entrypoint`/`Cmd` are already escaped for Windows command lines.
    #[serde(rename = "ArgsEscaped", skip_serializing_if = "is_false")]
    pub args_escaped: bool,
}

/// `HEALTHCHECK`; durations in nanoseconds, zero meaning "inherit" (as Docker's Go type).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`; empty inherits.
    #[serde(
        rename = "Test",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(rename = "Interval", skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Time after which a check is considered hung.
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Time to start before failures count.
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Time between checks during the start period.
    #[serde(rename = "StartInterval", skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Consecutive failures before unhealthy.
    #[serde(rename = "Retries", skip_serializing_if = "is_zero")]
    pub retries: i64,
}

/// `rootfs`: the layers as the runtime sees them (uncompressed digests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The digest of each layer's uncompressed tar, base first.
    #[serde(deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

fn layers_type() -> String {
    "layers".to_string()
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: layers_type(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry: a step, with or without a layer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    /// When the step ran (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, as `docker history` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer (ENV, CMD, ...).
    #[serde(skip_serializing_if = "is_false")]
    pub empty_layer: bool,
}

impl History {
    /// An entry for the instruction `created_by`.
    pub fn created_by(created_by: impl Into<String>) -> History {
        History {
            created_by: Some(created_by.into()),
            ..History::default()
        }
    }
}

impl ImageConfig {
    /// Parses a config blob as registries and peers produce it.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, super::ImageError> {
        // serde reads a struct from an array too, and every field here has a default: `[]`
        // would pass as an empty config.
        if bytes.trim_ascii_start().first() == Some(&b'[') {
            return Err(super::ImageError::json("image config")(
                serde::de::Error::custom("expected a JSON object, found an array"),
            ));
        }
        serde_json::from_slice(bytes).map_err(super::ImageError::json("image config"))
    }
}
