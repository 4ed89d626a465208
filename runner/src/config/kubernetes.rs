//! `[runners.kubernetes]`: gitlab-runner's keys under their names, plus kiln's own
//! (`mode`, `dind_image`, `native_sidecars`, `isolation`, `cache_volume`).

use super::quantity::parse_quantity;
use super::{ConfigError, KilnMode};
use k8s_openapi::api::core::v1::Affinity;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The Docker daemon image a dind pod runs when the job names no `*dind*` service.
pub const DEFAULT_DIND_IMAGE: &str = "docker:27-dind";
/// The build image of a dind pod when neither the job nor the entry names one.
pub const DEFAULT_DIND_BUILD_IMAGE: &str = "docker:27";
/// kiln's image (the repository Dockerfile's `kiln` target), run by rootless pods.
pub const DEFAULT_KILN_IMAGE: &str = "kiln:latest";
/// The image cloning the sources: the Dockerfile's `runner` target ships git and bash.
pub const DEFAULT_HELPER_IMAGE: &str = "kiln-runner:latest";

/// `[runners.kubernetes]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct KubernetesConfig {
    /// Namespace pods are created in (default `default`, as gitlab-runner).
    pub namespace: Option<String>,
    /// Regex a job's `KUBERNETES_NAMESPACE_OVERWRITE` must match (unset: not allowed).
    pub namespace_overwrite_allowed: Option<String>,
    /// The build image when the job names none (dind), kiln's image (rootless).
    pub image: Option<String>,
    /// The image of the `clone` init container.
    pub helper_image: Option<String>,
    /// Lets the Docker daemon of a dind pod run privileged (required for `mode = "dind"`);
    /// no other container is ever privileged.
    pub privileged: bool,
    /// Resource requests and limits of the build, service and helper containers, and the
    /// ceilings of their job-variable overrides.
    #[serde(flatten)]
    pub resources: ResourceConfig,
    /// Node labels the pod must match.
    pub node_selector: BTreeMap<String, String>,
    /// gitlab-runner's form: `"key=value" = "NoSchedule"`, `"key" = ""` (any effect).
    pub node_tolerations: BTreeMap<String, String>,
    /// The pod's affinity, with the Kubernetes field names in snake_case as gitlab-runner
    /// writes them (`node_affinity.required_during_scheduling_ignored_during_execution…`).
    #[serde(deserialize_with = "affinity")]
    pub affinity: Option<Affinity>,
    /// Service account of the pod.
    pub service_account: Option<String>,
    /// Regex a job's `KUBERNETES_SERVICE_ACCOUNT_OVERWRITE` must match (unset: not allowed).
    pub service_account_overwrite_allowed: Option<String>,
    /// Mount the service account's token (default false: jobs do not need the API).
    pub automount_service_account_token: Option<bool>,
    /// Secrets holding registry credentials for pulling the pod's images.
    pub image_pull_secrets: Vec<String>,
    /// `always`, `if-not-present` or `never` (a list: the first is used).
    #[serde(deserialize_with = "one_or_many")]
    pub pull_policy: Vec<String>,
    /// Extra `/etc/hosts` entries.
    pub host_aliases: Vec<HostAliasConfig>,
    /// Labels added to the pod.
    pub pod_labels: BTreeMap<String, String>,
    /// Regex the keys of `KUBERNETES_POD_LABELS_*` must match (unset: not allowed).
    pub pod_labels_overwrite_allowed: Option<String>,
    /// Annotations added to the pod.
    pub pod_annotations: BTreeMap<String, String>,
    /// Regex the keys of `KUBERNETES_POD_ANNOTATIONS_*` must match (unset: not allowed).
    pub pod_annotations_overwrite_allowed: Option<String>,
    /// The pod's security context.
    pub pod_security_context: PodSecurityConfig,
    /// `none`, `default`, `cluster-first`, `cluster-first-with-host-net` (or the API's
    /// `ClusterFirst` spelling).
    pub dns_policy: Option<String>,
    /// Seconds between checks of a starting pod (default 3).
    pub poll_interval: Option<u64>,
    /// Seconds a pod may take to start running (default 180).
    pub poll_timeout: Option<u64>,
    /// The pod's `terminationGracePeriodSeconds`.
    pub cleanup_grace_period_seconds: Option<i64>,
    /// Volumes mounted into the build container.
    pub volumes: VolumesConfig,
    /// kiln: `dind` or `rootless` (default: `[runners.kiln] mode`).
    pub mode: Option<KilnMode>,
    /// kiln: the Docker daemon image when the job names no `*dind*` service.
    pub dind_image: Option<String>,
    /// kiln: run services as native sidecars (Kubernetes 1.29+); false: plain containers and
    /// the script waits for the daemon.
    pub native_sidecars: Option<bool>,
    /// kiln: how kiln isolates RUN steps in a rootless pod: `rootless` (user namespaces;
    /// `auto` is the same for a non-root user) or `none` (kaniko's way).
    pub isolation: Option<String>,
    /// kiln: the shared layer cache: a PVC name, or a host path (starting with `/`).
    pub cache_volume: Option<String>,
}

