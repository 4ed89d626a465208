//! The state the server, the kubelet and the test's handle share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::sync::watch;

use crate::faults::{Faults, RequestRecord};
use crate::kubelet::Kubelet;
use crate::resource::Resource;
use crate::store::Store;

/// One fake cluster's state.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Faults>,
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Who the bearer token authenticates as, for 403 messages.
    pub user: Mutex<String>,
    pub token: String,
    /// Bumped to break every open watch.
    pub watch_break: watch::Sender<u64>,
    pub bookmark_interval: Mutex<Duration>,
    pub kubelet: Kubelet,
    pub addr: std::net::SocketAddr,
}

impl Shared {
    /// Changes a pod through its typed form; `None` when it does not exist.
    pub fn update_pod(
        self: &Arc<Self>,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Pod),
    ) -> Option<Pod> {
        let v = self
            .store
            .lock()
            .unwrap()
            .update(Resource::Pods, ns, name, |v| {
                if let Ok(mut pod) = serde_json::from_value::<Pod>(v.clone()) {
                    f(&mut pod);
                    if let Ok(mut nv) = serde_json::to_value(&pod) {
                        nv["apiVersion"] = Value::from("v1");
                        nv["kind"] = Value::from("Pod");
                        *v = nv;
                    }
                }
            })?;
        serde_json::from_value(v).ok()
    }

    pub fn get_pod(&self, ns: &str, name: &str) -> Option<Pod> {
        let v = self.store.lock().unwrap().get(Resource::Pods, ns, name)?;
        serde_json::from_value(v).ok()
    }
}
