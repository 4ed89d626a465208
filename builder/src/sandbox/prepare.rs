//! The parent's work before the process starts: read the root (users, the program, mount
//! points) without mounting it, make the mount points that are missing where they never reach
//! the step's layer, and turn a [`RunSpec`] into the [`Setup`] its system calls are made from.

use super::caps;
use super::seccomp::Filter;
use super::syscalls::{Bind, Mode, Root, Setup};
use super::userns::IdMap;
use super::{users, Network, RootFs, RunSpec, SandboxError};
use crate::fsview::{read_small, resolve, DirView, FsView, Kind};
use crate::layer::OverlayView;
use crate::path_io::IoAt;
use rustix::thread::CapabilitySet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// PATH for a process whose environment has none (Docker's).
pub use crate::image::config::DEFAULT_PATH;

/// A run's setup and what must be undone after it.
pub(crate) struct Prepared {
    pub setup: Setup,
    /// Temporary directories (mount point of the root, missing mount points, hostname file).
    pub _temps: Vec<tempfile::TempDir>,
    /// Mount points created in a `RootFs::Dir` tree, in creation order, to remove afterwards.
    pub created: Vec<PathBuf>,
    /// Modification times of directories whose entries we added, to restore.
    pub times: Vec<(PathBuf, i64, i64)>,
    /// How ids map into the user namespace (rootless).
    pub idmap: Option<IdMap>,
}

fn text(view: &dyn FsView, path: &str) -> Result<Option<String>, SandboxError> {
    Ok(read_small(view, Path::new(path))
        .at(Path::new(path))?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// `path` made absolute against `base` and normalised (no `.` or `..`).
fn absolute(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), path)
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Finds the program as `execvp` would inside the root: a name with `/` is taken as it is
/// (relative to the workdir), a bare name is looked up in PATH.
pub(crate) fn find_program(
    view: &dyn FsView,
    name: &str,
    path_var: &str,
    workdir: &str,
) -> Result<String, SandboxError> {
    let runnable = |p: &str| -> bool {
        match resolve(view, Path::new(p), true).and_then(|r| view.lstat(&r)) {
            Ok(Some(e)) => e.kind == Kind::File && e.mode & 0o111 != 0,
            _ => false,
        }
    };
    if name.contains('/') {
        let p = absolute(workdir, name);
        return if runnable(&p) {
            Ok(p)
        } else {
            Err(SandboxError::ProgramNotFound {
                program: name.to_string(),
                searched: p,
            })
        };
    }
    for dir in path_var.split(':') {
        let p = absolute(
            workdir,
            &format!("{}/{name}", if dir.is_empty() { "." } else { dir }),
        );
        if runnable(&p) {
            return Ok(p);
        }
    }
    Err(SandboxError::ProgramNotFound {
        program: name.to_string(),
        searched: format!("$PATH={path_var}"),
    })
}

/// Creates `inner` (resolved, absolute) under `base` with parents, copying each existing
/// parent's metadata from the view, so that in the merged root nothing looks changed.
fn scaffold(
    view: &dyn FsView,
    base: &Path,
    inner: &str,
    dir: bool,
    root: bool,
    created: &mut Vec<PathBuf>,
    times: &mut Vec<(PathBuf, i64, i64)>,
) -> Result<(), SandboxError> {
    let parts: Vec<&str> = inner.split('/').filter(|p| !p.is_empty()).collect();
    let mut rel = String::new();
    for (i, part) in parts.iter().enumerate() {
        let parent_host = base.join(rel.trim_start_matches('/'));
        rel.push('/');
        rel.push_str(part);
        let host = base.join(rel.trim_start_matches('/'));
        let last = i + 1 == parts.len();
        let existing = view.lstat(Path::new(&rel)).at(Path::new(&rel))?;
        if std::fs::symlink_metadata(&host).is_ok() {
            continue;
        }
        if let Ok(m) = std::fs::metadata(&parent_host) {
            if !times.iter().any(|(p, _, _)| p == &parent_host) {
                times.push((parent_host.clone(), m.atime(), m.mtime()));
            }
        }
        let (mode, uid, gid) = match &existing {
            Some(e) => (e.mode, e.uid, e.gid),
            None if last && !dir => (0o644, 0, 0),
            None => (0o755, 0, 0),
        };
        if last && !dir {
            std::fs::write(&host, b"").at(&host)?;
        } else {
            std::fs::create_dir(&host).at(&host)?;
        }
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).at(&host)?;
        if root {
            std::os::unix::fs::lchown(&host, Some(uid), Some(gid)).at(&host)?;
        }
        if let Some(e) = &existing {
            times.push((host.clone(), e.mtime, e.mtime));
        }
        created.push(host);
    }
    Ok(())
}

