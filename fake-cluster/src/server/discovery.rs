//! Discovery documents: enough of /version, /api, /apis and /api/v1 for kubectl and kube.

use std::sync::Arc;

use hyper::Response;
use serde_json::{json, Value};

use super::body::{self, Body};
use crate::shared::Shared;
use crate::status::ApiError;

fn resource(name: &str, singular: &str, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    let mut v = json!({
        "name": name,
        "singularName": singular,
        "namespaced": true,
        "kind": kind,
        "verbs": verbs,
    });
    if !short.is_empty() {
        v["shortNames"] = json!(short);
    }
    v
}

fn api_v1() -> Value {
    let all = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut pods = resource("pods", "pod", "Pod", &all, &["po"]);
    pods["categories"] = json!(["all"]);
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            pods,
            resource("pods/exec", "", "PodExecOptions", &["create", "get"], &[]),
            resource("pods/log", "", "Pod", &["get"], &[]),
            resource("pods/status", "", "Pod", &["get", "patch", "update"], &[]),
            resource("secrets", "secret", "Secret", &all, &[]),
            resource("events", "event", "Event", &all, &["ev"]),
        ],
    })
}

/// A discovery document, or 404 for what the fake does not serve (the OpenAPI documents).
pub(crate) fn serve(shared: &Arc<Shared>, path: &str) -> Response<Body> {
    match path.trim_end_matches('/') {
        "/version" => body::json(
            200,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64",
            }),
        ),
        "/api" => body::json(
            200,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}],
            }),
        ),
        "/apis" => body::json(
            200,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        "/api/v1" => body::json(200, &api_v1()),
        _ => body::error(&ApiError::path_not_found()),
    }
}