/// The `*_cpu_*`, `*_memory_*` and `*_ephemeral_storage_*` keys.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)] // gitlab-runner's names say it all: container, resource, request/limit.
pub struct ResourceConfig {
    pub cpu_limit: Option<String>,
    pub cpu_request: Option<String>,
    pub memory_limit: Option<String>,
    pub memory_request: Option<String>,
    pub ephemeral_storage_limit: Option<String>,
    pub ephemeral_storage_request: Option<String>,
    pub service_cpu_limit: Option<String>,
    pub service_cpu_request: Option<String>,
    pub service_memory_limit: Option<String>,
    pub service_memory_request: Option<String>,
    pub service_ephemeral_storage_limit: Option<String>,
    pub service_ephemeral_storage_request: Option<String>,
    pub helper_cpu_limit: Option<String>,
    pub helper_cpu_request: Option<String>,
    pub helper_memory_limit: Option<String>,
    pub helper_memory_request: Option<String>,
    pub helper_ephemeral_storage_limit: Option<String>,
    pub helper_ephemeral_storage_request: Option<String>,
    pub cpu_limit_overwrite_max_allowed: Option<String>,
    pub cpu_request_overwrite_max_allowed: Option<String>,
    pub memory_limit_overwrite_max_allowed: Option<String>,
    pub memory_request_overwrite_max_allowed: Option<String>,
    pub ephemeral_storage_limit_overwrite_max_allowed: Option<String>,
    pub ephemeral_storage_request_overwrite_max_allowed: Option<String>,
    pub service_cpu_limit_overwrite_max_allowed: Option<String>,
    pub service_cpu_request_overwrite_max_allowed: Option<String>,
    pub service_memory_limit_overwrite_max_allowed: Option<String>,
    pub service_memory_request_overwrite_max_allowed: Option<String>,
    pub service_ephemeral_storage_limit_overwrite_max_allowed: Option<String>,
    pub service_ephemeral_storage_request_overwrite_max_allowed: Option<String>,
    pub helper_cpu_limit_overwrite_max_allowed: Option<String>,
    pub helper_cpu_request_overwrite_max_allowed: Option<String>,
    pub helper_memory_limit_overwrite_max_allowed: Option<String>,
    pub helper_memory_request_overwrite_max_allowed: Option<String>,
    pub helper_ephemeral_storage_limit_overwrite_max_allowed: Option<String>,
    pub helper_ephemeral_storage_request_overwrite_max_allowed: Option<String>,
}

/// Which container a resource setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceTarget {
    /// `build` (no prefix).
    Build,
    /// Services, the Docker daemon included (`service_`).
    Service,
    /// The `clone` init container (`helper_`).
    Helper,
}

impl ResourceTarget {
    /// The key prefix (`service_`) and the job-variable infix (`SERVICE_`).
    pub fn prefixes(self) -> (&'static str, &'static str) {
        match self {
            Self::Build => ("", ""),
            Self::Service => ("service_", "SERVICE_"),
            Self::Helper => ("helper_", "HELPER_"),
        }
    }
}

/// The resources a setting is about, with the Kubernetes resource name.
pub const RESOURCES: [(&str, &str); 3] = [
    ("cpu", "cpu"),
    ("memory", "memory"),
    ("ephemeral_storage", "ephemeral-storage"),
];

impl ResourceConfig {
    /// The value and override ceiling of `<prefix><resource>_<bound>` (`bound`: `limit` or
    /// `request`; `resource` as in [`RESOURCES`]).
    pub fn get(
        &self,
        target: ResourceTarget,
        resource: &str,
        bound: &str,
    ) -> (Option<&str>, Option<&str>) {
        let key = format!("{}{resource}_{bound}", target.prefixes().0);
        let (v, m) = self
            .fields()
            .into_iter()
            .fold((None, None), |(v, m), (k, f)| {
                if k == key {
                    (f.as_deref(), m)
                } else if k.strip_suffix("_overwrite_max_allowed") == Some(key.as_str()) {
                    (v, f.as_deref())
                } else {
                    (v, m)
                }
            });
        (v, m)
    }

