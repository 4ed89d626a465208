//! Runs one Dockerfile `RUN` step's process in an isolated root.
//!
//! The parent reads the root first (users, the program, mount points; see `prepare.rs`), turns
//! the run into a list of steps (`syscalls.rs`, checked by unit tests without root), and clones a
//! child into new mount, PID, IPC and UTS namespaces (plus network and user ones when asked).
//! The child mounts the overlay, `/proc`, a small `/dev`, read-only `/sys` and the host's
//! resolv.conf, hosts and a hostname file, pivots into the root, sets its ids and execs the
//! program as PID 1 (`child.rs`). Mount points missing from the image are put in an extra lower
//! layer, so the upper directory ends up with exactly the step's changes.

mod caps;
mod child;
mod choose;
mod own_namespace;
mod pids;
mod prepare;
mod seccomp;
mod spawn;
mod syscalls;
mod userns;
pub mod users;

pub use choose::{choose, Chosen};
pub use own_namespace::{enter_own_namespace, Entered, ENV as OWN_NAMESPACE_ENV};
pub use pids::DEFAULT_PIDS_LIMIT;
pub use prepare::DEFAULT_PATH;
pub use seccomp::SeccompError;
pub use users::{resolve_group, resolve_user, Ids, UserError};

use std::path::PathBuf;
use syscalls::Mode;

/// The root a step's process sees: made by the snapshotter, mounted by the sandbox.
pub use crate::snapshot::RootFs;

/// The process's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// How the process is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// For [`run`]: `Chroot` when kiln runs as root, else `Rootless`. A build resolves it first
    /// with [`choose`], which also tries what the machine allows.
    #[default]
    Auto,
    /// Namespaces inside a user namespace (no root needed).
    Rootless,
    /// Namespaces as the real root user (buildah's "chroot" isolation).
    Chroot,
    /// No namespaces, no root change (kaniko's way; only inside a container).
    Unconfined,
}

/// A host path mounted into the root (`RUN --mount`); never part of the step's changes.
#[derive(Debug, Clone)]
pub struct BindMount {
    /// Host file or directory.
    pub source: PathBuf,
    /// Path inside the root (relative ones are taken from the workdir).
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// One process to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The root.
    pub rootfs: RootFs,
    /// The final argv (shell form already wrapped by the caller).
    pub argv: Vec<String>,
    /// The image ENV and build args; a default PATH and the user's HOME are added if absent.
    pub env: Vec<(String, String)>,
    /// Working directory, created (root-owned, 0755) if missing.
    pub workdir: String,
    /// Dockerfile USER: "", "name", "uid", "name:group", "uid:gid".
    pub user: String,
    /// Network.
    pub network: Network,
    /// UTS hostname (also in /etc/hostname).
    pub hostname: String,
    /// Extra mounts.
    pub mounts: Vec<BindMount>,
    /// Confinement.
    pub isolation: Isolation,
    /// At most this many processes (a cgroup's `pids.max`), where kiln can make cgroups.
    pub pids_limit: Option<u32>,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// What a run produced besides output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// How the process ended.
    pub exit: ExitKind,
}

/// Why a process could not be run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Overlay cannot be mounted here (use a directory root and a tree diff instead).
    #[error("overlay not supported here: {detail}")]
    OverlayUnsupported {
        /// What the kernel said.
        detail: String,
    },
    /// A step of setting up the sandbox failed.
    #[error("sandbox: {step}{detail}")]
    Setup {
        /// The step (`mount proc on /tmp/x/proc`).
        step: String,
        /// The error.
        source: std::io::Error,
        /// More from the kernel, if any.
        detail: String,
    },
    /// `argv[0]` is not an executable file in the image.
    #[error("{program}: executable file not found in the image ({searched})")]
    ProgramNotFound {
        /// `argv[0]`.
        program: String,
        /// The path or PATH searched.
        searched: String,
    },
    /// No argv.
    #[error("nothing to run: empty argv")]
    EmptyArgv,
    /// USER names something the image does not have.
    #[error(transparent)]
    User(#[from] UserError),
    /// Unconfined runs outside a container would change the host.
    #[error(
        "isolation \"none\" refused: kiln is not running inside a container \
         (no /.dockerenv, /run/.containerenv or KUBERNETES_SERVICE_HOST); \
         set KILN_FORCE_UNCONFINED=1 to run steps directly on this machine"
    )]
    UnconfinedRefused,
    /// The isolation asked for (or none that `auto` may pick) cannot work here.
    #[error("isolation {mode:?} cannot work here: {why}")]
    IsolationUnavailable {
        /// The `--isolation` value.
        mode: &'static str,
        /// Why, and what the pod needs.
        why: String,
    },
    /// A combination this sandbox does not do.
    #[error("{0}")]
    Unsupported(String),
    /// A mount target does not fit its source.
    #[error("mount target {path}: {reason}")]
    MountTarget {
        /// The target inside the root.
        path: String,
        /// Why.
        reason: String,
    },
    /// The user namespace cannot be set up as needed.
    #[error("user namespace: {0}")]
    UserNamespace(String),
    /// A file the sandbox reads or makes.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// Starting or waiting for the process failed.
    #[error("sandbox: {0}")]
    Spawn(std::io::Error),
    /// The seccomp filter could not be built for this machine.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// Writing the process's output failed (the process was killed).
    #[error("writing the process output: {0}")]
    Output(std::io::Error),
}

