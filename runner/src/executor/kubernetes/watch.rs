//! One shared watch of kiln's pods per namespace. Jobs subscribe to their pod by name
//! instead of each polling the API server, so 50 running jobs cost one watch, and a
//! dropped watch is resumed (or relisted after `410 Gone`) by kube's watcher for all of
//! them at once.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What the watch knows of one pod.
#[derive(Debug, Clone, Default)]
pub enum PodSeen {
    /// Not in any event yet (just created, or the watch is still listing).
    #[default]
    NotYet,
    /// Its latest state.
    Present(Arc<Pod>),
    /// Deleted (or gone from a relist).
    Gone,
}

type Senders = Arc<Mutex<HashMap<String, watch::Sender<PodSeen>>>>;

/// The watch of one namespace.
pub struct PodWatch {
    senders: Senders,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatch {
    /// Starts watching pods matching `selector` in `namespace`.
    pub fn start(client: kube::Client, namespace: &str, selector: &str) -> Self {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let senders: Senders = Arc::default();
        let cfg = watcher::Config::default().labels(selector);
        let task = tokio::spawn(run(api, cfg, senders.clone(), namespace.to_owned()));
        Self { senders, task }
    }

    /// Follows the pod called `name`; subscribe before creating it so no event is missed.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<PodSeen> {
        let mut map = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_owned())
            .or_insert_with(|| watch::channel(PodSeen::NotYet).0)
            .subscribe()
    }

    /// Stops following `name` (the job is over).
    pub fn forget(&self, name: &str) {
        let mut map = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name);
    }
}

fn publish(senders: &Senders, name: &str, seen: PodSeen) {
    let map = senders.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = map.get(name) {
        tx.send_replace(seen);
    }
}

async fn run(api: Api<Pod>, cfg: watcher::Config, senders: Senders, namespace: String) {
    let stream = watcher::watcher(api, cfg).default_backoff();
    futures_util::pin_mut!(stream);
    // Pods seen during a relist: the ones followed but not seen were deleted while the
    // watch was down.
    let mut listed: Option<HashSet<String>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                publish(&senders, &name, PodSeen::Present(Arc::new(pod)));
            }
            Ok(watcher::Event::Delete(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                publish(&senders, &name, PodSeen::Gone);
            }
            Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Some(l) = &mut listed {
                    l.insert(name.clone());
                }
                publish(&senders, &name, PodSeen::Present(Arc::new(pod)));
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(l) = listed.take() {
                    let map = senders.lock().unwrap_or_else(|e| e.into_inner());
                    for (name, tx) in map.iter() {
                        // A pod created after the list began is NotYet, not gone.
                        let was_present = matches!(*tx.borrow(), PodSeen::Present(_));
                        if was_present && !l.contains(name) {
                            tx.send_replace(PodSeen::Gone);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(namespace = %namespace, error = %crate::error_chain(&e), "pod watch interrupted; resuming");
            }
        }
    }
}
