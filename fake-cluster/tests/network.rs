//! The pod network: each pod has its own address on `eth0`, reaches the host at the node
//! address, and keeps its localhost to itself.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kiln_fake_cluster::FakeCluster;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Creates pod `name` running `script` under bash in one container `main`; `extra` adds to
/// the pod's spec, and its `env` goes to the container.
async fn run(c: &FakeCluster, name: &str, script: &str, extra: Value) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(c.client(), "default");
    let mut extra = extra.as_object().cloned().unwrap_or_default();
    let env = extra.remove("env").unwrap_or(json!([]));
    let container = json!({
        "name": "main", "image": "host", "command": ["/bin/bash", "-c", script], "env": env,
    });
    let mut spec = json!({"restartPolicy": "Never", "containers": [container]});
    if let Some(spec) = spec.as_object_mut() {
        spec.extend(extra);
    }
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// Waits for the pod to finish; its phase and its log.
async fn finished(c: &FakeCluster, name: &str) -> (Pod, String) {
    let start = Instant::now();
    loop {
        if let Some(p) = c.pod("default", name) {
            if matches!(phase(&p).as_str(), "Succeeded" | "Failed") {
                let log = c.container_log("default", name, "main").unwrap_or_default();
                return (p, log);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name} never finished: {:#?}",
                p.status
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers one connection: reads a line, replies `hello <line>`; returns the line.
fn serve_once(listener: TcpListener) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        let mut conn = BufReader::new(conn);
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        let line = line.trim().to_string();
        conn.write_all(format!("hello {line}\n").as_bytes())
            .await
            .unwrap();
        line
    })
}

fn talk(ip: &str, port: u16, say: &str) -> String {
    format!("exec 3<>/dev/tcp/{ip}/{port} || exit 7; echo {say} >&3; head -n1 <&3")
}

#[tokio::test]
async fn a_host_service_answers_pods_at_the_node_address() {
    let c = FakeCluster::start().await.unwrap();
    let node = c.node_ip();
    let on_node = TcpListener::bind(format!("{node}:0")).await.unwrap();
    let on_all = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (p1, p2) = (
        on_node.local_addr().unwrap().port(),
        on_all.local_addr().unwrap().port(),
    );
    let (s1, s2) = (serve_once(on_node), serve_once(on_all));
    // The second by name, as a job would reach a registry on the host.
    let script = format!(
        "{}; {}",
        talk(&node, p1, "one"),
        talk("registry", p2, "two")
    );
    let aliases = json!({"hostAliases": [{"ip": node, "hostnames": ["registry"]}]});
    run(&c, "client", &script, aliases).await;
    let (p, log) = finished(&c, "client").await;
    assert_eq!(phase(&p), "Succeeded", "{log}");
    assert_eq!(log, "hello one\nhello two\n");
    assert_eq!(s1.await.unwrap(), "one");
    assert_eq!(s2.await.unwrap(), "two");
}

#[tokio::test]
async fn a_pods_localhost_is_neither_the_hosts_nor_another_pods() {
    let c = FakeCluster::start().await.unwrap();
    let host_only = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host_only.local_addr().unwrap().port();
    // The listener pod answers on its own localhost until the other pod has tried it.
    run(
        &c,
        "listener",
        &format!("busybox nc -l -p {port} -e echo mine & sleep 3; exec 3<>/dev/tcp/127.0.0.1/{port} && head -n1 <&3"),
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    run(
        &c,
        "prober",
        &format!("(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo reached || echo refused"),
        json!({}),
    )
    .await;
    let (_, prober) = finished(&c, "prober").await;
    assert_eq!(prober, "refused\n");
    let (_, listener) = finished(&c, "listener").await;
    assert_eq!(listener, "mine\n");
    drop(host_only);
}

#[tokio::test]
async fn the_pod_ip_is_eth0s_and_the_host_ip_is_the_node_address() {
    let c = FakeCluster::start().await.unwrap();
    let script =
        "ip -4 -o addr show dev eth0 | awk '{print $4}'; ip route show default; echo $HOST_IP";
    let env = json!({"env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]});
    run(&c, "p", script, env).await;
    let (p, log) = finished(&c, "p").await;
    let status = p.status.unwrap();
    let ip = status.pod_ip.unwrap();
    assert!(ip.starts_with("10.88."), "{ip}");
    assert_eq!(
        log,
        format!(
            "{ip}/32\ndefault via 169.254.1.1 dev eth0 onlink \n{}\n",
            c.node_ip()
        )
    );
    assert_eq!(status.host_ip, Some(c.node_ip()));
}

/// The `ip` command's output on the host.
fn host_ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn on_lo(ip: &str) -> bool {
    host_ip(&["-4", "-o", "addr", "show", "dev", "lo"]).contains(&format!(" {ip}/32 "))
}

#[tokio::test]
async fn links_and_node_addresses_live_as_long_as_their_pods_and_clusters() {
    let a = FakeCluster::start().await.unwrap();
    let b = FakeCluster::start().await.unwrap();
    assert_ne!(a.node_ip(), b.node_ip());
    assert!(on_lo(&a.node_ip()) && on_lo(&b.node_ip()));

    let pods = run(&a, "p", "sleep 30", json!({})).await;
    let start = Instant::now();
    let ip = loop {
        if let Some(ip) = a.pod("default", "p").and_then(|p| p.status?.pod_ip) {
            break ip;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let route = host_ip(&["-o", "route", "show", &format!("{ip}/32")]);
    let link = route.split_whitespace().nth(2).unwrap().to_string();
    assert!(link.starts_with("kv"), "{route}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{link}/proxy_arp")).unwrap(),
        "1\n"
    );
    // With a grace period the pod leaves the API only once its sandbox is gone.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let start = Instant::now();
    while a.pod("default", "p").is_some() {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(host_ip(&["-o", "route", "show", &format!("{ip}/32")]), "");
    assert_eq!(host_ip(&["-o", "link", "show", "dev", &link]), "");

    // A cluster dropped with a pod still running takes its link and address along, and
    // leaves the other cluster's.
    run(&a, "q", "sleep 30", json!({})).await;
    let start = Instant::now();
    let ip = loop {
        if let Some(ip) = a.pod("default", "q").and_then(|p| p.status?.pod_ip) {
            break ip;
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let node_a = a.node_ip();
    drop(a);
    assert!(!on_lo(&node_a));
    assert!(on_lo(&b.node_ip()));
    assert_eq!(host_ip(&["-o", "route", "show", &format!("{ip}/32")]), "");
}
