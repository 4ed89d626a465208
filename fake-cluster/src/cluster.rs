//! The test's handle: start a cluster, get a client or a kubeconfig, turn the knobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::net::TcpListener;

use crate::error::Error;
use crate::faults::{Faults, RequestRecord};
use crate::kubelet::images::ImageSource;
use crate::kubelet::procs::live_processes;
use crate::kubelet::{events, Kubelet};
use crate::shared::Shared;
use crate::store::Store;

/// How a cluster starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run pods (true), or leave every pod Pending with no node (false).
    pub kubelet: bool,
    /// How many changes watches can replay from; older resourceVersions get 410 Expired.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The user the token authenticates as (named in 403 messages).
    pub user: String,
    /// The kubelet's retry delay: image pull back-off, a missing secret, an unschedulable pod.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            kubelet: true,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(2),
            user: "system:serviceaccount:default:kiln-runner".into(),
            backoff: Duration::from_millis(500),
        }
    }
}

/// A running fake cluster: an API server on 127.0.0.1 and a kubelet. Dropping it kills every
/// process it started (SIGKILL to each process group), removes its pods' links and its node
/// address from the host, and removes its files.
pub struct FakeCluster {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

const TOKEN: &str = "kiln-fake-cluster-token";

impl FakeCluster {
    /// Starts a cluster with the default options.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(Options::default()).await
    }

