//! rootless mode: `build` runs kiln's image as uid 1000 with no privilege, no capability and
//! no way to gain any; kiln isolates RUN steps itself.
//!
//! What each `isolation` needs of the pod (see `builder/src/sandbox/`):
//! - `rootless` (and `auto`, which is `rootless` for a non-root user): kiln unshares a user
//!   namespace and, inside it, mount/PID/IPC/UTS ones, mounts an overlay and a fresh `/proc`.
//!   The runtime's default seccomp profile refuses `unshare(CLONE_NEWUSER)` without
//!   CAP_SYS_ADMIN and its default AppArmor profile refuses `mount`, so both are
//!   `Unconfined`; the kernel refuses a new `/proc` where the container's `/proc` is partly
//!   masked, so `procMount: Unmasked`, which the API server allows only in a pod with its own
//!   user namespace (`hostUsers: false`, Kubernetes 1.33 user-namespaced pods). No capability
//!   is needed: the user namespace gives kiln its own. With `allowPrivilegeEscalation: false`
//!   the setuid `newuidmap` cannot help, so only uid 1000 maps into kiln's namespace (as 0).
//! - `none` (kaniko's way): no namespaces; kiln changes root into each step's tree and runs
//!   it as the image's user, which takes root in the container (as kaniko's pod runs): `build`
//!   runs as uid 0, still not privileged and without escalation, with only
//!   [`NONE_CAPABILITIES`] (all within PodSecurity `baseline`) and the runtime's default
//!   seccomp profile. As uid 1000 it could not `chroot` or give a step's files their owners.

use super::env::{plain, set};
use super::secret::SecretData;
use super::volumes::{cache, empty_dir, mount, secret_items};
use super::Parts;
use crate::config::kubernetes::{KubernetesConfig, DEFAULT_KILN_IMAGE};
use crate::gitlab::JobResponse;
use crate::job::plan::JobVar;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{AppArmorProfile, Capabilities, SeccompProfile, SecurityContext};

/// The user `build` (and `clone`) run as unless `pod_security_context.run_as_user` says.
pub const BUILD_UID: i64 = 1000;
/// Where the shared cache volume is mounted.
pub const CACHE_DIR: &str = "/kiln/cache";
/// kiln's cache directory in it (`KILN_CACHE_DIR`): kiln makes it 0700 as the build user. The
/// volume's root is the cluster's (root's, group-writable with an fsGroup), which kiln could
/// not make private.
pub const KILN_CACHE_DIR: &str = "/kiln/cache/kiln";
/// The registry credentials (`DOCKER_CONFIG`, holding `config.json`).
pub const DOCKER_CONFIG_DIR: &str = "/kiln/docker";
/// kiln's home: the image has no writable one for uid 1000.
pub const HOME_DIR: &str = "/home/kiln";

/// The docker `config.json` for the job's registry: `DOCKER_AUTH_CONFIG` as GitLab users set
/// it, else `CI_REGISTRY_USER`/`CI_REGISTRY_PASSWORD` for `CI_REGISTRY`.
pub(super) fn docker_config(vars: &[JobVar]) -> Option<String> {
    let get = |k: &str| {
        vars.iter()
            .rev()
            .find(|v| v.key == k)
            .map(|v| v.value.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(c) = get("DOCKER_AUTH_CONFIG") {
        return Some(c.to_owned());
    }
    let (reg, user, pass) = (
        get("CI_REGISTRY")?,
        get("CI_REGISTRY_USER")?,
        get("CI_REGISTRY_PASSWORD")?,
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    Some(serde_json::json!({ "auths": { reg: { "auth": auth } } }).to_string())
}

/// The capabilities `build` keeps with `isolation = "none"`: Docker's default set without
/// `NET_RAW`, as kiln's own sandbox gives RUN steps (changing root, setting the owners and
/// modes of a step's files, switching to the step's user, making its `/dev/null` and the like).
pub const NONE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Whether `isolation` needs user namespaces.
fn uses_userns(isolation: &str) -> bool {
    matches!(isolation, "rootless" | "auto")
}

/// Fills `parts` for rootless mode.
pub(super) fn shape(
    job: &JobResponse,
    k: &KubernetesConfig,
    vars: &[JobVar],
    secret_name: &str,
    data: &mut SecretData,
    parts: &mut Parts,
) {
    let image = k.image.clone().unwrap_or_else(|| DEFAULT_KILN_IMAGE.into());
    if !job.image.name.is_empty() && job.image.name != image {
        parts.warnings.push(format!(
            "image {:?} ignored: rootless builds run kiln's image {image:?}",
            job.image.name
        ));
    }
    if k.privileged {
        parts
            .warnings
            .push("privileged = true ignored: a rootless pod runs nothing privileged".into());
    }
    let isolation = k.isolation.clone().unwrap_or_else(|| "rootless".into());
    let userns = uses_userns(&isolation);
    let uid = k.pod_security_context.run_as_user.unwrap_or(BUILD_UID);
    let gid = k.pod_security_context.run_as_group.unwrap_or(uid);
    parts.fs_group = Some(k.pod_security_context.fs_group.unwrap_or(gid));
    parts.run_as = Some((uid, gid));
    if userns {
        parts.host_users = Some(false);
    }

    for (key, value) in [
        ("KILN_MODE", "rootless"),
        ("KILN_ISOLATION", isolation.as_str()),
        ("HOME", HOME_DIR),
    ] {
        set(&mut parts.env, plain(key, value));
    }
    parts.volumes.push(empty_dir("kiln-home"));
    parts.build_mounts.push(mount("kiln-home", HOME_DIR, false));
    if let Some(c) = &k.cache_volume {
        parts.volumes.push(cache("kiln-cache", c));
        parts
            .build_mounts
            .push(mount("kiln-cache", CACHE_DIR, false));
        set(&mut parts.env, plain("KILN_CACHE_DIR", KILN_CACHE_DIR));
    }
    if let Some(config) = docker_config(vars) {
        let key = data.put("", "docker-config.json", config.as_bytes());
        parts.volumes.push(secret_items(
            "kiln-docker-config",
            secret_name,
            &[(key, "config.json".into(), 0o440)],
        ));
        parts
            .build_mounts
            .push(mount("kiln-docker-config", DOCKER_CONFIG_DIR, true));
        set(&mut parts.env, plain("DOCKER_CONFIG", DOCKER_CONFIG_DIR));
    }
    let unconfined = isolation == "none";
    let b = &mut parts.build;
    b.image = Some(image);
    b.security_context = Some(SecurityContext {
        run_as_user: Some(if unconfined { 0 } else { uid }),
        run_as_group: Some(if unconfined { 0 } else { gid }),
        run_as_non_root: Some(!unconfined),
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: unconfined.then(|| NONE_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: if userns {
                "Unconfined"
            } else {
                "RuntimeDefault"
            }
            .into(),
            localhost_profile: None,
        }),
        app_armor_profile: userns.then(|| AppArmorProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        }),
        proc_mount: userns.then(|| "Unmasked".into()),
        ..Default::default()
    });
}
