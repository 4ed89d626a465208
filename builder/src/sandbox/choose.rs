//! Which isolation a build's RUN steps get, decided once before the first step: `auto` by what
//! this machine allows, an explicit mode refused at the start (with what the pod needs) when it
//! cannot work here, so a build never fails with EPERM at its first RUN.
//!
//! What a mode needs is tried for real, once per process, in a child cloned into the mode's
//! namespaces: the clone itself (refused by a container's seccomp profile, a missing
//! CAP_SYS_ADMIN, or a sysctl), the id maps (newuidmap), and a new `/proc` (refused in a user
//! namespace when the container's own `/proc` has masked paths, which Docker and Kubernetes
//! add by default).

use super::syscalls::{Mode, Step};
use super::userns::IdMap;
use super::{caps, spawn, Isolation, SandboxError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

/// The isolation a build uses and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// `Chroot`, `Rootless` or `Unconfined`, never `Auto`.
    pub isolation: Isolation,
    /// Why, for the build log.
    pub reason: String,
}

impl Isolation {
    /// The `--isolation` value that names this mode.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::Rootless => "rootless",
            Isolation::Chroot => "chroot",
            Isolation::Unconfined => "none",
        }
    }
}

/// Decides the isolation for `requested`: an explicit mode if it can work here, `auto` as
/// `chroot` for root where namespaces can be made, `none` for root in a container where they
/// cannot (kaniko's pod), `rootless` for other users where user namespaces work.
pub fn choose(requested: Isolation) -> Result<Chosen, SandboxError> {
    // Root in a user namespace (kiln's own, see `enter_own_namespace`) has no more right than
    // its user on the host: its steps are rootless ones.
    let root = crate::layer::owners::host_root();
    let unavailable = |isolation: Isolation, why: String| SandboxError::IsolationUnavailable {
        mode: isolation.name(),
        why,
    };
    let chosen = |isolation: Isolation, reason: &str| Chosen {
        isolation,
        reason: reason.to_string(),
    };
    match requested {
        Isolation::Unconfined => {
            super::check_unconfined_allowed()?;
            Ok(chosen(Isolation::Unconfined, "asked for"))
        }
        Isolation::Chroot if !root => Err(unavailable(
            Isolation::Chroot,
            "it needs root; as another user use --isolation rootless".into(),
        )),
        Isolation::Chroot => match probed(Mode::Chroot) {
            Ok(()) => Ok(chosen(Isolation::Chroot, "asked for")),
            Err(why) => Err(unavailable(Isolation::Chroot, why.to_string())),
        },
        Isolation::Rootless => match probed(Mode::Rootless) {
            Ok(()) => Ok(chosen(Isolation::Rootless, "asked for")),
            Err(why) => Err(unavailable(Isolation::Rootless, why.to_string())),
        },
        Isolation::Auto if root => match probed(Mode::Chroot) {
            Ok(()) => Ok(chosen(
                Isolation::Chroot,
                "auto: kiln is root and may make namespaces",
            )),
            Err(why) => match super::check_unconfined_allowed() {
                Ok(()) => Ok(Chosen {
                    isolation: Isolation::Unconfined,
                    reason: format!(
                        "auto: {}; RUN steps run in this container itself, as kaniko's do",
                        why.cause
                    ),
                }),
                Err(_) => Err(unavailable(
                    Isolation::Auto,
                    format!(
                        "{why}, and kiln is not in a container, where it could run steps \
                         without namespaces (KILN_FORCE_UNCONFINED=1 runs them on this machine)"
                    ),
                )),
            },
        },
        Isolation::Auto => match probed(Mode::Rootless) {
            Ok(()) if crate::layer::owners::in_user_namespace() => Ok(chosen(
                Isolation::Rootless,
                "auto: kiln is root only in a user namespace",
            )),
            Ok(()) => Ok(chosen(
                Isolation::Rootless,
                "auto: kiln is not root and may make user namespaces",
            )),
            Err(why) => Err(unavailable(Isolation::Auto, why.to_string())),
        },
    }
}

/// Why a mode cannot work here, and what would make it work.
#[derive(Debug, Clone)]
struct Refusal {
    cause: String,
    remedy: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cause, self.remedy)
    }
}

/// The answer of [`probe`] for `mode`, found once per process.
fn probed(mode: Mode) -> &'static Result<(), Refusal> {
    static CHROOT: OnceLock<Result<(), Refusal>> = OnceLock::new();
    static ROOTLESS: OnceLock<Result<(), Refusal>> = OnceLock::new();
    match mode {
        Mode::Chroot => CHROOT.get_or_init(|| probe(Mode::Chroot)),
        _ => ROOTLESS.get_or_init(|| probe(Mode::Rootless)),
    }
}

