//! The garbage collector's background propagation: when an owner leaves the API, its dependents
//! in the same namespace (those whose `metadata.ownerReferences` name its uid) go too.
//!
//! The real collector works asynchronously from watches; here it runs in the same store
//! transaction as the owner's removal, so the owner's DELETED event is always followed by its
//! dependents'. A dependent that still has another live owner is not deleted: the reference to the
//! gone owner is dropped instead (a MODIFIED), as the real collector does. Pods are never collected
//! here: deleting one needs the kubelet's graceful termination, and nothing kiln makes is owned
//! by another object of the fake's types.

use serde_json::Value;

use crate::resource::Resource;
use crate::store::Store;

/// Owner references of an object, as JSON.
fn refs(obj: &Value) -> Vec<Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether a reference names a type the fake serves, so its absence here means it is gone; an
/// owner of another type (a Job, say) is taken as existing, since the fake cannot tell.
fn served(r: &Value) -> bool {
    r["apiVersion"] == "v1" && matches!(r["kind"].as_str(), Some("Pod" | "Secret" | "Event"))
}

/// An owner with this uid was removed from `ns`: collects its dependents.
pub(crate) fn owner_removed(store: &mut Store, ns: &str, uid: &str) {
    for resource in Resource::ALL {
        if resource == Resource::Pods {
            continue;
        }
        let (items, _) = store.list(resource, Some(ns));
        for obj in items {
            if refs(&obj).iter().any(|r| r["uid"] == uid) {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                collect(store, resource, ns, name);
            }
        }
    }
}

/// Deletes a dependent whose served owners are all gone, or drops its references to the gone
/// ones while another owner lives.
pub(crate) fn collect(store: &mut Store, resource: Resource, ns: &str, name: &str) {
    if resource == Resource::Pods {
        return;
    }
    let Some(obj) = store.get(resource, ns, name) else {
        return;
    };
    let all = refs(&obj);
    if all.is_empty() {
        return;
    }
    let (live, gone): (Vec<Value>, Vec<Value>) = all
        .into_iter()
        .partition(|r| !served(r) || r["uid"].as_str().is_some_and(|u| store.uid_exists(ns, u)));
    if gone.is_empty() {
        return;
    }
    if live.is_empty() {
        store.remove(resource, ns, name);
    } else {
        store.update(resource, ns, name, |v| {
            v["metadata"]["ownerReferences"] = Value::Array(live);
        });
    }
}
