//! Watches: JSON lines of events, replayed from a resourceVersion, with bookmarks and timeouts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::body::{self, Body};
use super::query::Query;
use super::resources::selectors;
use crate::resource::Resource;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::ApiError;
use crate::store::{Change, ChangeType};

struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    /// The event a watcher sees for a change, if any: an object that stops matching a selector
    /// is DELETED for it, one that starts matching is ADDED.
    fn event(&self, c: &Change) -> Option<&'static str> {
        if self.ns.as_deref().is_some_and(|ns| ns != c.namespace) {
            return None;
        }
        let now = self.matches(&c.object);
        match c.kind {
            ChangeType::Added | ChangeType::Deleted => now.then(|| c.kind.as_str()),
            ChangeType::Modified => {
                let before = c.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn bookmark(resource: Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": resource.kind(), "apiVersion": "v1", "metadata": meta}),
    )
}

pub(crate) fn watch(
    shared: &Arc<Shared>,
    resource: Resource,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = selectors(resource, query)?;
    let filter = Filter {
        ns: ns.map(str::to_string),
        labels,
        fields,
    };
    let from = match query.get("resourceVersion") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: \"{s}\": must be an unsigned integer"
            ))
        })?),
    };
    let send_initial = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .number("timeoutSeconds")
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let interval = *shared.bookmark_interval.lock().unwrap();
    let mut breaker = shared.watch_break.subscribe();
    let start = shared
        .store
        .lock()
        .unwrap()
        .watch(resource, if send_initial { None } else { from });
    let (resp, tx) = body::stream("application/json");
    tokio::spawn(async move {
        let mut start = match start {
            Ok(s) => s,
            Err(e) => {
                // A real server answers 200 and sends the 410 as the stream's one ERROR event.
                let _ = tx.send(Ok(line("ERROR", &e.to_json()))).await;
                return;
            }
        };
        let mut last_rv = start.rv;
        for c in &start.backlog {
            if let Some(kind) = filter.event(c) {
                if tx.send(Ok(line(kind, &c.object))).await.is_err() {
                    return;
                }
            }
            last_rv = last_rv.max(c.rv);
        }
        if send_initial
            && bookmarks
            && tx
                .send(Ok(bookmark(resource, last_rv, true)))
                .await
                .is_err()
        {
            return;
        }
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                r = start.rx.recv() => match r {
                    Ok(c) => {
                        if c.resource != resource || c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if let Some(kind) = filter.event(&c) {
                            if tx.send(Ok(line(kind, &c.object))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let e = ApiError::expired(last_rv, last_rv + 1);
                        let _ = tx.send(Ok(line("ERROR", &e.to_json()))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(bookmark(resource, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                _ = breaker.changed() => {
                    // An error ends the body mid-stream: the client sees the connection break.
                    let _ = tx.send(Err(std::io::Error::other("watch broken by the test"))).await;
                    return;
                }
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}
