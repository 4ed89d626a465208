//! Create, get, list and delete.

use std::sync::Arc;

use hyper::Response;
use serde_json::{json, Value};

use super::body::{self, Body};
use super::query::Query;
use crate::resource::Resource;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::ApiError;

/// A list's items carry neither kind nor apiVersion on a real server.
fn as_item(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    v
}

fn list_doc(resource: Resource, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": resource.list_kind(),
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items.into_iter().map(as_item).collect::<Vec<_>>(),
    })
}

pub(crate) fn selectors(
    resource: Resource,
    query: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
        FieldSelector::parse(query.get("fieldSelector").unwrap_or_default(), resource)?,
    ))
}

pub(crate) fn list(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(resource, query)?;
    let (items, rv) = shared.store.lock().unwrap().list(resource, ns);
    let items = items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    Ok(body::json(200, &list_doc(resource, items, rv)))
}

pub(crate) fn get(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let obj = shared.store.lock().unwrap().get(resource, ns, name);
    obj.map(|o| body::json(200, &o))
        .ok_or_else(|| ApiError::not_found(resource.plural(), name))
}

pub(crate) fn create(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let kind = resource.kind();
    let raw: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let obj = crate::validate::admit(resource, ns, &raw)?;
    let created = {
        let mut store = shared.store.lock().unwrap();
        let created = store.create(resource, ns, obj)?;
        // An object created for an owner already gone is the collector's at once.
        let name = created["metadata"]["name"].as_str().unwrap_or_default();
        crate::gc::collect(&mut store, resource, ns, name);
        created
    };
    if resource == Resource::Pods {
        let name = created["metadata"]["name"].as_str().unwrap_or_default();
        crate::kubelet::pod_created(shared, ns, name);
    }
    Ok(body::json(201, &created))
}

/// The grace period a delete asks for: the query wins over the body, as in the API server.
fn grace_period(query: &Query, opts: &Value) -> Result<Option<i64>, ApiError> {
    let g = query
        .number("gracePeriodSeconds")
        .or_else(|| opts["gracePeriodSeconds"].as_i64());
    let policy = query
        .get("propagationPolicy")
        .map(str::to_string)
        .or_else(|| opts["propagationPolicy"].as_str().map(str::to_string));
    if let Some(p) = policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::invalid(
                "DeleteOptions",
                "",
                &[crate::status::Cause::not_supported(
                    "propagationPolicy",
                    &p,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
    }
    Ok(g)
}

fn delete_options(raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(raw).map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))
}

/// Deletes one object; pods go through the kubelet's graceful termination.
fn delete_one(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<(u16, Value), ApiError> {
    if resource != Resource::Pods {
        let old = shared
            .store
            .lock()
            .unwrap()
            .remove(resource, ns, name)
            .ok_or_else(|| ApiError::not_found(resource.plural(), name))?;
        // Only pods answer with the object; other resources answer with a success Status.
        return Ok((
            200,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": resource.plural(), "uid": old["metadata"]["uid"]},
            }),
        ));
    }
    let pod = shared
        .store
        .lock()
        .unwrap()
        .get(resource, ns, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Ok((200, pod));
    }
    let grace = grace
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0);
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    // A pod no kubelet has, or one asked to go at once, leaves the API now; a running pod stays,
    // marked, until its kubelet has stopped it.
    let bound = pod["spec"]["nodeName"].is_string() && shared.kubelet.has_pod(ns, name);
    if !bound || grace == 0 {
        let old = shared
            .store
            .lock()
            .unwrap()
            .remove(resource, ns, name)
            .ok_or_else(|| ApiError::not_found("pods", name))?;
        crate::kubelet::pod_deleted(shared, ns, name, 0);
        return Ok((200, old));
    }
    let _ = phase;
    let until = k8s_openapi::jiff::Timestamp::now() + std::time::Duration::from_secs(grace as u64);
    let marked = shared
        .store
        .lock()
        .unwrap()
        .update(resource, ns, name, |v| {
            v["metadata"]["deletionTimestamp"] =
                json!(until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            v["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        })
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    crate::kubelet::pod_deleted(shared, ns, name, grace as u64);
    Ok((200, marked))
}

pub(crate) fn delete(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    name: &str,
    query: &Query,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(raw)?;
    let grace = grace_period(query, &opts)?;
    let (code, v) = delete_one(shared, resource, ns, name, grace)?;
    Ok(body::json(code, &v))
}

pub(crate) fn delete_collection(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: &str,
    query: &Query,
    raw: &[u8],
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(raw)?;
    let grace = grace_period(query, &opts)?;
    let (labels, fields) = selectors(resource, query)?;
    let (items, _) = shared.store.lock().unwrap().list(resource, Some(ns));
    let mut out = Vec::new();
    for o in items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
    {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match delete_one(shared, resource, ns, &name, grace) {
            Ok((_, v)) if resource == Resource::Pods => out.push(v),
            Ok(_) => out.push(o),
            // Gone in between: a concurrent delete, as on a real server.
            Err(_) => {}
        }
    }
    let rv = shared.store.lock().unwrap().resource_version();
    Ok(body::json(200, &list_doc(resource, out, rv)))
}