    /// Every key with its value, for lookups and validation.
    pub fn fields(&self) -> Vec<(&'static str, &Option<String>)> {
        vec![
            ("cpu_limit", &self.cpu_limit),
            ("cpu_request", &self.cpu_request),
            ("memory_limit", &self.memory_limit),
            ("memory_request", &self.memory_request),
            ("ephemeral_storage_limit", &self.ephemeral_storage_limit),
            ("ephemeral_storage_request", &self.ephemeral_storage_request),
            ("service_cpu_limit", &self.service_cpu_limit),
            ("service_cpu_request", &self.service_cpu_request),
            ("service_memory_limit", &self.service_memory_limit),
            ("service_memory_request", &self.service_memory_request),
            (
                "service_ephemeral_storage_limit",
                &self.service_ephemeral_storage_limit,
            ),
            (
                "service_ephemeral_storage_request",
                &self.service_ephemeral_storage_request,
            ),
            ("helper_cpu_limit", &self.helper_cpu_limit),
            ("helper_cpu_request", &self.helper_cpu_request),
            ("helper_memory_limit", &self.helper_memory_limit),
            ("helper_memory_request", &self.helper_memory_request),
            (
                "helper_ephemeral_storage_limit",
                &self.helper_ephemeral_storage_limit,
            ),
            (
                "helper_ephemeral_storage_request",
                &self.helper_ephemeral_storage_request,
            ),
            (
                "cpu_limit_overwrite_max_allowed",
                &self.cpu_limit_overwrite_max_allowed,
            ),
            (
                "cpu_request_overwrite_max_allowed",
                &self.cpu_request_overwrite_max_allowed,
            ),
            (
                "memory_limit_overwrite_max_allowed",
                &self.memory_limit_overwrite_max_allowed,
            ),
            (
                "memory_request_overwrite_max_allowed",
                &self.memory_request_overwrite_max_allowed,
            ),
            (
                "ephemeral_storage_limit_overwrite_max_allowed",
                &self.ephemeral_storage_limit_overwrite_max_allowed,
            ),
            (
                "ephemeral_storage_request_overwrite_max_allowed",
                &self.ephemeral_storage_request_overwrite_max_allowed,
            ),
            (
                "service_cpu_limit_overwrite_max_allowed",
                &self.service_cpu_limit_overwrite_max_allowed,
            ),
            (
                "service_cpu_request_overwrite_max_allowed",
                &self.service_cpu_request_overwrite_max_allowed,
            ),
            (
                "service_memory_limit_overwrite_max_allowed",
                &self.service_memory_limit_overwrite_max_allowed,
            ),
            (
                "service_memory_request_overwrite_max_allowed",
                &self.service_memory_request_overwrite_max_allowed,
            ),
            (
                "service_ephemeral_storage_limit_overwrite_max_allowed",
                &self.service_ephemeral_storage_limit_overwrite_max_allowed,
            ),
            (
                "service_ephemeral_storage_request_overwrite_max_allowed",
                &self.service_ephemeral_storage_request_overwrite_max_allowed,
            ),
            (
                "helper_cpu_limit_overwrite_max_allowed",
                &self.helper_cpu_limit_overwrite_max_allowed,
            ),
            (
                "helper_cpu_request_overwrite_max_allowed",
                &self.helper_cpu_request_overwrite_max_allowed,
            ),
            (
                "helper_memory_limit_overwrite_max_allowed",
                &self.helper_memory_limit_overwrite_max_allowed,
            ),
            (
                "helper_memory_request_overwrite_max_allowed",
                &self.helper_memory_request_overwrite_max_allowed,
            ),
            (
                "helper_ephemeral_storage_limit_overwrite_max_allowed",
                &self.helper_ephemeral_storage_limit_overwrite_max_allowed,
            ),
            (
                "helper_ephemeral_storage_request_overwrite_max_allowed",
                &self.helper_ephemeral_storage_request_overwrite_max_allowed,
            ),
        ]
    }
}

/// `[[runners.kubernetes.host_aliases]]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct HostAliasConfig {
    /// The address.
    pub ip: String,
    /// Names resolving to it.
    pub hostnames: Vec<String>,
}

