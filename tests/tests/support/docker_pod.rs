//! A job pod of kiln-runner's Kubernetes executor run by a real container runtime: a Docker
//! daemon stands in for the kubelet, so the pod's images, users, capabilities, seccomp and
//! AppArmor profiles, `/proc` masking and volumes are the ones a node would apply. What a
//! kubelet does and Docker does not (scheduling, probes, resources) is left out; the fake
//! cluster's tests cover the lifecycle.
//!
//! The translation, field by field:
//! - the pod's network is the host's (`--network host`), as one network namespace shared by
//!   the pod's containers would be;
//! - `runAsUser`/`runAsGroup` → `--user`, `fsGroup` → `--group-add` plus volumes owned by
//!   that group (setgid, as the kubelet makes them);
//! - `capabilities` → `--cap-drop`/`--cap-add`, `allowPrivilegeEscalation: false` →
//!   `no-new-privileges`, `privileged`, `readOnlyRootFilesystem` → `--read-only`;
//! - `seccompProfile`/`appArmorProfile` `Unconfined` → `seccomp=unconfined` /
//!   `apparmor=unconfined` (`RuntimeDefault` is Docker's default profile), `procMount:
//!   Unmasked` → `systempaths=unconfined`;
//! - `env` values with `$(NAME)` expanded as the kubelet does, `secretKeyRef`s from the
//!   pod's Secret; `emptyDir`, `secret` (its items and modes) and `persistentVolumeClaim`
//!   volumes as host directories;
//! - init containers run to completion in order (a failure stops the pod), then the
//!   containers start; `exec` is `docker exec -i` with stdin held open, as the executor's
//!   exec holds it.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Container, Pod, Secret, SecurityContext};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A pod whose containers Docker runs; they are removed on drop.
pub struct DockerPod {
    docker: Box<dyn Fn() -> Command + Send + Sync>,
    name: String,
    started: Vec<String>,
    /// The init containers' output (stdout then stderr), by name.
    pub init_logs: BTreeMap<String, String>,
    _volumes: tempfile::TempDir,
}

/// What a container exec printed and how it ended.
pub struct Exec {
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// The exit code.
    pub code: Option<i32>,
}

