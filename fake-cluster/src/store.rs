//! The object store: every object as JSON, one global resourceVersion, and the change history that
//! watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::resource::Resource;
use crate::status::ApiError;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, stamped with the resourceVersion it made.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub resource: Resource,
    pub namespace: String,
    pub kind: ChangeType,
    pub object: Value,
    /// The object before a modification: a selector watch turns a change of labels into ADDED or
    /// DELETED as a real server does.
    pub old: Option<Value>,
}

type Key = (Resource, String, String);

/// Objects and their history; lives behind the cluster's one mutex so a change and its broadcast
/// are ordered the same for every watcher.
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// The newest resourceVersion dropped from the history: a watch from below it gets 410.
    compacted: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

/// Where a new watch starts: what to send first and the live changes after it.
pub(crate) struct WatchStart {
    pub backlog: Vec<Arc<Change>>,
    pub rx: broadcast::Receiver<Arc<Change>>,
    pub rv: u64,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(16384);
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit,
            compacted: 0,
            tx,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit;
        self.trim();
    }

    /// Drops the whole history, as an etcd compaction would.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    fn trim(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.compacted = c.rv;
            }
        }
    }

    fn record(
        &mut self,
        resource: Resource,
        namespace: &str,
        kind: ChangeType,
        object: Value,
        old: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            resource,
            namespace: namespace.to_string(),
            kind,
            object,
            old,
        });
        self.history.push_back(change.clone());
        self.trim();
        // No receiver is not an error: nobody watches yet.
        let _ = self.tx.send(change);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn exists(&self, resource: Resource, ns: &str, name: &str) -> bool {
        self.objects
            .contains_key(&(resource, ns.to_string(), name.to_string()))
    }

    /// Stores a validated object whose name is final; fills in what the server owns.
    pub fn create(
        &mut self,
        resource: Resource,
        ns: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (resource, ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(resource.plural(), &name));
        }
        let rv = self.next_rv();
        let meta = &mut object["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(new_uid());
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(crate::time::now_seconds());
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
        }
        object["apiVersion"] = json!("v1");
        object["kind"] = json!(resource.kind());
        self.objects.insert(key, object.clone());
        self.record(resource, ns, ChangeType::Added, object.clone(), None);
        Ok(object)
    }

    pub fn get(&self, resource: Resource, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(resource, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a type, in one namespace or all, and the resourceVersion of the listing.
    pub fn list(&self, resource: Resource, ns: Option<&str>) -> (Vec<Value>, u64) {
        let items = self
            .objects
            .iter()
            .filter(|((r, n, _), _)| *r == resource && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect();
        (items, self.rv)
    }

    /// Changes an object in place; a change that changes nothing makes no event, as on a real server.
    pub fn update(
        &mut self,
        resource: Resource,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let key = (resource, ns.to_string(), name.to_string());
        let old = self.objects.get(&key)?.clone();
        let mut new = old.clone();
        f(&mut new);
        if new == old {
            return Some(old);
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, new.clone());
        self.record(resource, ns, ChangeType::Modified, new.clone(), Some(old));
        Some(new)
    }

    pub fn remove(&mut self, resource: Resource, ns: &str, name: &str) -> Option<Value> {
        let key = (resource, ns.to_string(), name.to_string());
        let mut old = self.objects.remove(&key)?;
        let rv = self.next_rv();
        old["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(resource, ns, ChangeType::Deleted, old.clone(), None);
        if let Some(uid) = old["metadata"]["uid"].as_str() {
            crate::gc::owner_removed(self, ns, uid);
        }
        Some(old)
    }

    /// Whether an object of any type in `ns` has this uid.
    pub fn uid_exists(&self, ns: &str, uid: &str) -> bool {
        self.objects
            .iter()
            .any(|((_, n, _), v)| n == ns && v["metadata"]["uid"].as_str() == Some(uid))
    }

    /// Starts a watch. No version (or "0") starts with a synthetic ADDED per object, as a real
    /// server does; a version replays the history after it, or is refused when trimmed away.
    pub fn watch(&self, resource: Resource, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let rx = self.tx.subscribe();
        let backlog = match from {
            None | Some(0) => self
                .objects
                .iter()
                .filter(|((r, _, _), _)| *r == resource)
                .map(|((r, ns, _), v)| {
                    let rv = v["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    Arc::new(Change {
                        rv,
                        resource: *r,
                        namespace: ns.clone(),
                        kind: ChangeType::Added,
                        object: v.clone(),
                        old: None,
                    })
                })
                .collect(),
            Some(n) => {
                if n < self.compacted {
                    return Err(ApiError::expired(n, self.compacted + 1));
                }
                self.history
                    .iter()
                    .filter(|c| c.rv > n && c.resource == resource)
                    .cloned()
                    .collect()
            }
        };
        Ok(WatchStart {
            backlog,
            rx,
            rv: self.rv,
        })
    }
}

/// A random RFC 4122 version 4 UUID, as the API server gives every object.
pub(crate) fn new_uid() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// `generateName`'s suffix: five characters from the API server's alphabet (no vowels, no
/// look-alikes).
pub(crate) fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}
