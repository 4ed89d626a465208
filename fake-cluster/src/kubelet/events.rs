//! Events the kubelet and the scheduler record about a pod.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::resource::Resource;
use crate::shared::Shared;

/// The fake node's name.
pub(crate) const NODE: &str = "fake-node";

/// Records an event about a pod; `field_path` names a container as `spec.containers{name}`.
pub(crate) fn record(
    shared: &Arc<Shared>,
    pod: &Pod,
    field_path: Option<String>,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = crate::time::now_seconds();
    let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
    let mut involved = json!({
        "kind": "Pod", "namespace": ns, "name": name, "uid": pod.metadata.uid, "apiVersion": "v1",
        "resourceVersion": pod.metadata.resource_version,
    });
    if let Some(f) = field_path {
        involved["fieldPath"] = json!(f);
    }
    let host = if component == "kubelet" {
        json!(NODE)
    } else {
        json!(null)
    };
    let mut event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}")},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": if component == "kubelet" { NODE } else { "" },
    });
    if !host.is_null() {
        event["source"]["host"] = host;
    }
    // Two events in the same nanosecond would collide: retry under a new name.
    let mut store = shared.store.lock().unwrap();
    if store.exists(Resource::Events, &ns, &format!("{name}.{nanos:x}")) {
        event["metadata"]["name"] =
            json!(format!("{name}.{nanos:x}{}", crate::store::name_suffix()));
    }
    let _ = store.create(Resource::Events, &ns, event);
}

/// `spec.containers{name}` or `spec.initContainers{name}`.
pub(crate) fn field_path(init: bool, container: &str) -> Option<String> {
    Some(if init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    })
}
