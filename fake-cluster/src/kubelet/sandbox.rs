//! The pod sandbox: a holder process owning the pod's network (linked to the host, see
//! `pod_net`) and UTS namespaces, its /etc/hosts, and its volumes as directories.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use tokio::process::Command;

use super::{pod_net, PodRuntime};
use crate::resource::Resource;
use crate::shared::Shared;

/// The pod's /etc/hosts, as the kubelet writes it (host aliases last).
pub(crate) fn hosts_file(pod: &Pod, ip: &str) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    s += &format!("{ip}\t{name}\n");
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        s += "\n# Entries added by HostAliases.\n";
        for a in aliases {
            s += &format!("{}\t{}\n", a.ip, a.hostnames.unwrap_or_default().join("\t"));
        }
    }
    s
}

async fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Starts the holder and sets up its namespaces, networked to the host; returns its pid.
pub(crate) async fn create(
    shared: &Arc<Shared>,
    rt: &Arc<PodRuntime>,
    pod: &Pod,
) -> Result<u32, String> {
    std::fs::create_dir_all(&rt.dir).map_err(|e| e.to_string())?;
    let mut child = Command::new("/usr/bin/unshare")
        .args(["--net", "--uts", "--", "/usr/bin/sleep", "infinity"])
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id().ok_or("the sandbox holder exited at once")?;
    shared.kubelet.procs.add(pid);
    *rt.holder.lock().unwrap() = Some(pid);
    // Reaped by its own task, so killing it never leaves a zombie behind.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let own = std::fs::read_link("/proc/self/ns/net").ok();
    for _ in 0..400 {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        if theirs.is_some() && theirs != own {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let net = pod_net::attach(&shared.kubelet.net, pid).await?;
    let ip = net.ip.to_string();
    *rt.host_link.lock().unwrap() = Some(net.host_link);
    let _ = rt.ip.set(ip.clone());
    std::fs::write(rt.dir.join("hosts"), hosts_file(pod, &ip)).map_err(|e| e.to_string())?;
    let t = pid.to_string();
    let host = pod.metadata.name.clone().unwrap_or_default();
    let host: String = host.chars().take(63).collect();
    run(Command::new("/usr/bin/nsenter").args(["-t", &t, "-u", "/usr/bin/hostname", &host]))
        .await?;
    Ok(pid)
}

/// Writes a secret volume's files. With an `fsGroup`, the kubelet gives each file that
/// group and adds group read, so a non-root container of the group can read a 0400 key.
fn write_secret_volume(
    dir: &Path,
    secret: &Secret,
    vol: &k8s_openapi::api::core::v1::SecretVolumeSource,
    fs_group: Option<i64>,
) -> Result<(), String> {
    let data = secret.data.clone().unwrap_or_default();
    let default_mode = vol.default_mode.unwrap_or(0o644) as u32;
    let write = |rel: &str, bytes: &[u8], mode: u32| -> Result<(), String> {
        let path = dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
        let mode = match fs_group {
            Some(g) => {
                let gid = u32::try_from(g).map_err(|e| e.to_string())?;
                std::os::unix::fs::chown(&path, None, Some(gid)).map_err(|e| e.to_string())?;
                mode | 0o040
            }
            None => mode,
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())
    };
    match &vol.items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => write(
                        &item.path,
                        &v.0,
                        item.mode.map(|m| m as u32).unwrap_or(default_mode),
                    )?,
                    None if vol.optional.unwrap_or(false) => {}
                    None => {
                        return Err(format!("references non-existent secret key: {}", item.key))
                    }
                }
            }
        }
        _ => {
            for (k, v) in &data {
                write(k, &v.0, default_mode)?;
            }
        }
    }
    Ok(())
}

/// Makes every volume a directory (or finds it); the error is a `FailedMount` message.
pub(crate) fn prepare_volumes(
    shared: &Arc<Shared>,
    rt: &Arc<PodRuntime>,
    pod: &Pod,
) -> Result<BTreeMap<String, (PathBuf, bool)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group);
    let mut out = BTreeMap::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let dir = rt.dir.join("volumes").join(&v.name);
        let fail = |m: String| format!("MountVolume.SetUp failed for volume \"{}\" : {m}", v.name);
        if v.empty_dir.is_some() {
            std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
            // An emptyDir is world-writable, as the kubelet makes it.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| fail(e.to_string()))?;
            out.insert(v.name.clone(), (dir, false));
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let secret = shared
                .store
                .lock()
                .unwrap()
                .get(Resource::Secrets, &ns, &name);
            let secret: Option<Secret> = secret.and_then(|s| serde_json::from_value(s).ok());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
            match secret {
                Some(secret) => write_secret_volume(&dir, &secret, s, fs_group).map_err(fail)?,
                None if s.optional.unwrap_or(false) => {}
                None => return Err(fail(format!("secret \"{name}\" not found"))),
            }
            // Secret volumes are always mounted read-only.
            out.insert(v.name.clone(), (dir, true));
        } else if let Some(h) = &v.host_path {
            let path = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or_default() {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&path).map_err(|e| fail(e.to_string()))?
                }
                "Directory" if !path.is_dir() => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a directory",
                        h.path
                    )))
                }
                "File" if !path.is_file() => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a file",
                        h.path
                    )))
                }
                _ => {}
            }
            out.insert(v.name.clone(), (path, false));
        } else if let Some(c) = &v.persistent_volume_claim {
            let dir = shared
                .kubelet
                .pvcs
                .lock()
                .unwrap()
                .get(&(ns.clone(), c.claim_name.clone()))
                .cloned();
            let dir = dir.ok_or_else(|| {
                fail(format!(
                    "persistentvolumeclaim \"{}\" not found",
                    c.claim_name
                ))
            })?;
            out.insert(v.name.clone(), (dir, c.read_only.unwrap_or(false)));
        } else {
            return Err(fail(
                "this volume type is not supported by the fake kubelet".into(),
            ));
        }
    }
    Ok(out)
}