/// Sets the recorded times back, deepest first.
pub(crate) fn restore_times(times: &[(PathBuf, i64, i64)]) {
    for (p, atime, mtime) in times.iter().rev() {
        let ts = |s: i64| rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: 0,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &rustix::fs::Timestamps {
                last_access: ts(*atime),
                last_modification: ts(*mtime),
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

/// Builds the setup for `spec` in `mode`.
pub(crate) fn prepare(spec: &RunSpec, mode: Mode) -> Result<Prepared, SandboxError> {
    let root_user = crate::layer::owners::settable();
    let view: Box<dyn FsView> = match &spec.rootfs {
        RootFs::Overlay { lower, upper, .. } => {
            let mut layers = vec![upper.clone()];
            layers.extend(lower.iter().cloned());
            Box::new(OverlayView::new(layers))
        }
        RootFs::Dir(d) => Box::new(DirView::new(d.clone())),
    };
    let view = view.as_ref();
    let passwd = text(view, "/etc/passwd")?;
    let group = text(view, "/etc/group")?;
    let ids = users::resolve_user(passwd.as_deref(), group.as_deref(), &spec.user)?;

    let mut env = spec.env.clone();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), ids.home.clone()));
    }
    let workdir = absolute(
        "/",
        if spec.workdir.is_empty() {
            "/"
        } else {
            &spec.workdir
        },
    );
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let argv0 = spec.argv.first().ok_or(SandboxError::EmptyArgv)?;
    let program = find_program(view, argv0, &path_var, &workdir)?;

    let mut mkdirs = Vec::new();
    let mut prefix = String::new();
    for part in workdir.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        let exists = resolve(view, Path::new(&prefix), true)
            .and_then(|r| view.lstat(&r))
            .at(Path::new(&prefix))?
            .is_some();
        if !exists {
            mkdirs.push(prefix.clone());
        }
    }

    let mut temps = Vec::new();
    let mut created = Vec::new();
    let mut times = Vec::new();
    let mut binds = Vec::new();
    let mut root = match &spec.rootfs {
        RootFs::Overlay { lower, upper, work } => Root::Overlay {
            target: PathBuf::new(),
            lowers: lower.clone(),
            upper: upper.clone(),
            work: work.clone(),
            links: None,
        },
        RootFs::Dir(d) => Root::Dir(d.clone()),
    };
    let idmap = match mode {
        Mode::Rootless => Some(IdMap::for_current_user()),
        _ => None,
    };
    let tmp = || {
        tempfile::Builder::new()
            .prefix("kiln-sandbox-")
            .tempdir()
            .at(std::env::temp_dir())
    };
    if mode != Mode::Unconfined {
        let etc = tmp()?;
        let hostname_file = etc.path().join("hostname");
        std::fs::write(&hostname_file, format!("{}\n", spec.hostname)).at(&hostname_file)?;
        let mut targets: Vec<(String, Option<(PathBuf, bool)>)> = ["/proc", "/dev", "/sys"]
            .into_iter()
            .map(|p| (p.to_string(), None))
            .collect();
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            if std::fs::metadata(f).is_ok() {
                targets.push((f.into(), Some((PathBuf::from(f), true))));
            }
        }
        targets.push(("/etc/hostname".into(), Some((hostname_file, true))));
        for m in &spec.mounts {
            targets.push((
                absolute(&workdir, &m.target),
                Some((m.source.clone(), m.readonly)),
            ));
        }
        temps.push(etc);
        // Each target is resolved inside the root (a link never leads out of it) and the
        // mount goes on the resolved path.
        let mut missing = Vec::new();
        for (target, source) in targets {
            let dir = match &source {
                None => true,
                Some((s, _)) => std::fs::metadata(s).at(s)?.is_dir(),
            };
            let r = resolve(view, Path::new(&target), true)
                .at(Path::new(&target))?
                .to_string_lossy()
                .into_owned();
            // The kernel mounts /proc, /dev and /sys through the host-side path, where an
            // image's symlink would be followed against the host's root (and the masks under
            // /proc would miss): refused, as runc refuses it.
            if source.is_none() && r != target {
                return Err(SandboxError::MountTarget {
                    path: target,
                    reason: format!(
                        "is a symbolic link in the image (to {r}); a RUN step needs a directory there"
                    ),
                });
            }
            match view.lstat(Path::new(&r)).at(Path::new(&r))? {
                None => missing.push((r.clone(), dir)),
                Some(e) if (e.kind == Kind::Dir) != dir => {
                    return Err(SandboxError::MountTarget {
                        path: target,
                        reason: if dir {
                            "is not a directory in the image".into()
                        } else {
                            "is a directory in the image and the source is a file".into()
                        },
                    })
                }
                Some(_) => {}
            }
            if let Some((source, readonly)) = source {
                binds.push(Bind {
                    source,
                    target: r,
                    readonly,
                    recursive: dir,
                });
            }
        }
        match &mut root {
            Root::Overlay {
                target,
                lowers,
                links,
                ..
            } => {
                // Missing mount points go into an extra lower layer of their own, so the
                // step's upper directory never holds them.
                if !missing.is_empty() {
                    let s = tmp()?;
                    let mut dir_times = Vec::new();
                    for (path, dir) in &missing {
                        scaffold(
                            view,
                            s.path(),
                            path,
                            *dir,
                            root_user,
                            &mut Vec::new(),
                            &mut dir_times,
                        )?;
                    }
                    restore_times(&dir_times);
                    lowers.insert(0, s.path().to_path_buf());
                    temps.push(s);
                }
                let m = tmp()?;
                *target = m.path().to_path_buf();
                temps.push(m);
                let l = tmp()?;
                for (i, lower) in lowers.iter().enumerate() {
                    let link = l.path().join(i.to_string());
                    std::os::unix::fs::symlink(lower, &link).at(&link)?;
                }
                *links = Some(l.path().to_path_buf());
                temps.push(l);
            }
            Root::Dir(d) => {
                for (path, dir) in &missing {
                    scaffold(view, d, path, *dir, root_user, &mut created, &mut times)?;
                }
            }
        }
    }
    if let (Mode::Unconfined, Root::Dir(d)) = (mode, &root) {
        device_nodes(d, &mut created, &mut times)?;
    }
    let groups = match (&mode, &idmap) {
        (Mode::Rootless, Some(map)) => {
            map.check(ids.uid, ids.gid)?;
            map.allows_setgroups().then(|| ids.additional_gids.clone())
        }
        (Mode::Unconfined, _) if !root_user => None,
        _ => Some(ids.additional_gids.clone()),
    };
    let (drop_caps, seccomp) = hardening(mode)?;
    Ok(Prepared {
        setup: Setup {
            mode,
            root,
            new_netns: matches!(spec.network, Network::None),
            hostname: spec.hostname.clone(),
            binds,
            mkdirs,
            uid: ids.uid,
            gid: ids.gid,
            groups,
            workdir,
            program,
            argv: spec.argv.clone(),
            env,
            legacy_only: std::env::var("KILN_SANDBOX_LEGACY_MOUNT").as_deref() == Ok("1"),
            drop_caps,
            seccomp,
        },
        _temps: temps,
        created,
        times,
        idmap,
    })
}

