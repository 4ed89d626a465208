//! The fake kubelet: schedules each created pod onto the one fake node and runs it with real
//! processes in namespaces of its own.

pub(crate) mod container;
pub(crate) mod events;
pub(crate) mod images;
mod iproute;
mod lifecycle;
pub(crate) mod logbuf;
mod node_net;
mod pod_net;
mod podstatus;
mod probe;
pub(crate) mod procs;
mod sandbox;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::shared::Shared;
use container::ContainerProc;
use images::ImageSource;
use logbuf::LogBuf;
pub(crate) use node_net::NodeNet;
use procs::ProcessRegistry;

type PodKey = (String, String);

/// One pod the kubelet runs.
pub(crate) struct PodRuntime {
    pub dir: PathBuf,
    /// The pod's address, once its sandbox is networked.
    pub ip: OnceLock<String>,
    /// The host side of the pod's link, until the pod is torn down.
    pub host_link: Mutex<Option<String>>,
    pub holder: Mutex<Option<u32>>,
    pub containers: Mutex<HashMap<String, ContainerProc>>,
    pub logs: Mutex<HashMap<String, Arc<LogBuf>>>,
    pub execs: Mutex<HashSet<u32>>,
    /// The grace period, once the pod is being deleted.
    pub stop: watch::Sender<Option<u64>>,
}

impl PodRuntime {
    /// The pod's address ("" until its sandbox is networked).
    pub fn ip(&self) -> &str {
        self.ip.get().map_or("", String::as_str)
    }
}

/// The kubelet's state and the knobs tests turn.
pub(crate) struct Kubelet {
    pub enabled: AtomicBool,
    pub schedulable: AtomicBool,
    pub node_labels: Mutex<BTreeMap<String, String>>,
    pub images: Mutex<HashMap<String, ImageSource>>,
    pub pulled: Mutex<BTreeSet<String>>,
    pub pvcs: Mutex<HashMap<PodKey, PathBuf>>,
    pub pods: Mutex<HashMap<PodKey, Arc<PodRuntime>>>,
    pub procs: ProcessRegistry,
    pub root: PathBuf,
    pub backoff: Mutex<Duration>,
    pub net: NodeNet,
    next_pod: AtomicU32,
}

impl Kubelet {
    pub fn new(root: PathBuf, enabled: bool, backoff: Duration, api_port: u16) -> Self {
        let node_labels = [
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/hostname", events::NODE),
            ("kubernetes.io/os", "linux"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Self {
            enabled: AtomicBool::new(enabled),
            schedulable: AtomicBool::new(true),
            node_labels: Mutex::new(node_labels),
            images: Mutex::default(),
            pulled: Mutex::default(),
            pvcs: Mutex::default(),
            pods: Mutex::default(),
            procs: ProcessRegistry::default(),
            root,
            backoff: Mutex::new(backoff),
            net: NodeNet::new(api_port),
            next_pod: AtomicU32::new(0),
        }
    }

    pub fn has_pod(&self, ns: &str, name: &str) -> bool {
        self.pods
            .lock()
            .unwrap()
            .contains_key(&(ns.to_string(), name.to_string()))
    }

    fn runtime(&self, ns: &str, name: &str) -> Option<Arc<PodRuntime>> {
        self.pods
            .lock()
            .unwrap()
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn container_proc(&self, ns: &str, pod: &str, container: &str) -> Option<ContainerProc> {
        self.runtime(ns, pod)?
            .containers
            .lock()
            .unwrap()
            .get(container)
            .cloned()
    }

    pub fn log(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<LogBuf>> {
        self.runtime(ns, pod)?
            .logs
            .lock()
            .unwrap()
            .get(container)
            .cloned()
    }

    pub fn add_exec(&self, ns: &str, pod: &str, pgid: u32) {
        if let Some(rt) = self.runtime(ns, pod) {
            rt.execs.lock().unwrap().insert(pgid);
        }
    }

    pub fn image(&self, name: &str) -> ImageSource {
        self.images
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or(ImageSource::Host)
    }

    /// Deletes the host side of every pod's link; the pods' holders must still be alive.
    pub fn detach_all_blocking(&self) {
        for rt in self.pods.lock().unwrap().values() {
            if let Some(link) = rt.host_link.lock().unwrap().take() {
                pod_net::detach_blocking(&link);
            }
        }
    }

    pub fn backoff(&self) -> Duration {
        *self.backoff.lock().unwrap()
    }
}

/// A pod was created: the kubelet takes it unless the test turned the kubelet off.
pub(crate) fn pod_created(shared: &Arc<Shared>, ns: &str, name: &str) {
    if !shared.kubelet.enabled.load(Ordering::SeqCst) {
        return;
    }
    let n = shared.kubelet.next_pod.fetch_add(1, Ordering::SeqCst);
    let rt = Arc::new(PodRuntime {
        dir: shared.kubelet.root.join(format!("{ns}_{name}_{n}")),
        ip: OnceLock::new(),
        host_link: Mutex::default(),
        holder: Mutex::new(None),
        containers: Mutex::default(),
        logs: Mutex::default(),
        execs: Mutex::default(),
        stop: watch::channel(None).0,
    });
    shared
        .kubelet
        .pods
        .lock()
        .unwrap()
        .insert((ns.to_string(), name.to_string()), rt.clone());
    let shared = shared.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    tokio::spawn(async move { lifecycle::pod_task(shared, ns, name, rt).await });
}

/// A pod is being deleted with this grace period (0: it is already gone from the API).
pub(crate) fn pod_deleted(shared: &Arc<Shared>, ns: &str, name: &str, grace: u64) {
    if let Some(rt) = shared.kubelet.runtime(ns, name) {
        rt.stop
            .send_modify(|s| *s = Some(s.map_or(grace, |g| g.min(grace))));
    }
}
