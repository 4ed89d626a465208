//! PATCH and PUT of one object.

use std::sync::Arc;

use hyper::Response;
use serde_json::Value;

use super::body::{self, Body};
use crate::patch::{self, PatchType};
use crate::resource::Resource;
use crate::shared::Shared;
use crate::status::ApiError;
use crate::validate::{admit_update, Write};

/// Applies a patch sent with `content_type` to a pod or a secret.
pub(crate) fn patch(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    name: &str,
    content_type: &str,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let kind =
        PatchType::from_content_type(content_type).ok_or_else(ApiError::unsupported_patch_type)?;
    write(shared, resource, ns, name, Write::Patch, |old| {
        patch::apply(kind, old, raw)
    })
}

/// Replaces a pod or a secret with the request's object.
pub(crate) fn replace(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    name: &str,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let kind = resource.kind();
    let new: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    write(shared, resource, ns, name, Write::Replace, |_| Ok(new))
}

/// Reads, changes, checks and stores under one lock of the store, so a concurrent write cannot
/// slip between the read and the resourceVersion check.
fn write(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    name: &str,
    how: Write,
    change: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Response<Body>, ApiError> {
    if resource == Resource::Events {
        return Err(ApiError::method_not_allowed(match how {
            Write::Patch => "PATCH",
            Write::Replace => "PUT",
        }));
    }
    let mut store = shared.store.lock().unwrap();
    let old = store
        .get(resource, ns, name)
        .ok_or_else(|| ApiError::not_found(resource.plural(), name))?;
    let new = change(&old)?;
    // A resourceVersion in the new object is a precondition; none (or an empty one) is an
    // unconditional write, which pods and secrets allow.
    let old_rv = old["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && rv != old_rv => {
            return Err(ApiError::conflict(resource.plural(), name));
        }
        _ => {}
    }
    let obj = admit_update(resource, ns, name, &old, &new, how)?;
    let stored = store
        .update(resource, ns, name, |v| *v = obj)
        .ok_or_else(|| ApiError::not_found(resource.plural(), name))?;
    // A patch that adds a reference to an owner already gone leaves the object to the collector.
    crate::gc::collect(&mut store, resource, ns, name);
    Ok(body::json(200, &stored))
}
