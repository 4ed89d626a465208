//! The node's side of the pod network: an address of the host that every pod can reach, and the
//! pod addresses handed out.
//!
//! Both are unique on the host, not just in this process, because clusters in other test
//! processes share the host's network namespace: the node address is derived from the API
//! server's port (which the kernel keeps unique while the cluster lives), and a pod address is
//! claimed by creating the host-side link named after it (see `pod_net`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::iproute;

/// The pods' addresses: 10.88.0.0/16, as a CNI plugin's pool.
const POD_NET: [u8; 2] = [10, 88];
/// The node addresses: 10.89.0.0/16, one per API server port.
const NODE_NET: [u8; 2] = [10, 89];

/// One cluster's node address and pod address counter.
pub(crate) struct NodeNet {
    pub node_ip: Ipv4Addr,
    /// Whether the node address is on the host's `lo` (the error fails pod creation).
    added: Mutex<Option<Result<(), String>>>,
    next_pod: AtomicU32,
}

impl NodeNet {
    pub fn new(api_port: u16) -> Self {
        let [hi, lo] = api_port.to_be_bytes();
        Self {
            node_ip: Ipv4Addr::new(NODE_NET[0], NODE_NET[1], hi, lo),
            added: Mutex::new(None),
            // Clusters start at different /24s so that concurrent ones rarely race for a name.
            next_pod: AtomicU32::new(u32::from(lo) << 8),
        }
    }

    /// Adds the node address to the host's `lo`, so that a service listening on the host's
    /// 0.0.0.0 or on this address answers pods; a failure is kept for pod creation to report.
    pub async fn add(&self) {
        let cidr = format!("{}/32", self.node_ip);
        let r = match iproute::run(None, &["addr", "add", &cidr, "dev", "lo"]).await {
            // A run killed before its cleanup left it; the port, hence the address, is ours now.
            Err(e) if iproute::exists(&e) => Ok(()),
            r => r,
        };
        *self.added.lock().unwrap() = Some(r);
    }

    /// Why pods cannot be networked, if they cannot.
    pub fn ready(&self) -> Result<(), String> {
        match &*self.added.lock().unwrap() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(format!(
                "the node address {} could not be added to the host: {e}",
                self.node_ip
            )),
            None => Err("the node address was never added".into()),
        }
    }

    /// Takes the node address off `lo` again, if this cluster put it there.
    pub fn remove(&self) {
        if let Some(Ok(())) = self.added.lock().unwrap().take() {
            let cidr = format!("{}/32", self.node_ip);
            let _ = iproute::run_blocking(&["addr", "del", &cidr, "dev", "lo"]);
        }
    }

    /// The next candidate pod address and its index in the pool (never the pool's first or
    /// last address, which look like network and broadcast addresses).
    pub fn next_pod_ip(&self) -> (Ipv4Addr, u16) {
        let n = self.next_pod.fetch_add(1, Ordering::SeqCst);
        let index = (n % 0xfffe + 1) as u16;
        let [hi, lo] = index.to_be_bytes();
        (Ipv4Addr::new(POD_NET[0], POD_NET[1], hi, lo), index)
    }
}
