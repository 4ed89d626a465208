//! The job's Secret: every value that must not appear in the pod spec (stage scripts, secret
//! and file variables, certificates, the registry config), and the keys that name them.

use super::labels::MANAGED_BY;
use crate::job::plan::{JobVar, StageName};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

/// The Secret key of a stage's script: `<stage>.sh`.
pub fn script_key(stage: StageName) -> String {
    format!("{}.sh", stage.as_str())
}

fn key_safe(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 200
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The Secret's data as it is filled in, plus which key holds which variable.
#[derive(Debug, Default)]
pub(super) struct SecretData {
    pub data: BTreeMap<String, ByteString>,
}

impl SecretData {
    /// Stores `value` under `<prefix><name>` (an index when `name` has characters Secret
    /// keys cannot hold) and returns the key.
    pub fn put(&mut self, prefix: &str, name: &str, value: &[u8]) -> String {
        let mut key = format!("{prefix}{name}");
        if !key_safe(&key) {
            key = format!("{prefix}{}", self.data.len());
        }
        self.data.insert(key.clone(), ByteString(value.to_vec()));
        key
    }

    /// Stores a secret-kind variable; its key is `env.<NAME>`.
    pub fn put_var(&mut self, v: &JobVar) -> String {
        self.put("env.", &v.key, v.value.as_bytes())
    }
}

/// The Secret object. It has no owner yet: the pod's uid is only known once the pod exists;
/// see [`secret_owner_reference`].
pub(super) fn secret(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    data: SecretData,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        data: Some(data.data),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The owner reference making the Secret go with `pod` (garbage-collected when the pod is
/// deleted, even if the runner is not there to do it). The executor creates the Secret first
/// (the pod's volumes need it), then the pod, then patches this into the Secret's
/// `metadata.ownerReferences`.
pub fn secret_owner_reference(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

/// Whether `labels` mark an object made by kiln-runner.
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
}