    /// Starts a cluster.
    pub async fn start_with(options: Options) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let root = tempfile::Builder::new()
            .prefix("kiln-fake-cluster-")
            .tempdir()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_limit)),
            faults: Mutex::new(Faults::default()),
            requests: Mutex::default(),
            user: Mutex::new(options.user.clone()),
            token: TOKEN.into(),
            watch_break: tokio::sync::watch::channel(0).0,
            bookmark_interval: Mutex::new(options.bookmark_interval),
            kubelet: Kubelet::new(
                root.path().to_path_buf(),
                options.kubelet,
                options.backoff,
                addr.port(),
            ),
            addr,
        });
        // Before any pod, so that a test can listen on the node address first; a failure
        // (no `ip`, no privilege) fails pod creation, not the API server.
        shared.kubelet.net.add().await;
        let server = tokio::spawn(crate::server::serve(listener, shared.clone()));
        Ok(Self {
            shared,
            server,
            _root: root,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// An address of the host that every pod reaches (the node's, and the pods' `status.hostIP`):
    /// a host service listening on 0.0.0.0 or on this address answers pods there. It stays the
    /// same for the cluster's life, and no other live cluster on the host has it.
    pub fn node_ip(&self) -> String {
        self.shared.kubelet.net.node_ip.to_string()
    }

    /// The bearer token the server accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// A kubeconfig for this cluster (context `fake`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user:\n    token: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url(),
            self.shared.token
        )
    }

    /// Writes the kubeconfig to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig_yaml())?;
        Ok(())
    }

    /// A kube client for this cluster (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().unwrap_or_default();
        let mut config = kube::Config::new(uri);
        config.auth_info.token = Some(self.shared.token.clone().into());
        kube::Client::try_from(config)
            .unwrap_or_else(|e| panic!("a kube client for the fake cluster: {e}"))
    }

    /// Refuses a verb (`create`, `get`, `list`, `watch`, `delete`, `deletecollection`, or `*`) on a
    /// resource (`pods`, `secrets`, `events`, `pods/log`, `pods/exec`) with RBAC's 403.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.shared.faults.lock().unwrap().deny(verb, resource);
    }

    /// Takes back a `deny`.
    pub fn allow(&self, verb: &str, resource: &str) {
        self.shared.faults.lock().unwrap().allow(verb, resource);
    }

    /// The next `times` requests to exactly this path (any method) fail with this HTTP status.
    pub fn fail_next(&self, path: &str, times: usize, code: u16) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .fail_next(None, path, times, code);
    }

    /// As `fail_next`, for one method only.
    pub fn fail_next_method(&self, method: &str, path: &str, times: usize, code: u16) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .fail_next(Some(method), path, times, code);
    }

    /// Breaks every open watch mid-stream (the connection drops without a clean end).
    pub fn break_watches(&self) {
        self.shared.watch_break.send_modify(|g| *g += 1);
    }

    /// Keeps only the last `limit` changes for watches to replay.
    pub fn set_history_limit(&self, limit: usize) {
        self.shared.store.lock().unwrap().set_history_limit(limit);
    }

    /// Drops the whole watch history: any watch from an older resourceVersion gets 410.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().resource_version()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Changes a pod's status by hand (a MODIFIED event); false when the pod does not exist.
    pub fn set_pod_status(&self, ns: &str, name: &str, f: impl FnOnce(&mut PodStatus)) -> bool {
        self.shared
            .update_pod(ns, name, |p| {
                f(p.status.get_or_insert_with(Default::default))
            })
            .is_some()
    }

    /// A pod as stored.
    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        self.shared.get_pod(ns, name)
    }

    /// Records an event about a pod (`type_` `Normal` or `Warning`), as the kubelet would.
    pub fn add_event(&self, ns: &str, pod: &str, type_: &str, reason: &str, message: &str) -> bool {
        match self.shared.get_pod(ns, pod) {
            Some(p) => {
                events::record(&self.shared, &p, None, type_, reason, message, "kubelet");
                true
            }
            None => false,
        }
    }

    /// Turns the kubelet on or off for pods created from now on.
    pub fn set_kubelet_enabled(&self, on: bool) {
        self.shared.kubelet.enabled.store(on, Ordering::SeqCst);
    }

    /// Whether the node takes pods; when not, pods stay Pending with PodScheduled=False.
    pub fn set_node_schedulable(&self, on: bool) {
        self.shared.kubelet.schedulable.store(on, Ordering::SeqCst);
    }

    /// Sets a node label (for `nodeSelector`); the node starts with kubernetes.io/os=linux,
    /// kubernetes.io/arch=amd64 and kubernetes.io/hostname=fake-node.
    pub fn set_node_label(&self, key: &str, value: &str) {
        self.shared
            .kubelet
            .node_labels
            .lock()
            .unwrap()
            .insert(key.into(), value.into());
    }

    /// Says what an image name runs on (the default is the host's filesystem).
    pub fn set_image(&self, image: &str, source: ImageSource) {
        self.shared
            .kubelet
            .images
            .lock()
            .unwrap()
            .insert(image.into(), source);
    }

    /// Makes a PersistentVolumeClaim exist, backed by a directory.
    pub fn add_pvc(&self, ns: &str, name: &str, dir: impl Into<PathBuf>) {
        self.shared
            .kubelet
            .pvcs
            .lock()
            .unwrap()
            .insert((ns.into(), name.into()), dir.into());
    }

    /// Everything a container has written to stdout and stderr so far.
    pub fn container_log(&self, ns: &str, pod: &str, container: &str) -> Option<String> {
        self.shared
            .kubelet
            .log(ns, pod, container)
            .map(|l| l.text())
    }

    /// Every process group the cluster has started (pod holders, containers, execs, probes).
    pub fn process_groups(&self) -> Vec<u32> {
        self.shared.kubelet.procs.all()
    }

    /// The processes still alive among them (zombies excluded).
    pub fn running_processes(&self) -> Vec<u32> {
        live_processes(&self.process_groups())
    }

    /// Waits up to `limit` until `namespace` holds no pod and no Secret and no process of
    /// the kubelet runs: what a client that cleans up after itself leaves. The error says
    /// what is left (with the processes' command lines).
    pub async fn wait_until_clean(&self, namespace: &str, limit: Duration) -> Result<(), String> {
        use k8s_openapi::api::core::v1::Secret;
        use kube::api::ListParams;
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client(), namespace);
        let secrets: kube::Api<Secret> = kube::Api::namespaced(self.client(), namespace);
        let deadline = std::time::Instant::now() + limit;
        loop {
            let lp = ListParams::default();
            let p = pods.list(&lp).await.map_err(|e| e.to_string())?.items.len();
            let s = secrets
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            let procs = self.running_processes();
            if p == 0 && s == 0 && procs.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                let cmds: Vec<String> = procs
                    .iter()
                    .map(|pid| {
                        std::fs::read(format!("/proc/{pid}/cmdline"))
                            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                            .unwrap_or_default()
                    })
                    .collect();
                return Err(format!(
                    "left behind: {p} pods, {s} secrets, processes {cmds:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        // Links before holders: a dead holder's link name may pass to another pod.
        self.shared.kubelet.detach_all_blocking();
        self.shared.kubelet.procs.kill_all();
        // The processes die asynchronously; wait briefly so the directory removal that follows
        // does not race their last writes.
        let groups = self.shared.kubelet.procs.all();
        for _ in 0..200 {
            if live_processes(&groups).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Before the server lets go of its port: a cluster started on the same port afterwards
        // gets the same node address, which this must not take from it.
        self.shared.kubelet.net.remove();
        self.server.abort();
    }
}