/// The character devices a step gets under `none`, as runc's default `/dev` has them.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Makes [`DEVICES`] in the step's tree under `none`, which has no mount namespace to mount a
/// `/dev` in: without them `> /dev/null` would write a file into the layer. They are removed
/// after the step with what `prepare` created, so the tree diff never sees them. Without
/// CAP_MKNOD (or under a device cgroup refusing it) the step runs without them, said once.
fn device_nodes(
    root: &Path,
    created: &mut Vec<PathBuf>,
    times: &mut Vec<(PathBuf, i64, i64)>,
) -> Result<(), SandboxError> {
    let dev = root.join("dev");
    match std::fs::symlink_metadata(&dev) {
        // A link would lead the nodes somewhere else in the tree: left as the image has it.
        Ok(m) if !m.is_dir() => return Ok(()),
        Ok(m) => times.push((dev.clone(), m.atime(), m.mtime())),
        Err(_) => {
            if let Ok(m) = std::fs::metadata(root) {
                times.push((root.to_path_buf(), m.atime(), m.mtime()));
            }
            std::fs::create_dir(&dev).at(&dev)?;
            std::fs::set_permissions(&dev, std::fs::Permissions::from_mode(0o755)).at(&dev)?;
            created.push(dev.clone());
        }
    }
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        if std::fs::symlink_metadata(&node).is_ok() {
            continue;
        }
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        );
        if let Err(e) = made {
            note_once(
                &NO_DEVICES,
                &format!(
                    "isolation \"none\": RUN steps get no /dev/null and the like ({}: {e}); \
                     kiln needs CAP_MKNOD to make them",
                    node.display()
                ),
            );
            break;
        }
        // mknod's mode passed through the umask.
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o666)).at(&node)?;
        created.push(node);
    }
    Ok(())
}

