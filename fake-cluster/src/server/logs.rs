//! Container logs, whole or followed.

use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::body::{self, Body};
use super::query::Query;
use crate::shared::Shared;
use crate::status::ApiError;

/// Picks the container a log or exec request means, with the API server's refusals.
pub(crate) fn pick_container(
    pod: &Pod,
    name: &str,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mains: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    let inits: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    match asked.filter(|a| !a.is_empty()) {
        Some(c) if mains.iter().chain(&inits).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if mains.len() == 1 => Ok(mains[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                mains.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Why a container has no output yet, in the API server's words; `None` once it has started.
pub(crate) fn waiting_reason(pod: &Pod, container: &str) -> Option<String> {
    let status = pod.status.clone().unwrap_or_default();
    let st = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == container);
    let state = st.and_then(|s| s.state.clone()).unwrap_or_default();
    if state.running.is_some() || state.terminated.is_some() {
        return None;
    }
    Some(
        state
            .waiting
            .and_then(|w| w.reason)
            .unwrap_or_else(|| "ContainerCreating".into()),
    )
}

pub(crate) fn logs(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let pod = shared
        .get_pod(ns, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let container = pick_container(&pod, name, query.get("container"))?;
    if query.flag("previous") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let waiting = || {
        ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
            waiting_reason(&pod, &container).unwrap_or_else(|| "ContainerCreating".into())
        ))
    };
    if waiting_reason(&pod, &container).is_some() {
        return Err(waiting());
    }
    let log = shared
        .kubelet
        .log(ns, name, &container)
        .ok_or_else(waiting)?;
    let follow = query.flag("follow");
    let timestamps = query.flag("timestamps");
    let since = match query.get("sinceTime") {
        Some(t) => Some(
            t.parse::<Timestamp>()
                .map_err(|e| ApiError::bad_request(format!("sinceTime: {e}")))?,
        ),
        None => query
            .number("sinceSeconds")
            .map(|s| Timestamp::now() - std::time::Duration::from_secs(s.max(0) as u64)),
    };
    let tail = query
        .number("tailLines")
        .filter(|t| *t >= 0)
        .map(|t| t as usize);
    let mut limit = query
        .number("limitBytes")
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let (resp, tx) = body::stream("text/plain");
    tokio::spawn(async move {
        let mut changed = log.subscribe();
        let (mut lines, mut done) = log.read_from(0);
        let mut next = lines.len();
        if let Some(s) = since {
            lines.retain(|(ts, _)| *ts >= s);
        }
        if let Some(t) = tail {
            let skip = lines.len().saturating_sub(t);
            lines.drain(..skip);
        }
        loop {
            for (ts, l) in lines {
                let mut chunk = if timestamps {
                    let mut v = format!("{ts} ").into_bytes();
                    v.extend_from_slice(&l);
                    Bytes::from(v)
                } else {
                    l
                };
                if let Some(left) = limit.as_mut() {
                    if chunk.len() >= *left {
                        chunk.truncate(*left);
                        let _ = tx.send(Ok(chunk)).await;
                        return;
                    }
                    *left -= chunk.len();
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            if !follow || done {
                return;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
            let (more, d) = log.read_from(next);
            next += more.len();
            lines = more;
            done = d;
        }
    });
    Ok(resp)
}
