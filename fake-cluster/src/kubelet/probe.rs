//! Startup probes: exec in the container, or a TCP connect inside the pod's network namespace.

use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::{exec_command, ContainerProc};
use super::procs::signal_group;
use crate::shared::Shared;

/// One probe attempt: `Err` carries the failure as the kubelet words it in the Unhealthy event.
async fn attempt(
    shared: &Arc<Shared>,
    holder: u32,
    proc: &ContainerProc,
    c: &Container,
    probe: &Probe,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &probe.exec {
        let mut cmd = exec_command(proc, e.command.as_deref().unwrap_or_default());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| e.to_string())?;
        let pid = child.id().unwrap_or(0);
        shared.kubelet.procs.add(pid);
        return match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => {
                signal_group(pid, rustix::process::Signal::KILL);
                Err(format!("command timed out after {}s", timeout.as_secs()))
            }
        };
    }
    if let Some(t) = &probe.tcp_socket {
        let port = match &t.port {
            IntOrString::Int(p) => *p as u16,
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port as u16)
                .ok_or_else(|| format!("unknown port name {name}"))?,
        };
        let host = t.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let (tx, rx) = tokio::sync::oneshot::channel();
        // setns changes the calling thread only: a thread of its own, never one of tokio's pools.
        std::thread::spawn(move || {
            let r = (|| -> Result<(), String> {
                let ns = std::fs::File::open(format!("/proc/{holder}/ns/net"))
                    .map_err(|e| e.to_string())?;
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| e.to_string())?;
                let addr: std::net::SocketAddr = format!("{host}:{port}")
                    .parse()
                    .map_err(|e: std::net::AddrParseError| e.to_string())?;
                std::net::TcpStream::connect_timeout(&addr, timeout)
                    .map(drop)
                    .map_err(|e| format!("dial tcp {addr}: connect: {e}"))
            })();
            let _ = tx.send(r);
        });
        return rx.await.unwrap_or_else(|_| Err("probe thread died".into()));
    }
    Err("only exec and tcpSocket probes are supported by the fake kubelet".into())
}

/// Runs a startup probe until it passes, or fails `failureThreshold` times in a row; every
/// failure is reported through `on_failure`.
pub(crate) async fn run_startup(
    shared: &Arc<Shared>,
    holder: u32,
    proc: &ContainerProc,
    c: &Container,
    probe: &Probe,
    mut on_failure: impl FnMut(&str),
) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(
        probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
    ))
    .await;
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let mut failures = 0;
    loop {
        if proc.exit.borrow().is_some() {
            return Err("container exited".into());
        }
        match attempt(shared, holder, proc, c, probe).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures += 1;
                on_failure(&e);
                if failures >= threshold {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}
