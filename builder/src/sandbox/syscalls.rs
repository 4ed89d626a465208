//! The sandbox's system-call sequence as data: a pure function turns what the parent resolved
//! into a list of steps, which the child then performs one by one (see `child.rs`). Building
//! the list before the child exists also means the child needs no allocation, which a process
//! cloned from a multi-threaded parent must avoid.

use super::seccomp::Filter;
use crate::snapshot::mount_options;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How the process is confined, decided from [`super::Isolation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Namespaces as the real root user.
    Chroot,
    /// Namespaces inside a new user namespace.
    Rootless,
    /// No namespaces at all.
    Unconfined,
}

/// The root the process gets.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    /// Overlay mounted on `target` (an empty host directory).
    Overlay {
        target: PathBuf,
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        /// A directory holding symlinks `0`, `1`, ... to the lowers, for the legacy mount.
        links: Option<PathBuf>,
    },
    /// A directory used as it is.
    Dir(PathBuf),
}

/// A host file or directory bound into the root.
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the root, symlinks already resolved inside it.
    pub target: String,
    pub readonly: bool,
    /// Directories are bound with their submounts.
    pub recursive: bool,
}

/// Everything the parent resolved before starting the process.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub mode: Mode,
    pub root: Root,
    pub new_netns: bool,
    pub hostname: String,
    /// Host files bound read-only (resolv.conf, hosts, hostname), then the step's mounts.
    pub binds: Vec<Bind>,
    /// Directories to create (in order) after entering the root: the missing part of workdir.
    pub mkdirs: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; `None` when the user namespace forbids `setgroups`.
    pub groups: Option<Vec<u32>>,
    pub workdir: String,
    /// The program's path inside the root.
    pub program: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Mount the overlay only the legacy way (tests; `KILN_SANDBOX_LEGACY_MOUNT=1`).
    pub legacy_only: bool,
    /// Limit the bounding set (false only where kiln itself may not: unconfined without
    /// CAP_SETPCAP).
    pub drop_caps: bool,
    /// The seccomp filter, if this process can install one.
    pub seccomp: Option<Filter>,
}

/// One thing the child does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Stops mount events from reaching the host (`/` recursively private).
    MakeRootPrivate,
    /// Mounts the overlay on `target`.
    MountOverlay {
        target: CString,
        lowers: Vec<CString>,
        upper: CString,
        work: CString,
        userxattr: bool,
        /// For kernels without the new mount API or `lowerdir+`: a directory of short links
        /// to the lowers (`0`, `1`, ...) and the `mount(2)` option string naming them.
        legacy: Option<(CString, CString)>,
        /// Use only the legacy way.
        legacy_only: bool,
    },
    /// Binds a directory onto itself so it can become the root.
    BindRoot { path: CString },
    /// A new `/proc` for the PID namespace.
    MountProc { target: CString },
    /// A tmpfs with mount data (`mode=...`).
    MountTmpfs {
        target: CString,
        data: CString,
        noexec: bool,
    },
    /// A new devpts instance.
    MountDevpts { target: CString, data: CString },
    /// A new read-only sysfs.
    MountSysfs { target: CString },
    /// Binds a host path (read-only or nodev by `mount_setattr` so locked flags stay as they
    /// are).
    Bind {
        source: CString,
        target: CString,
        recursive: bool,
        readonly: bool,
        /// Device nodes under it cannot be opened (all but kiln's own /dev nodes).
        nodev: bool,
    },
    /// Creates an empty file (a bind target inside the sandbox's own tmpfs).
    CreateFile { path: CString },
    /// Creates a symlink.
    Symlink { target: CString, link: CString },
    /// Hides a kernel file or directory (`/dev/null` bound over a file, an empty read-only
    /// tmpfs over a directory); a path this kernel does not have is skipped.
    Mask { target: CString },
    /// Binds a path onto itself read-only; a path this kernel does not have is skipped.
    ReadOnly { target: CString },
    /// Sets the UTS hostname.
    Hostname { name: CString },
    /// Brings `lo` up in the new network namespace.
    LoopbackUp,
    /// Makes `new_root` the root and detaches the old one.
    PivotRoot { new_root: CString },
    /// Changes the root without a mount namespace (unconfined runs in a directory).
    Chroot { path: CString },
    /// Creates directories (mode 0755, owned by root) that do not exist yet.
    MkdirAll { dirs: Vec<CString> },
    /// Limits the bounding set to the step's capabilities and empties the ambient set.
    DropCaps,
    /// Installs the seccomp filter (before the id change: without `no_new_privs` it needs
    /// CAP_SYS_ADMIN, as runc does it).
    Seccomp { filter: Filter },
    /// Limits the permitted and effective sets, empties the inheritable one.
    LimitCaps,
    /// Sets groups, gid and uid.
    SetIds {
        uid: u32,
        gid: u32,
        groups: Option<Vec<u32>>,
    },
    /// Standard input from `/dev/null`.
    StdinNull,
    /// Changes to the working directory.
    Chdir { path: CString },
    /// Ends the process with status 0 (the probe that checks, before a build, that the
    /// namespaces and mounts a mode needs are allowed here).
    Exit,
    /// Runs the program.
    Exec {
        path: CString,
        argv: Vec<CString>,
        env: Vec<CString>,
    },
}

fn c(s: impl AsRef<[u8]>) -> CString {
    // Paths and strings with NUL are refused before planning (see `mod.rs`).
    CString::new(s.as_ref()).unwrap_or_default()
}

fn cp(p: &Path) -> CString {
    c(p.as_os_str().as_bytes())
}

/// `root` joined with the absolute in-root path `inner`.
fn under(root: &Path, inner: &str) -> CString {
    cp(&root.join(inner.trim_start_matches('/')))
}

/// Kernel interfaces a build step has no business reading (host memory, keys, timers, firmware):
/// hidden, as Docker and BuildKit hide them (containerd's default spec).
pub(crate) const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Kernel settings a root step could otherwise change for the whole host (`/proc/sys`):
/// read-only, as Docker and BuildKit make them.
pub(crate) const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The steps for `s`, in order.
pub(crate) fn build(s: &Setup) -> Vec<Step> {
    // Opened before the root changes: the new root may have no /dev (unconfined in a bare
    // directory).
    let mut steps = vec![Step::StdinNull];
    if s.mode != Mode::Unconfined {
        let root = match &s.root {
            Root::Overlay {
                target,
                lowers,
                upper,
                work,
                links,
            } => {
                let userxattr = s.mode == Mode::Rootless;
                steps.push(Step::MakeRootPrivate);
                steps.push(Step::MountOverlay {
                    target: cp(target),
                    lowers: lowers.iter().map(|l| cp(l)).collect(),
                    upper: cp(upper),
                    work: cp(work),
                    userxattr,
                    legacy: links.as_ref().map(|dir| {
                        let names: Vec<String> = (0..lowers.len()).map(|i| i.to_string()).collect();
                        let mut data = format!(
                            "lowerdir={},upperdir={},workdir={}",
                            names.join(":"),
                            upper.display(),
                            work.display()
                        );
                        data.push(',');
                        data.push_str(&mount_options::option_string(userxattr));
                        (cp(dir), c(data))
                    }),
                    legacy_only: s.legacy_only,
                });
                target.clone()
            }
            Root::Dir(d) => {
                steps.push(Step::MakeRootPrivate);
                steps.push(Step::BindRoot { path: cp(d) });
                d.clone()
            }
        };
        let r = root.as_path();
        steps.push(Step::MountProc {
            target: under(r, "/proc"),
        });
        steps.push(Step::MountTmpfs {
            target: under(r, "/dev"),
            data: c("mode=755,size=65536k"),
            noexec: true,
        });
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            let target = under(r, &format!("/dev/{node}"));
            steps.push(Step::CreateFile {
                path: target.clone(),
            });
            steps.push(Step::Bind {
                source: c(format!("/dev/{node}")),
                target,
                recursive: false,
                readonly: false,
                nodev: false,
            });
        }
        steps.push(Step::MkdirAll {
            dirs: vec![under(r, "/dev/pts"), under(r, "/dev/shm")],
        });
        let pts = if s.mode == Mode::Rootless {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        };
        steps.push(Step::MountDevpts {
            target: under(r, "/dev/pts"),
            data: c(pts),
        });
        steps.push(Step::MountTmpfs {
            target: under(r, "/dev/shm"),
            data: c("mode=1777,size=65536k"),
            noexec: true,
        });
        for (target, link) in [
            ("pts/ptmx", "/dev/ptmx"),
            ("/proc/self/fd", "/dev/fd"),
            ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"),
        ] {
            steps.push(Step::Symlink {
                target: c(target),
                link: under(r, link),
            });
        }
        // sysfs belongs to a network namespace; a user namespace may only mount the one it
        // owns, so rootless on the host's network binds the host's, read-only.
        if s.mode == Mode::Rootless && !s.new_netns {
            steps.push(Step::Bind {
                source: c("/sys"),
                target: under(r, "/sys"),
                recursive: true,
                readonly: true,
                nodev: true,
            });
        } else {
            steps.push(Step::MountSysfs {
                target: under(r, "/sys"),
            });
        }
        for p in READONLY_PATHS {
            steps.push(Step::ReadOnly {
                target: under(r, p),
            });
        }
        for p in MASKED_PATHS {
            steps.push(Step::Mask {
                target: under(r, p),
            });
        }
        for b in &s.binds {
            steps.push(Step::Bind {
                source: cp(&b.source),
                target: under(r, &b.target),
                recursive: b.recursive,
                readonly: b.readonly,
                nodev: true,
            });
        }
        steps.push(Step::Hostname {
            name: c(&s.hostname),
        });
        if s.new_netns {
            steps.push(Step::LoopbackUp);
        }
        steps.push(Step::PivotRoot { new_root: cp(r) });
    } else if let Root::Dir(d) = &s.root {
        if d != Path::new("/") {
            steps.push(Step::Chroot { path: cp(d) });
        }
    }
    if !s.mkdirs.is_empty() {
        steps.push(Step::MkdirAll {
            dirs: s.mkdirs.iter().map(c).collect(),
        });
    }
    if s.drop_caps {
        steps.push(Step::DropCaps);
    }
    if let Some(filter) = &s.seccomp {
        steps.push(Step::Seccomp {
            filter: filter.clone(),
        });
    }
    // As Docker does, the primary group is also in the group list (`id` shows it).
    let groups = s.groups.as_ref().map(|extra| {
        let mut all = vec![s.gid];
        all.extend(extra.iter().filter(|g| **g != s.gid));
        all
    });
    steps.push(Step::SetIds {
        uid: s.uid,
        gid: s.gid,
        groups,
    });
    steps.push(Step::LimitCaps);
    steps.push(Step::Chdir {
        path: c(&s.workdir),
    });
    steps.push(Step::Exec {
        path: c(&s.program),
        argv: s.argv.iter().map(c).collect(),
        env: s.env.iter().map(|(k, v)| c(format!("{k}={v}"))).collect(),
    });
    steps
}

fn show(c: &CString) -> String {
    String::from_utf8_lossy(c.as_bytes()).into_owned()
}

impl Step {
    /// What the step does, for errors (`mount proc on /tmp/x/proc`).
    pub(crate) fn describe(&self) -> String {
        match self {
            Step::MakeRootPrivate => "make / private".into(),
            Step::MountOverlay { target, lowers, .. } => {
                format!(
                    "mount overlay ({} lower dirs) on {}",
                    lowers.len(),
                    show(target)
                )
            }
            Step::BindRoot { path } => format!("bind {} onto itself", show(path)),
            Step::MountProc { target } => format!("mount proc on {}", show(target)),
            Step::MountTmpfs { target, .. } => format!("mount tmpfs on {}", show(target)),
            Step::MountDevpts { target, .. } => format!("mount devpts on {}", show(target)),
            Step::MountSysfs { target } => format!("mount sysfs on {}", show(target)),
            Step::Bind {
                source,
                target,
                readonly,
                ..
            } => format!(
                "bind {} on {}{}",
                show(source),
                show(target),
                if *readonly { " (read-only)" } else { "" }
            ),
            Step::CreateFile { path } => format!("create {}", show(path)),
            Step::Symlink { link, .. } => format!("create symlink {}", show(link)),
            Step::Mask { target } => format!("mask {}", show(target)),
            Step::ReadOnly { target } => format!("make {} read-only", show(target)),
            Step::Hostname { name } => format!("set hostname {}", show(name)),
            Step::LoopbackUp => "bring up lo".into(),
            Step::PivotRoot { new_root } => format!("enter root {}", show(new_root)),
            Step::Chroot { path } => format!("chroot into {}", show(path)),
            Step::MkdirAll { dirs } => format!(
                "create directory {}",
                dirs.last().map(show).unwrap_or_default()
            ),
            Step::DropCaps => "drop capabilities".into(),
            Step::Seccomp { .. } => "install the seccomp filter".into(),
            Step::LimitCaps => "limit capabilities".into(),
            Step::SetIds { uid, gid, .. } => format!("switch to user {uid}:{gid}"),
            Step::StdinNull => "open /dev/null".into(),
            Step::Chdir { path } => format!("enter working directory {}", show(path)),
            Step::Exec { path, .. } => format!("execute {}", show(path)),
            Step::Exit => "exit".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(mode: Mode) -> Setup {
        Setup {
            mode,
            root: Root::Overlay {
                target: "/m".into(),
                lowers: vec!["/l1".into(), "/l0".into()],
                upper: "/u".into(),
                work: "/w".into(),
                links: Some("/k".into()),
            },
            new_netns: true,
            hostname: "kiln".into(),
            binds: vec![Bind {
                source: "/etc/resolv.conf".into(),
                target: "/etc/resolv.conf".into(),
                readonly: true,
                recursive: false,
            }],
            mkdirs: vec!["/app".into()],
            uid: 1000,
            gid: 1000,
            groups: Some(vec![2000]),
            workdir: "/app".into(),
            program: "/bin/sh".into(),
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec![("PATH".into(), "/bin".into())],
            legacy_only: false,
            drop_caps: mode != Mode::Unconfined,
            seccomp: Some(Filter::docker_default(false).unwrap()),
        }
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::describe).collect()
    }

    fn pos(steps: &[Step], what: &str) -> usize {
        names(steps)
            .iter()
            .position(|n| n.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} in {:#?}", names(steps)))
    }

    #[test]
    fn root_plan_orders_mounts_before_pivot_and_ids_after() {
        let steps = build(&setup(Mode::Chroot));
        assert_eq!(steps[0], Step::StdinNull);
        assert_eq!(steps[1], Step::MakeRootPrivate);
        let Step::MountOverlay {
            lowers,
            userxattr: false,
            legacy: Some((dir, data)),
            ..
        } = &steps[2]
        else {
            panic!("{:?}", steps[2]);
        };
        assert_eq!(lowers, &[c("/l1"), c("/l0")]);
        assert_eq!(dir, &c("/k"));
        assert_eq!(
            data,
            &c("lowerdir=0:1,upperdir=/u,workdir=/w,redirect_dir=off,metacopy=off,index=off")
        );
        let pivot = pos(&steps, "enter root /m");
        for m in [
            "mount proc on /m/proc",
            "mount tmpfs on /m/dev",
            "bind /dev/null on /m/dev/null",
            "mount devpts on /m/dev/pts",
            "mount sysfs on /m/sys",
            "bind /etc/resolv.conf on /m/etc/resolv.conf (read-only)",
            "set hostname kiln",
            "bring up lo",
        ] {
            assert!(pos(&steps, m) < pivot, "{m}");
        }
        assert!(pos(&steps, "mount tmpfs on /m/dev") < pos(&steps, "bind /dev/null"));
        // Only kiln's own device nodes stay openable.
        for step in &steps {
            if let Step::Bind { source, nodev, .. } = step {
                assert_eq!(*nodev, !show(source).starts_with("/dev/"), "{step:?}");
            }
        }
        assert!(pivot < pos(&steps, "create directory /app"));
        assert!(pos(&steps, "drop capabilities") < pos(&steps, "install the seccomp filter"));
        assert!(pos(&steps, "install the seccomp filter") < pos(&steps, "switch to user 1000"));
        assert!(pos(&steps, "switch to user") < pos(&steps, "limit capabilities"));
        assert!(pos(&steps, "limit capabilities") < pos(&steps, "enter working directory /app"));
        assert!(steps.contains(&Step::SetIds {
            uid: 1000,
            gid: 1000,
            groups: Some(vec![1000, 2000])
        }));
        assert_eq!(
            steps.last().unwrap(),
            &Step::Exec {
                path: c("/bin/sh"),
                argv: vec![c("sh"), c("-c"), c("true")],
                env: vec![c("PATH=/bin")],
            }
        );
    }

    #[test]
    fn rootless_binds_sysfs_and_uses_userxattr() {
        let mut s = setup(Mode::Rootless);
        s.new_netns = false;
        let steps = build(&s);
        assert!(steps.contains(&Step::MakeRootPrivate));
        assert!(matches!(
            &steps[2],
            Step::MountOverlay {
                userxattr: true,
                ..
            }
        ));
        assert!(steps.contains(&Step::Bind {
            source: c("/sys"),
            target: c("/m/sys"),
            recursive: true,
            readonly: true,
            nodev: true
        }));
        assert!(!names(&steps).iter().any(|n| n.starts_with("mount sysfs")));
        assert!(!steps.contains(&Step::LoopbackUp));
        let pts = steps
            .iter()
            .find_map(|s| match s {
                Step::MountDevpts { data, .. } => Some(show(data)),
                _ => None,
            })
            .unwrap();
        assert!(!pts.contains("gid="), "{pts}");
    }

    #[test]
    fn unconfined_has_no_mounts() {
        let mut s = setup(Mode::Unconfined);
        s.root = Root::Dir("/".into());
        let got = names(&build(&s));
        assert_eq!(
            got,
            [
                "open /dev/null",
                "create directory /app",
                "install the seccomp filter",
                "switch to user 1000:1000",
                "limit capabilities",
                "enter working directory /app",
                "execute /bin/sh"
            ]
        );
    }
}