fn probe(mode: Mode) -> Result<(), Refusal> {
    let refusal = |cause: String| Refusal {
        cause,
        remedy: "kiln needs a writable temporary directory (TMPDIR)".into(),
    };
    let dir = tempfile::Builder::new()
        .prefix("kiln-probe-")
        .tempdir()
        .map_err(|e| refusal(format!("cannot make a probe directory: {e}")))?;
    let path = |name: &str| -> Result<CString, Refusal> {
        let p = dir.path().join(name);
        std::fs::create_dir(&p).map_err(|e| refusal(format!("{}: {e}", p.display())))?;
        CString::new(p.as_os_str().as_bytes()).map_err(|e| refusal(e.to_string()))
    };
    let mut flags =
        (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;
    let mut steps = vec![
        Step::MakeRootPrivate,
        Step::MountProc {
            target: path("proc")?,
        },
    ];
    let idmap = if mode == Mode::Rootless {
        let map = IdMap::for_current_user();
        if map.needs_namespace() {
            flags |= libc::CLONE_NEWUSER as u64;
        }
        // A rootless step on the host's network gets the host's /sys bound read-only.
        steps.push(Step::Bind {
            source: c"/sys".to_owned(),
            target: path("sys")?,
            recursive: true,
            readonly: true,
            nodev: true,
        });
        Some(map)
    } else {
        None
    };
    steps.push(Step::Exit);
    spawn::probe(&steps, flags, idmap.as_ref()).map_err(|e| explain(mode, &e))
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// What a refusal means here and what the pod needs instead.
fn explain(mode: Mode, e: &SandboxError) -> Refusal {
    let errno = match e {
        SandboxError::Spawn(io) => io.raw_os_error(),
        _ => None,
    };
    let instead = if mode == Mode::Rootless {
        "or use `--isolation none`"
    } else {
        "or use `--isolation none` in a container"
    };
    let r = |cause: &str, remedy: String| Refusal {
        cause: cause.to_string(),
        remedy,
    };
    match (mode, e, errno) {
        // The clone itself was refused.
        (Mode::Rootless, _, Some(_))
            if read_sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") =>
        {
            r(
                "user namespaces are disabled on this machine (user.max_user_namespaces = 0)",
                format!("raise it on the node, {instead}"),
            )
        }
        (Mode::Rootless, _, Some(_))
            if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref()
                == Some("0") =>
        {
            r(
                "user namespaces are refused to users other than root on this machine \
                 (kernel.unprivileged_userns_clone = 0)",
                format!("set it to 1 on the node, {instead}"),
            )
        }
        (Mode::Rootless, _, Some(libc::EPERM)) if caps::filtered() => r(
            "user namespaces are refused by this container's seccomp profile",
            format!(
                "run with `seccompProfile: Unconfined` (docker: `--security-opt \
                 seccomp=unconfined`) {instead}"
            ),
        ),
        (Mode::Rootless, _, Some(libc::EPERM)) => r(
            "user namespaces are refused here (there is no seccomp filter: an AppArmor or \
             SELinux policy, or a limit on nested user namespaces)",
            format!(
                "run with `appArmorProfile: Unconfined` (docker: `--security-opt \
                 apparmor=unconfined`) {instead}"
            ),
        ),
        (Mode::Chroot, _, Some(libc::EPERM)) => {
            if !caps::effective(rustix::thread::CapabilitySet::SYS_ADMIN) {
                r(
                    "namespaces are refused to root without CAP_SYS_ADMIN (a container's \
                     default capabilities)",
                    format!("run privileged or with CAP_SYS_ADMIN, {instead}"),
                )
            } else if caps::filtered() {
                r(
                    "namespaces are refused by this container's seccomp profile",
                    format!("run with `seccompProfile: Unconfined`, {instead}"),
                )
            } else {
                r(
                    "namespaces are refused here",
                    format!("({}) {instead}", crate::error_chain::chain_line(e)),
                )
            }
        }
        (_, SandboxError::Setup { step, .. }, _) if step.starts_with("mount proc") => r(
            if mode == Mode::Rootless {
                "a new /proc cannot be mounted in a user namespace: this container's /proc \
                 has masked paths (Docker's and Kubernetes' default)"
            } else {
                "a new /proc cannot be mounted here"
            },
            format!(
                "run with `procMount: Unmasked` (docker: `--security-opt \
                 systempaths=unconfined`) {instead} ({})",
                crate::error_chain::chain_line(e)
            ),
        ),
        (_, SandboxError::UserNamespace(detail), _)
            if detail.contains("uid_map") && setuid("newuidmap") =>
        {
            r(
                "newuidmap may not write the id maps",
                format!(
                    "({detail}): a setuid-root newuidmap runs as root, which may not map \
                     another user's namespace without CAP_SYS_ADMIN; give newuidmap and \
                     newgidmap file capabilities instead (`chmod u-s`, `setcap \
                     cap_setuid=ep newuidmap`, `setcap cap_setgid=ep newgidmap`, as BuildKit's \
                     rootless image does), or remove the user's /etc/subuid range to map only \
                     root"
                ),
            )
        }
        _ => r(
            &format!("{} namespaces cannot be set up here", name(mode)),
            crate::error_chain::chain_line(e),
        ),
    }
}

/// Whether `tool` (found in PATH) is setuid.
fn setuid(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/bin:/bin".into())
        .split(':')
        .filter_map(|d| std::fs::metadata(std::path::Path::new(d).join(tool)).ok())
        .next()
        .is_some_and(|m| m.permissions().mode() & 0o4000 != 0)
}

fn name(mode: Mode) -> &'static str {
    match mode {
        Mode::Chroot => "chroot",
        Mode::Rootless => "rootless",
        Mode::Unconfined => "none",
    }
}