static NO_DEVICES: std::sync::Once = std::sync::Once::new();

/// Whether the step's bounding set is limited, and the seccomp filter it gets. The namespaced
/// modes always can (root, or root in the user namespace); unconfined runs inside a container
/// and may lack CAP_SETPCAP or CAP_SYS_ADMIN.
fn hardening(mode: Mode) -> Result<(bool, Option<Filter>), SandboxError> {
    if mode != Mode::Unconfined {
        return Ok((true, Some(Filter::docker_default(false)?)));
    }
    let drop_caps = caps::effective(CapabilitySet::SETPCAP);
    let seccomp = if caps::effective(CapabilitySet::SYS_ADMIN) {
        Some(Filter::docker_default(false)?)
    } else if rustix::thread::no_new_privs().unwrap_or(false) {
        // The container already runs under no_new_privs (`allowPrivilegeEscalation: false`):
        // kiln's filter takes nothing more from the step's setuid programs.
        Some(Filter::docker_default(true)?)
    } else if caps::filtered() {
        note(
            "isolation \"none\": kiln lacks CAP_SYS_ADMIN to add its seccomp filter without \
             no_new_privs; RUN steps get this container's own filter",
        );
        None
    } else {
        note(
            "isolation \"none\": kiln lacks CAP_SYS_ADMIN and this container has no seccomp \
             filter; RUN steps get kiln's with no_new_privs, so setuid programs do not gain \
             privileges",
        );
        Some(Filter::docker_default(true)?)
    };
    Ok((drop_caps, seccomp))
}

/// Says `what` once per process on stderr.
fn note(what: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    note_once(&ONCE, what);
}

/// Says `what` on stderr the first time `once` is passed.
fn note_once(once: &std::sync::Once, what: &str) {
    once.call_once(|| eprintln!("kiln: note: {what}"));
}

/// Removes what [`prepare`] created in a directory root, deepest first, and puts the parents'
/// times back, so a tree diff sees only the step's changes.
pub(crate) fn cleanup(p: &Prepared) {
    for path in p.created.iter().rev() {
        let _ = match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(path),
            Ok(m) if m.len() == 0 => std::fs::remove_file(path),
            _ => Ok(()),
        };
    }
    restore_times(&p.times);
}
