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
