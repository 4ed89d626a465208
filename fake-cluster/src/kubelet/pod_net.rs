//! A pod's link to the host, as a CNI plugin makes it (Calico's layout): a veth pair with `eth0`
//! in the pod holding the pod's /32 and a default route via a link-local gateway, and on the host
//! `kv<index>` with a /32 route back to the pod.
//!
//! The host does not forward for pods: their traffic to the node address is delivered locally.
//! Pod-to-pod traffic would need the host's `ip_forward`, which the fake leaves as it finds it.

use std::net::Ipv4Addr;

use super::iproute;
use super::node_net::NodeNet;

/// The gateway every pod routes through; no host interface has it, as with Calico.
const GATEWAY: &str = "169.254.1.1";
/// The host side's MAC, the same on every pod's link (Calico's choice too): the pod can then be
/// told it once, without asking.
const HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";
/// How many taken addresses to skip before giving up.
const ATTEMPTS: usize = 256;

/// A pod's address and the host side of its link.
pub(crate) struct PodNet {
    pub ip: Ipv4Addr,
    pub host_link: String,
}

/// Wires the network namespace of `holder` to the host; its `lo` comes up too.
pub(crate) async fn attach(node: &NodeNet, holder: u32) -> Result<PodNet, String> {
    node.ready()?;
    let pid = holder.to_string();
    for _ in 0..ATTEMPTS {
        let (ip, index) = node.next_pod_ip();
        let link = format!("kv{index:04x}");
        // Creating the link is the claim on the address: another cluster, in this process or
        // another, holding it makes this fail with EEXIST.
        let add = [
            "link", "add", &link, "address", HOST_MAC, "type", "veth", "peer", "name", "eth0",
            "netns", &pid,
        ];
        match iproute::run(None, &add).await {
            Ok(()) => {}
            Err(e) if iproute::exists(&e) => continue,
            Err(e) => return Err(e),
        }
        match host_side(&link, ip).await {
            Ok(()) => {}
            Err(e) => {
                let _ = iproute::run(None, &["link", "del", &link]).await;
                // A /32 route to this address that is not ours: someone else's, skip it.
                if iproute::exists(&e) {
                    continue;
                }
                return Err(e);
            }
        }
        pod_side(holder, ip).await?;
        return Ok(PodNet {
            ip,
            host_link: link,
        });
    }
    Err(format!(
        "no free pod address after {ATTEMPTS} tries in 10.88.0.0/16"
    ))
}

async fn host_side(link: &str, ip: Ipv4Addr) -> Result<(), String> {
    // Proxy ARP answers the pod's question for the gateway, as with Calico, when the host
    // forwards; the pod's permanent entry for it (below) makes that unnecessary otherwise.
    sysctl(&format!("conf/{link}/proxy_arp"), "1")?;
    sysctl(&format!("neigh/{link}/proxy_delay"), "0")?;
    iproute::batch(
        None,
        &[
            format!("link set {link} up"),
            format!("route add {ip}/32 dev {link} scope link"),
        ],
    )
    .await
}

async fn pod_side(holder: u32, ip: Ipv4Addr) -> Result<(), String> {
    iproute::batch(
        Some(holder),
        &[
            "link set lo up".into(),
            format!("addr add {ip}/32 dev eth0"),
            "link set eth0 up".into(),
            format!("route add default via {GATEWAY} dev eth0 onlink"),
            format!("neigh replace {GATEWAY} lladdr {HOST_MAC} dev eth0 nud permanent"),
        ],
    )
    .await
}

fn sysctl(key: &str, value: &str) -> Result<(), String> {
    let path = format!("/proc/sys/net/ipv4/{key}");
    std::fs::write(&path, value).map_err(|e| format!("{path}: {e}"))
}

/// Deletes a pod's link (both ends, with the route). Called while the pod's holder still lives,
/// so that the name cannot have passed to another pod since.
pub(crate) async fn detach(host_link: &str) {
    let _ = iproute::run(None, &["link", "del", host_link]).await;
}

/// As `detach`, blocking: for `Drop`.
pub(crate) fn detach_blocking(host_link: &str) {
    let _ = iproute::run_blocking(&["link", "del", host_link]);
}
