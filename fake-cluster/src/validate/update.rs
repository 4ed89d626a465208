//! Admission of a changed object (a PUT or a PATCH): the checks of a create again, then the rules
//! of an update (server-owned metadata kept, immutable fields refused).

use k8s_openapi::api::core::v1::{Pod, Secret};
use serde_json::{json, Value};

use super::{decode_strict, pod_update, unknown_list, DecodeError};
use crate::resource::Resource;
use crate::status::{ApiError, Cause};

/// How the new object came: a patch's strict-decoding failures are worded differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// A PATCH: the patched object is checked.
    Patch,
    /// A PUT: the request's object is checked.
    Replace,
}

/// Metadata only the server writes: an update's values for these are ignored, as
/// `rest.BeforeUpdate` resets them.
const SERVER_META: [&str; 5] = [
    "namespace",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
];

/// Checks `new` as the replacement of `old` (stored as `ns`/`name`) and returns it as it will be
/// stored.
pub(crate) fn admit_update(
    resource: Resource,
    ns: &str,
    name: &str,
    old: &Value,
    new: &Value,
    how: Write,
) -> Result<Value, ApiError> {
    let kind = resource.kind();
    if how == Write::Patch {
        patched_decodes(resource, new)?;
    }
    let new_name = new["metadata"]["name"].as_str().unwrap_or_default();
    if new_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    let mut obj = super::admit(resource, ns, new)?;
    let mut causes = Vec::new();
    let old_uid = old["metadata"]["uid"].as_str().unwrap_or_default();
    match new["metadata"]["uid"].as_str() {
        Some(u) if !u.is_empty() && u != old_uid => {
            causes.push(Cause::invalid("metadata.uid", u, "field is immutable"));
        }
        _ => {}
    }
    obj["metadata"]["uid"] = json!(old_uid);
    for k in SERVER_META {
        match old["metadata"].get(k) {
            Some(v) => obj["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    match resource {
        Resource::Pods => {
            // Status is the kubelet's: a write to the pod itself cannot change it.
            obj["status"] = old["status"].clone();
            causes.extend(pod_update::causes(&old["spec"], &obj["spec"]));
        }
        Resource::Secrets => causes.extend(secret_causes(old, &obj)),
        Resource::Events => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(kind, name, &causes));
    }
    Ok(obj)
}

/// The patched object must decode strictly; the patch handler words a failure as a 422 on the
/// field `patch` of an unnamed object, quoting the whole patched document.
fn patched_decodes(resource: Resource, new: &Value) -> Result<(), ApiError> {
    let result = match resource {
        Resource::Pods => decode_strict::<Pod>(new).map(drop),
        Resource::Secrets => decode_strict::<Secret>(new).map(drop),
        Resource::Events => decode_strict::<k8s_openapi::api::core::v1::Event>(new).map(drop),
    };
    let detail = match result {
        Ok(()) => return Ok(()),
        Err(DecodeError::Type(m)) => m,
        Err(DecodeError::Unknown(f)) => format!("strict decoding error: {}", unknown_list(&f)),
    };
    let doc = serde_json::to_string(new).unwrap_or_default();
    Err(ApiError::invalid(
        "",
        "",
        &[Cause::invalid("patch", &doc, &detail)],
    ))
}

/// A secret's type never changes, and an immutable secret's data neither.
fn secret_causes(old: &Value, new: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    if old["type"] != new["type"] {
        c.push(Cause::invalid(
            "type",
            new["type"].as_str().unwrap_or_default(),
            "field is immutable",
        ));
    }
    if old["immutable"] == json!(true) {
        const WHY: &str = "field is immutable when `immutable` is set";
        if new["immutable"] != json!(true) {
            c.push(Cause::forbidden("immutable", WHY));
        }
        if old["data"] != new["data"] {
            c.push(Cause::forbidden("data", WHY));
        }
    }
    c
}