/// How the owners of files kiln (or a rootless step of it) leaves on the host become image
/// owners: through the user namespace map rootless steps get.
/// Read once per process (it reads /etc/passwd, /etc/subuid, /etc/subgid and looks up
/// newuidmap): every COPY, WORKDIR and layer asks for it, and it cannot change meanwhile.
pub fn host_ids() -> crate::layer::owners::HostIds {
    static IDS: std::sync::OnceLock<crate::layer::owners::HostIds> = std::sync::OnceLock::new();
    IDS.get_or_init(|| userns::IdMap::for_current_user().host_ids())
        .clone()
}

/// Whether kiln runs inside a container, where running steps unconfined is acceptable.
fn inside_container() -> bool {
    std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

fn mode(isolation: Isolation) -> Result<Mode, SandboxError> {
    Ok(match isolation {
        Isolation::Auto if crate::layer::owners::host_root() => Mode::Chroot,
        Isolation::Auto | Isolation::Rootless => Mode::Rootless,
        Isolation::Chroot => Mode::Chroot,
        Isolation::Unconfined => {
            check_unconfined_allowed()?;
            Mode::Unconfined
        }
    })
}

/// Refuses unconfined runs outside a container (unless `KILN_FORCE_UNCONFINED=1`).
fn check_unconfined_allowed() -> Result<(), SandboxError> {
    if !inside_container() && std::env::var("KILN_FORCE_UNCONFINED").as_deref() != Ok("1") {
        return Err(SandboxError::UnconfinedRefused);
    }
    Ok(())
}

fn check_strings(spec: &RunSpec) -> Result<(), SandboxError> {
    let mut all: Vec<&str> = vec![&spec.workdir, &spec.user, &spec.hostname];
    all.extend(spec.argv.iter().map(String::as_str));
    all.extend(spec.env.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
    all.extend(spec.mounts.iter().map(|m| m.target.as_str()));
    if all.iter().any(|s| s.contains('\0')) {
        return Err(SandboxError::Unsupported(
            "a NUL byte in argv, env, workdir, user, hostname or a mount target".into(),
        ));
    }
    if spec
        .env
        .iter()
        .any(|(k, _)| k.is_empty() || k.contains('='))
    {
        return Err(SandboxError::Unsupported(
            "an environment variable name is empty or contains '='".into(),
        ));
    }
    Ok(())
}

/// Runs `spec`'s process to its end, streaming its stdout and stderr (interleaved as
/// produced) into `output`. Blocks; call it from a blocking thread.
pub fn run(spec: &RunSpec, output: &mut dyn std::io::Write) -> Result<RunOutcome, SandboxError> {
    check_strings(spec)?;
    let mode = mode(spec.isolation)?;
    if mode == Mode::Unconfined {
        // Without a mount namespace an overlay would be mounted in kiln's own, visible to
        // the whole container; a build gives unconfined steps a directory (see
        // `build::start`'s choice of the tree diff).
        if matches!(spec.rootfs, RootFs::Overlay { .. }) {
            return Err(SandboxError::Unsupported(
                "isolation \"none\" runs in a directory (RootFs::Dir), it mounts no overlay".into(),
            ));
        }
        if spec.network == Network::None || !spec.mounts.is_empty() {
            return Err(SandboxError::Unsupported(
                "isolation \"none\" has no namespaces: no network \"none\", no RUN --mount".into(),
            ));
        }
    }
    let prepared = prepare::prepare(spec, mode)?;
    let steps = syscalls::build(&prepared.setup);
    let mut flags = 0u64;
    if mode != Mode::Unconfined {
        flags |= (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS)
            as u64;
        if spec.network == Network::None {
            flags |= libc::CLONE_NEWNET as u64;
        }
        if mode == Mode::Rootless && prepared.idmap.as_ref().is_some_and(|m| m.needs_namespace()) {
            flags |= libc::CLONE_NEWUSER as u64;
        }
    }
    let cgroup = spec.pids_limit.and_then(pids::PidsCgroup::create);
    let result = spawn::spawn(
        &steps,
        flags,
        prepared.idmap.as_ref(),
        cgroup.as_ref(),
        output,
    );
    prepare::cleanup(&prepared);
    result
}