/// `[runners.kubernetes.pod_security_context]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
#[allow(missing_docs)] // The Kubernetes fields of the same names.
pub struct PodSecurityConfig {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub fs_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
}

/// `[runners.kubernetes.volumes]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct VolumesConfig {
    /// `[[…volumes.empty_dir]]`.
    pub empty_dir: Vec<EmptyDirVolume>,
    /// `[[…volumes.pvc]]`.
    pub pvc: Vec<PvcVolume>,
    /// `[[…volumes.secret]]`.
    pub secret: Vec<SecretVolume>,
    /// `[[…volumes.config_map]]`.
    pub config_map: Vec<SecretVolume>,
    /// `[[…volumes.host_path]]`.
    pub host_path: Vec<HostPathVolume>,
}

/// An emptyDir volume.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct EmptyDirVolume {
    /// Volume name.
    pub name: String,
    /// Where the build container sees it.
    pub mount_path: String,
    /// `""` (node disk) or `Memory`.
    pub medium: Option<String>,
    /// A quantity.
    pub size_limit: Option<String>,
}

/// A PersistentVolumeClaim volume (`name` is the claim's name too, as gitlab-runner).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct PvcVolume {
    /// Volume and claim name.
    pub name: String,
    /// Where the build container sees it.
    pub mount_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A Secret or ConfigMap volume (`name` is the object's name too, as gitlab-runner).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct SecretVolume {
    /// Volume and object name.
    pub name: String,
    /// Where the build container sees it.
    pub mount_path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Key → path in the volume (all keys when empty).
    pub items: BTreeMap<String, String>,
}

/// A hostPath volume.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct HostPathVolume {
    /// Volume name.
    pub name: String,
    /// Where the build container sees it.
    pub mount_path: String,
    /// The node's path (default: `mount_path`, as gitlab-runner).
    pub host_path: Option<String>,
    /// Mounted read-only.
    pub read_only: bool,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn affinity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Affinity>, D::Error> {
    let value = toml::Value::deserialize(d)?;
    let json = camel_case_keys(&value);
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("affinity: {e}")))
}

/// The TOML table as JSON with `snake_case` keys turned into the API's `camelCase`.
fn camel_case_keys(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (camel_case(k), camel_case_keys(v)))
                .collect(),
        ),
        toml::Value::Array(a) => J::Array(a.iter().map(camel_case_keys).collect()),
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => J::from(*f),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
    }
}

fn camel_case(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The values `isolation` accepts (the builder's `--isolation`, less `chroot`, which needs
/// root and so cannot run in a rootless pod).
pub const ISOLATIONS: [&str; 3] = ["auto", "rootless", "none"];

/// gitlab-runner's `dns_policy` spellings and the API's.
pub fn dns_policy(s: &str) -> Option<&'static str> {
    Some(match s {
        "none" | "None" => "None",
        "default" | "Default" => "Default",
        "cluster-first" | "ClusterFirst" => "ClusterFirst",
        "cluster-first-with-host-net" | "ClusterFirstWithHostNet" => "ClusterFirstWithHostNet",
        _ => return None,
    })
}

/// The API's `imagePullPolicy` for gitlab-runner's spelling.
pub fn pull_policy(s: &str) -> Option<&'static str> {
    Some(match s {
        "always" | "Always" => "Always",
        "never" | "Never" => "Never",
        "if-not-present" | "IfNotPresent" => "IfNotPresent",
        _ => return None,
    })
}

