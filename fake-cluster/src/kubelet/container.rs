//! One container as processes: its environment, its root and mounts, and the command line that
//! runs it in the pod's namespaces.
//!
//! A container is `nsenter -t HOLDER -n -u` (the pod's network and UTS namespaces) then
//! `unshare --mount` (its own mount namespace) running a generated script that mounts an overlay
//! root (lower: the host's `/` or the image's rootfs), binds /proc, /dev, /sys, the volumes and the
//! pod's /etc/hosts, moves that root over `/` and ends in `exec nsenter --root --wdns [-S -G] --
//! command`: every step execs the next, so the spawned pid is the container's process and leads
//! its process group.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use tokio::process::Command;
use tokio::sync::watch;

use crate::resource::Resource;
use crate::shared::Shared;

/// A started container, as exec and termination need it.
#[derive(Clone)]
pub(crate) struct ContainerProc {
    pub pid: u32,
    pub env: Vec<(String, String)>,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    /// The exit code once it has exited (128 + signal for a signal).
    pub exit: watch::Receiver<Option<i32>>,
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    pub container_id: String,
    pub init: bool,
}

/// One bind mount into a container's root.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything needed to start one container.
pub(crate) struct Launch {
    pub dir: PathBuf,
    pub holder: u32,
    pub lower: PathBuf,
    pub mounts: Vec<Mount>,
    pub hosts: PathBuf,
    pub workdir: String,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Resolves `path` inside `root` the way a container runtime does: symlinks (absolute ones
/// included) are followed within `root`, never out of it. Returns the path relative to the root.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> String {
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = root.join(resolved.join("/")).join(&part);
        match std::fs::read_link(&candidate) {
            Ok(target) if hops < 40 => {
                hops += 1;
                if target.is_absolute() {
                    resolved.clear();
                }
                for c in target.components().rev() {
                    if let Component::Normal(n) = c {
                        pending.push(n.to_string_lossy().into_owned());
                    } else if let Component::ParentDir = c {
                        pending.push("..".into());
                    }
                }
            }
            _ => resolved.push(part),
        }
    }
    format!("/{}", resolved.join("/"))
}

/// Expands `$(VAR)` from the container's environment; `$$(` escapes, as the kubelet does.
pub(crate) fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) if env.contains_key(&inner[..end]) => {
                    out.push_str(&env[&inner[..end]]);
                    rest = &inner[end + 1..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn secret(shared: &Arc<Shared>, ns: &str, name: &str) -> Option<Secret> {
    let v = shared
        .store
        .lock()
        .unwrap()
        .get(Resource::Secrets, ns, name)?;
    serde_json::from_value(v).ok()
}

/// The container's environment, or the `CreateContainerConfigError` message that stops it.
pub(crate) fn resolve_env(
    shared: &Arc<Shared>,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |env: &mut BTreeMap<String, String>, k: String, v: String| {
        if !env.contains_key(&k) {
            order.push(k.clone());
        }
        env.insert(k, v);
    };
    set(
        &mut env,
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    set(
        &mut env,
        "HOSTNAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match secret(shared, &ns, &r.name) {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        let key = format!("{}{k}", from.prefix.clone().unwrap_or_default());
                        set(&mut env, key, String::from_utf8_lossy(&v.0).into_owned());
                    }
                }
                None if optional => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match secret(shared, &ns, &r.name) {
                    None if optional => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                    Some(s) => match s.data.unwrap_or_default().get(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else if let Some(f) = &vf.field_ref {
                match f.field_path.as_str() {
                    "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                    "metadata.namespace" => ns.clone(),
                    "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
                    "spec.nodeName" => super::events::NODE.into(),
                    "spec.serviceAccountName" => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    "status.podIP" => pod_ip.into(),
                    "status.hostIP" => shared.kubelet.net.node_ip.to_string(),
                    other => {
                        return Err(format!("unsupported fieldRef {other} in the fake kubelet"))
                    }
                }
            } else {
                return Err(
                    "only secretKeyRef and fieldRef env sources are supported by the fake kubelet"
                        .into(),
                );
            }
        } else {
            expand(e.value.as_deref().unwrap_or_default(), &env)
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = env[&k].clone();
            (k, v)
        })
        .collect())
}

/// The command line (`command` then `args`, `$(VAR)` expanded).
pub(crate) fn argv(c: &Container, env: &[(String, String)]) -> Vec<String> {
    let map: BTreeMap<String, String> = env.iter().cloned().collect();
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, &map))
        .collect()
}