impl DockerPod {
    /// Makes `pod`'s volumes (`claims`: a host directory per PersistentVolumeClaim name),
    /// runs its init containers to completion and starts its containers. `docker` makes a
    /// `docker` command aimed at the daemon.
    pub fn start(
        docker: impl Fn() -> Command + Send + Sync + 'static,
        pod: &Pod,
        secret: &Secret,
        claims: &BTreeMap<String, PathBuf>,
    ) -> Result<DockerPod, String> {
        let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
        let name = pod.metadata.name.clone().ok_or("the pod has no name")?;
        let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let secret_data = secret_data(secret);
        let mut volumes = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let host = if v.empty_dir.is_some() {
                let d = dir.path().join(&v.name);
                std::fs::create_dir(&d).map_err(|e| e.to_string())?;
                // The kubelet makes an emptyDir 0777 (2777 under fsGroup).
                own_dir(&d, fs_group, 0o777)?;
                d
            } else if let Some(s) = &v.secret {
                let d = dir.path().join(&v.name);
                std::fs::create_dir(&d).map_err(|e| e.to_string())?;
                own_dir(&d, fs_group, 0o755)?;
                for item in s.items.iter().flatten() {
                    let value = secret_data.get(&item.key).ok_or_else(|| {
                        format!("volume {}: no key {} in the Secret", v.name, item.key)
                    })?;
                    let f = d.join(&item.path);
                    std::fs::write(&f, value).map_err(|e| e.to_string())?;
                    let mode = item.mode.or(s.default_mode).unwrap_or(0o644) as u32;
                    own(&f, fs_group, mode, 0o040)?;
                }
                d
            } else if let Some(c) = &v.persistent_volume_claim {
                let d = claims
                    .get(&c.claim_name)
                    .cloned()
                    .ok_or_else(|| format!("no host directory for claim {}", c.claim_name))?;
                // The kubelet gives a claim's root to fsGroup, group-writable.
                own_dir(&d, fs_group, 0o775)?;
                d
            } else {
                return Err(format!(
                    "volume {}: only emptyDir, secret and PVC are run here",
                    v.name
                ));
            };
            volumes.insert(v.name.clone(), host);
        }
        let mut p = DockerPod {
            docker: Box::new(docker),
            name,
            started: Vec::new(),
            init_logs: BTreeMap::new(),
            _volumes: dir,
        };
        let pod_sc = spec.security_context.as_ref();
        for c in spec.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let args = p.run_args(c, pod_sc, &volumes, &secret_data, !sidecar)?;
            let out = p.docker_output(&args)?;
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            p.init_logs.insert(c.name.clone(), log.clone());
            if !out.status.success() {
                return Err(format!(
                    "init container {} failed ({}):\n{log}",
                    c.name, out.status
                ));
            }
        }
        for c in &spec.containers {
            let args = p.run_args(c, pod_sc, &volumes, &secret_data, false)?;
            let out = p.docker_output(&args)?;
            if !out.status.success() {
                return Err(format!(
                    "container {} did not start: {}",
                    c.name,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(p)
    }

    fn container_name(&self, c: &str) -> String {
        format!("{}-{c}", self.name)
    }

    fn docker_output(&self, args: &[String]) -> Result<Output, String> {
        (self.docker)()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker {}: {e}", args.join(" ")))
    }

    /// `docker run` arguments for `c`: to completion (`wait`) or detached.
    fn run_args(
        &mut self,
        c: &Container,
        pod_sc: Option<&k8s_openapi::api::core::v1::PodSecurityContext>,
        volumes: &BTreeMap<String, PathBuf>,
        secret_data: &BTreeMap<String, Vec<u8>>,
        wait: bool,
    ) -> Result<Vec<String>, String> {
        let name = self.container_name(&c.name);
        let mut a: Vec<String> = vec!["run".into(), "--name".into(), name.clone()];
        a.push(if wait {
            "--rm".into()
        } else {
            "--detach".into()
        });
        a.extend(["--network".into(), "host".into()]);
        let sc = c.security_context.clone().unwrap_or_default();
        let uid = sc.run_as_user.or(pod_sc.and_then(|p| p.run_as_user));
        let gid = sc.run_as_group.or(pod_sc.and_then(|p| p.run_as_group));
        if let Some(uid) = uid {
            a.extend(["--user".into(), format!("{uid}:{}", gid.unwrap_or(0))]);
        }
        if let Some(g) = pod_sc.and_then(|p| p.fs_group) {
            a.extend(["--group-add".into(), g.to_string()]);
        }
        a.extend(security_args(&sc));
        let mut env: Vec<(String, String)> = Vec::new();
        for e in c.env.iter().flatten() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => expand(v, &env),
                (None, Some(from)) => {
                    let r = from
                        .secret_key_ref
                        .as_ref()
                        .ok_or_else(|| format!("env {}: only secretKeyRef is run here", e.name))?;
                    let v = secret_data
                        .get(&r.key)
                        .ok_or_else(|| format!("env {}: no key {} in the Secret", e.name, r.key))?;
                    String::from_utf8(v.clone()).map_err(|e| e.to_string())?
                }
                (None, None) => String::new(),
            };
            env.retain(|(k, _)| k != &e.name);
            env.push((e.name.clone(), value));
        }
        for (k, v) in &env {
            a.extend(["--env".into(), format!("{k}={v}")]);
        }
        for m in c.volume_mounts.iter().flatten() {
            let mut host = volumes
                .get(&m.name)
                .cloned()
                .ok_or_else(|| format!("mount of unknown volume {}", m.name))?;
            if let Some(sp) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                host = host.join(sp);
                std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
            }
            let ro = if m.read_only == Some(true) { ":ro" } else { "" };
            a.extend([
                "--volume".into(),
                format!("{}:{}{ro}", host.display(), m.mount_path),
            ]);
        }
        if let Some(w) = &c.working_dir {
            a.extend(["--workdir".into(), w.clone()]);
        }
        let command = c.command.clone().unwrap_or_default();
        if let Some(first) = command.first() {
            a.extend(["--entrypoint".into(), first.clone()]);
        }
        a.push(
            c.image
                .clone()
                .ok_or_else(|| format!("container {} has no image", c.name))?,
        );
        a.extend(command.into_iter().skip(1));
        a.extend(c.args.clone().unwrap_or_default());
        if !wait {
            self.started.push(name);
        }
        Ok(a)
    }

    /// Runs `argv` in container `c` as the executor's exec does: stdin open until it ends.
    pub fn exec(&self, c: &str, argv: &[String]) -> Result<Exec, String> {
        let mut child = (self.docker)()
            .args(["exec", "-i", &self.container_name(c)])
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("docker exec: {e}"))?;
        // Closing stdin is the executor's cancel signal: held until the stage ends.
        let stdin = child.stdin.take();
        let mut err_pipe = child.stderr.take().ok_or("no stderr")?;
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .ok_or("no stdout")?
            .read_to_string(&mut stdout)
            .map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        drop(stdin);
        Ok(Exec {
            stdout,
            stderr: err_reader.join().unwrap_or_default(),
            code: status.code(),
        })
    }
}