impl KubernetesConfig {
    /// Checks values the API server would refuse for every job, naming the key
    /// (`prefix` is `runners[0].kubernetes`; `mode` is the pod shape when the entry's
    /// executor is kubernetes).
    pub fn validate(&self, prefix: &str, mode: Option<KilnMode>) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| ConfigError::Invalid(format!("{prefix}.{key}: {why}"));
        for (key, value) in self.resources.fields() {
            if let Some(v) = value {
                if parse_quantity(v).is_none() {
                    return Err(bad(key, format!("{v:?} is not a Kubernetes quantity")));
                }
            }
        }
        for (key, re) in [
            (
                "namespace_overwrite_allowed",
                &self.namespace_overwrite_allowed,
            ),
            (
                "service_account_overwrite_allowed",
                &self.service_account_overwrite_allowed,
            ),
            (
                "pod_labels_overwrite_allowed",
                &self.pod_labels_overwrite_allowed,
            ),
            (
                "pod_annotations_overwrite_allowed",
                &self.pod_annotations_overwrite_allowed,
            ),
        ] {
            if let Some(re) = re {
                regex::Regex::new(re).map_err(|e| bad(key, format!("invalid regex: {e}")))?;
            }
        }
        for p in &self.pull_policy {
            if pull_policy(p).is_none() {
                return Err(bad(
                    "pull_policy",
                    format!("{p:?}: always, if-not-present or never"),
                ));
            }
        }
        if let Some(p) = &self.dns_policy {
            if dns_policy(p).is_none() {
                return Err(bad(
                    "dns_policy",
                    format!("{p:?}: none, default, cluster-first or cluster-first-with-host-net"),
                ));
            }
        }
        for (key, effect) in &self.node_tolerations {
            if !matches!(
                effect.as_str(),
                "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(bad(
                    &format!("node_tolerations.{key:?}"),
                    format!("{effect:?}: NoSchedule, PreferNoSchedule, NoExecute or \"\""),
                ));
            }
        }
        if let Some(i) = &self.isolation {
            if i == "chroot" {
                return Err(bad(
                    "isolation",
                    "\"chroot\" needs root; a rootless pod runs as uid 1000 (use rootless or none)"
                        .into(),
                ));
            }
            if !ISOLATIONS.contains(&i.as_str()) {
                return Err(bad("isolation", format!("{i:?}: auto, rootless or none")));
            }
        }
        if mode == Some(KilnMode::Dind) && !self.privileged {
            return Err(bad(
                "privileged",
                "mode = \"dind\" needs privileged = true for the Docker daemon (no other \
                 container gets it)"
                    .into(),
            ));
        }
        let v = &self.volumes;
        let mounts = v
            .empty_dir
            .iter()
            .map(|e| ("empty_dir", &e.name, &e.mount_path))
            .chain(v.pvc.iter().map(|e| ("pvc", &e.name, &e.mount_path)))
            .chain(v.secret.iter().map(|e| ("secret", &e.name, &e.mount_path)))
            .chain(
                v.config_map
                    .iter()
                    .map(|e| ("config_map", &e.name, &e.mount_path)),
            )
            .chain(
                v.host_path
                    .iter()
                    .map(|e| ("host_path", &e.name, &e.mount_path)),
            );
        let mut seen = std::collections::BTreeSet::new();
        for (kind, name, path) in mounts {
            let key = format!("volumes.{kind}");
            if !crate::executor::kubernetes::spec::is_dns_label(name) {
                return Err(bad(&key, format!("name {name:?} is not a DNS-1123 label")));
            }
            if !seen.insert(name.as_str()) {
                return Err(bad(&key, format!("volume name {name:?} is used twice")));
            }
            if !path.starts_with('/') {
                return Err(bad(&key, format!("mount_path {path:?} is not absolute")));
            }
        }
        for e in &v.empty_dir {
            if let Some(s) = &e.size_limit {
                if parse_quantity(s).is_none() {
                    return Err(bad(
                        "volumes.empty_dir",
                        format!("size_limit {s:?} is not a Kubernetes quantity"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_takes_gitlab_runners_snake_case() {
        let k: KubernetesConfig = toml::from_str(
            r#"
            [affinity.node_affinity.required_during_scheduling_ignored_during_execution]
            [[affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms]]
            [[affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms.match_expressions]]
            key = "kubernetes.io/arch"
            operator = "In"
            values = ["amd64"]
            "#,
        )
        .unwrap();
        let terms = k
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        let e = &terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (e.key.as_str(), e.operator.as_str()),
            ("kubernetes.io/arch", "In")
        );
    }

    #[test]
    fn pull_policy_is_a_string_or_a_list() {
        let k: KubernetesConfig = toml::from_str(r#"pull_policy = "always""#).unwrap();
        assert_eq!(k.pull_policy, ["always"]);
        let k: KubernetesConfig =
            toml::from_str(r#"pull_policy = ["if-not-present", "always"]"#).unwrap();
        assert_eq!(k.pull_policy, ["if-not-present", "always"]);
    }

    #[test]
    fn resource_lookup_finds_value_and_ceiling() {
        let k: KubernetesConfig = toml::from_str(
            "service_memory_limit = \"1Gi\"\nservice_memory_limit_overwrite_max_allowed = \"2Gi\"",
        )
        .unwrap();
        assert_eq!(
            k.resources.get(ResourceTarget::Service, "memory", "limit"),
            (Some("1Gi"), Some("2Gi"))
        );
        assert_eq!(
            k.resources.get(ResourceTarget::Build, "memory", "limit"),
            (None, None)
        );
    }
}