/// Writes the container's start script and spawns it; the ready file appears just before the
/// command is exec'd.
pub(crate) fn spawn(l: &Launch) -> std::io::Result<(tokio::process::Child, PathBuf)> {
    let root = l.dir.join("root");
    let upper = l.dir.join("upper");
    let work = l.dir.join("work");
    let ready = l.dir.join("ready");
    for d in [&root, &upper, &work] {
        std::fs::create_dir_all(d)?;
    }
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let mut s = String::from("set -e\n");
    s += &format!("R={}\n", q(&root));
    s += &format!(
        "/usr/bin/mount -t overlay overlay -o {} \"$R\"\n",
        shell_quote(&format!(
            "lowerdir={},upperdir={},workdir={}",
            l.lower.display(),
            upper.display(),
            work.display()
        ))
    );
    s += "for d in proc dev sys; do /usr/bin/mkdir -p \"$R/$d\"; /usr/bin/mount --rbind \"/$d\" \"$R/$d\"; done\n";
    let mut binds: Vec<Mount> = vec![Mount {
        source: l.hosts.clone(),
        target: resolve_in_root(&l.lower, "/etc/hosts"),
        read_only: false,
    }];
    binds.extend(l.mounts.iter().cloned());
    for m in &binds {
        let target = format!("\"$R\"{}", shell_quote(&m.target));
        if m.source.is_dir() {
            s += &format!("/usr/bin/mkdir -p {target}\n");
        } else {
            s += &format!("/usr/bin/mkdir -p \"$(/usr/bin/dirname {target})\"; [ -e {target} ] || /usr/bin/touch {target}\n");
        }
        s += &format!("/usr/bin/mount --bind {} {target}\n", q(&m.source));
        if m.read_only {
            s += &format!("/usr/bin/mount -o remount,bind,ro {target}\n");
        }
    }
    let wd = resolve_in_root(
        &l.lower,
        if l.workdir.is_empty() {
            "/"
        } else {
            &l.workdir
        },
    );
    s += &format!("/usr/bin/mkdir -p \"$R\"{}\n", shell_quote(&wd));
    s += &format!(": > {}\n", q(&ready));
    let mut ids = String::new();
    if let Some(u) = l.uid {
        ids += &format!(" -S {u} -G {}", l.gid.unwrap_or(0));
    } else if let Some(g) = l.gid {
        ids += &format!(" -G {g}");
    }
    // The root becomes the mount namespace's own (moved over `/`, as switch_root does), not a
    // chroot inside it: the kernel refuses a user namespace to a chrooted process
    // (unshare(CLONE_NEWUSER) is EPERM), and rootless builds in a pod unshare one, as they may
    // under a runtime that pivots. The script's own paths still resolve in the host's root
    // until nsenter chroots to the moved root, which is then the namespace's top mount.
    s += "cd \"$R\"\n/usr/bin/mount --move . /\n";
    s += &format!(
        "exec /usr/bin/nsenter --root=. --wdns={}{ids} -- \"$@\"\n",
        shell_quote(&wd)
    );
    let script = l.dir.join("start.sh");
    std::fs::write(&script, s)?;
    let mut cmd = Command::new("/usr/bin/nsenter");
    cmd.arg("-t")
        .arg(l.holder.to_string())
        .args([
            "-n",
            "-u",
            "--",
            "/usr/bin/unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
        ])
        .arg(&script)
        .args(&l.argv)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok((cmd.spawn()?, ready))
}

/// A command run in a started container's namespaces, root, working directory, user and
/// environment: what exec and exec probes run.
pub(crate) fn exec_command(p: &ContainerProc, argv: &[String]) -> Command {
    let mut cmd = Command::new("/usr/bin/nsenter");
    cmd.arg("-t")
        .arg(p.pid.to_string())
        .args(["-m", "-n", "-u", "--root", "--wd"]);
    if let Some(u) = p.uid {
        cmd.args(["-S", &u.to_string(), "-G", &p.gid.unwrap_or(0).to_string()]);
    } else if let Some(g) = p.gid {
        cmd.args(["-G", &g.to_string()]);
    }
    cmd.arg("--")
        .args(argv)
        .env_clear()
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .process_group(0);
    cmd
}