impl Drop for DockerPod {
    fn drop(&mut self) {
        for c in &self.started {
            let _ = (self.docker)()
                .args(["rm", "--force", "--volumes", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Docker's flags for a container's security context.
fn security_args(sc: &SecurityContext) -> Vec<String> {
    let mut a = Vec::new();
    let opt = |a: &mut Vec<String>, v: &str| a.extend(["--security-opt".into(), v.to_owned()]);
    if let Some(caps) = &sc.capabilities {
        for c in caps.drop.iter().flatten() {
            a.extend(["--cap-drop".into(), c.clone()]);
        }
        for c in caps.add.iter().flatten() {
            a.extend(["--cap-add".into(), c.clone()]);
        }
    }
    if sc.allow_privilege_escalation == Some(false) {
        opt(&mut a, "no-new-privileges");
    }
    if sc.privileged == Some(true) {
        a.push("--privileged".into());
    }
    if sc.read_only_root_filesystem == Some(true) {
        a.push("--read-only".into());
    }
    if sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()) == Some("Unconfined") {
        opt(&mut a, "seccomp=unconfined");
    }
    if sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()) == Some("Unconfined") {
        opt(&mut a, "apparmor=unconfined");
    }
    if sc.proc_mount.as_deref() == Some("Unmasked") {
        opt(&mut a, "systempaths=unconfined");
    }
    a
}

/// `$(NAME)` replaced by an earlier variable's value and `$$` by `$`, as the kubelet expands
/// a container's env values; an unknown `$(NAME)` stays as written.
fn expand(v: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some((name, r)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, val)) => out.push_str(val),
                None => out.push_str(&format!("$({name})")),
            }
            rest = r;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        m.insert(k.clone(), v.clone().into_bytes());
    }
    m
}

/// A volume's directory (setgid) or a Secret's file (group-readable) as the kubelet's
/// `SetVolumeOwnership` leaves it under `fs_group`: owned by root and that group, with
/// `fs_group_bits` added to `mode`.
fn own(path: &Path, fs_group: Option<i64>, mode: u32, fs_group_bits: u32) -> Result<(), String> {
    let mode = match fs_group {
        Some(g) => {
            std::os::unix::fs::chown(path, Some(0), Some(g as u32)).map_err(|e| e.to_string())?;
            mode | fs_group_bits
        }
        None => mode,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

/// [`own`] for a volume's directory.
fn own_dir(dir: &Path, fs_group: Option<i64>, mode: u32) -> Result<(), String> {
    own(dir, fs_group, mode, 0o2000)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn env_values_expand_as_the_kubelet_does() {
        let env = vec![("HOME".to_owned(), "/home/kiln".to_owned())];
        assert_eq!(expand("$(HOME)/x", &env), "/home/kiln/x");
        assert_eq!(
            expand("keeps $$(HOME) literal", &env),
            "keeps $(HOME) literal"
        );
        assert_eq!(expand("$(NOPE) $x", &env), "$(NOPE) $x");
    }
}
