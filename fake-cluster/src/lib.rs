//! A strict in-process fake Kubernetes API server, with a fake kubelet that runs pods as real
//! processes in namespaces, for testing kiln-runner's Kubernetes executor without a cluster.
//!
//! ```no_run
//! # async fn demo() {
//! let cluster = kiln_fake_cluster::FakeCluster::start().await.unwrap();
//! let client = cluster.client();
//! # drop(client);
//! # }
//! ```
//!
//! # The pod network
//!
//! Each pod gets what a CNI plugin would give it (Calico's layout): its own network namespace
//! with a veth pair to the host, `eth0` holding the pod's address (`status.podIP`, a /32 from
//! 10.88.0.0/16) and a default route via the link-local gateway 169.254.1.1; on the host, a link
//! `kv<index>` with proxy ARP and a /32 route back to the pod. [`FakeCluster::node_ip`] is an
//! address of the host every pod reaches (also `status.hostIP`), one per live cluster, added to
//! the host's `lo` while the cluster lives: a host service listening on 0.0.0.0 or on that
//! address answers pods there, as a registry beside a real cluster would.
//!
//! What it is not: there are no Services and no cluster DNS (a pod keeps its image's
//! `resolv.conf`, whose servers it may well not reach); `hostAliases`, written to the pod's
//! `/etc/hosts`, are the way names resolve, e.g. a registry's name to the node address. A pod's `localhost` is its own, shared by its containers only. The host does not
//! forward for pods (the fake leaves `ip_forward` as it finds it), so pod-to-pod traffic and
//! traffic to other machines are not promised. Networking needs root and iproute2's `ip`;
//! without them the API server works but pod sandboxes fail (`FailedCreatePodSandBox`).

mod cluster;
mod error;
mod faults;
mod gc;
mod kubelet;
mod patch;
mod resource;
mod selector;
mod server;
mod shared;
mod status;
mod store;
mod time;
mod validate;

pub use cluster::{FakeCluster, Options};
pub use error::Error;
pub use faults::RequestRecord;
pub use kubelet::images::ImageSource;
pub use kubelet::procs::live_processes;
