//! What an update may change in a pod's spec: only images, a shorter active deadline and added
//! tolerations; everything else is fixed once the pod is scheduled.

use serde_json::Value;

use crate::status::Cause;

const FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Every failed check of a pod spec change; both specs are defaulted JSON.
pub(crate) fn causes(old: &Value, new: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    let mut munged = new.clone();
    // The allowed changes are copied back from the old spec, so what is left to compare is
    // exactly what may not change.
    for list in ["containers", "initContainers"] {
        // `get_mut`, not indexing: indexing a missing key would insert a null and so a change.
        let n = munged.get_mut(list).and_then(Value::as_array_mut);
        if let (Some(o), Some(n)) = (old[list].as_array(), n) {
            if o.len() == n.len() {
                for (oc, nc) in o.iter().zip(n.iter_mut()) {
                    nc["image"] = oc["image"].clone();
                }
            }
        }
    }
    if let Some(prev) = old["activeDeadlineSeconds"].as_i64() {
        let field = "spec.activeDeadlineSeconds";
        match new["activeDeadlineSeconds"].as_i64() {
            None => c.push(Cause::invalid(
                field,
                "null",
                "must not update from a positive integer to nil value",
            )),
            Some(n) if n > prev => c.push(Cause::invalid(
                field,
                &n.to_string(),
                "must be less than or equal to previous value",
            )),
            Some(_) => {}
        }
    }
    set_as(&mut munged, old, "activeDeadlineSeconds");
    let old_tol = old["tolerations"].as_array().cloned().unwrap_or_default();
    let new_tol = new["tolerations"].as_array().cloned().unwrap_or_default();
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        set_as(&mut munged, old, "tolerations");
    }
    if munged != *old {
        let changed: Vec<String> = keys(old, &munged)
            .into_iter()
            .filter(|k| old[k.as_str()] != munged[k.as_str()])
            .collect();
        c.push(Cause::forbidden(
            "spec",
            &format!("{FORBIDDEN}\n  changed: {}", changed.join(", ")),
        ));
    }
    c
}

/// Makes `key` of `v` what it is in `from`, absent included.
fn set_as(v: &mut Value, from: &Value, key: &str) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    match from.get(key) {
        Some(x) => {
            m.insert(key.to_string(), x.clone());
        }
        None => {
            m.remove(key);
        }
    }
}

fn keys(a: &Value, b: &Value) -> std::collections::BTreeSet<String> {
    [a, b]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|m| m.keys().cloned())
        .collect()
}
