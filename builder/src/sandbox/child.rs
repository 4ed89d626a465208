//! The cloned child: performs the planned steps and execs the program.
//!
//! The child is a copy of one thread of a multi-threaded parent, so it must not allocate or take
//! locks (another thread may have held them at clone time). Everything it touches was built
//! before the clone; it only makes system calls, using raw ones where glibc would coordinate
//! with threads that do not exist in the child (`setgroups`, `setresuid`).

use super::syscalls::Step;
use super::{caps, seccomp};
use crate::snapshot::mount_options;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};
use std::ffi::{c_char, CStr, CString};

/// What the child got from the parent, prepared before the clone.
pub(crate) struct Child<'a> {
    pub steps: &'a [Step],
    /// NULL-terminated pointer arrays into the `Exec` step's strings.
    pub argv: &'a [*const c_char],
    pub envp: &'a [*const c_char],
    /// Read end: one byte means "go"; end of file means the parent is gone.
    pub sync: &'a OwnedFd,
    /// Write end: a failure report; closed by exec on success (close-on-exec).
    pub report: &'a OwnedFd,
    /// Write end: the process's stdout and stderr.
    pub output: &'a OwnedFd,
}

/// A failure inside the child.
type R = Result<(), Errno>;

/// Encodes a failure report: step index, errno, message length, message.
pub(crate) const REPORT_HEADER: usize = 10;

/// Runs the child to the program's exec; never returns.
pub(crate) fn main(c: &Child<'_>) -> ! {
    if let Err(e) = prelude(c) {
        report(c, u32::MAX, e, &[]);
    }
    for (i, step) in c.steps.iter().enumerate() {
        if let Err(e) = perform(i as u32, step, c) {
            report(c, i as u32, e, &[]);
        }
    }
    report(c, u32::MAX, Errno::NOEXEC, &[]);
}

#[allow(unsafe_code)]
fn report(c: &Child<'_>, step: u32, e: Errno, msg: &[u8]) -> ! {
    let mut buf = [0u8; REPORT_HEADER + 400];
    let len = msg.len().min(400);
    buf[..4].copy_from_slice(&step.to_le_bytes());
    buf[4..8].copy_from_slice(&e.raw_os_error().to_le_bytes());
    buf[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    buf[REPORT_HEADER..REPORT_HEADER + len].copy_from_slice(&msg[..len]);
    let _ = rustix::io::write(c.report, &buf[..REPORT_HEADER + len]);
    // SAFETY: _exit ends the process without running the parent's atexit handlers or flushing
    // its buffers, which belong to the parent.
    unsafe { libc::_exit(127) }
}

#[allow(unsafe_code)]
fn prelude(c: &Child<'_>) -> R {
    // The parent's signal mask and ignored signals (Rust ignores SIGPIPE) survive exec; the
    // program must start with the defaults.
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction with a zeroed struct (SIG_DFL, no flags, empty mask) on a
        // stack value; errors for reserved signals are ignored.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // SAFETY: sigprocmask with an empty set on the stack; no old set is read.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    // Wait for the parent (it writes the id maps of a user namespace first). End of file
    // means it died before the death signal was armed.
    let mut go = [0u8; 1];
    if rustix::io::read(c.sync, &mut go)? != 1 {
        return Err(Errno::CANCELED);
    }
    let _ = rustix::process::setsid();
    rustix::process::umask(Mode::from_raw_mode(0o022));
    dup2(c.output.as_fd(), 1)?;
    dup2(c.output.as_fd(), 2)?;
    // Descriptors the parent process left inheritable must not reach the program.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors >= 3.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

#[allow(unsafe_code)]
fn dup2(fd: BorrowedFd<'_>, to: i32) -> R {
    // SAFETY: dup2 onto a standard descriptor number; both are plain integers.
    if unsafe { libc::dup2(fd.as_raw_fd(), to) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// The errno of the last failed libc call.
pub(crate) fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL)
}

fn perform(index: u32, step: &Step, c: &Child<'_>) -> R {
    match step {
        Step::MakeRootPrivate => rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?,
        Step::MountOverlay {
            target,
            legacy,
            legacy_only: true,
            ..
        } => mount_overlay_legacy(target, legacy_ref(legacy))?,
        Step::MountOverlay { .. } => mount_overlay(step, index, c)?,
        Step::BindRoot { path } => bind(path, path, true, false, true)?,
        Step::MountProc { target } => rustix::mount::mount(
            c"proc",
            target.as_c_str(),
            c"proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )?,
        Step::MountTmpfs {
            target,
            data,
            noexec,
        } => {
            // Nodes a step makes in kiln's /dev must not open; the allowed ones are binds.
            let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
            if *noexec {
                flags |= MountFlags::NOEXEC;
            }
            rustix::mount::mount(
                c"tmpfs",
                target.as_c_str(),
                c"tmpfs",
                flags,
                Some(data.as_c_str()),
            )?
        }
        Step::MountDevpts { target, data } => rustix::mount::mount(
            c"devpts",
            target.as_c_str(),
            c"devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(data.as_c_str()),
        )?,
        Step::MountSysfs { target } => rustix::mount::mount(
            c"sysfs",
            target.as_c_str(),
            c"sysfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )?,
        Step::Bind {
            source,
            target,
            recursive,
            readonly,
            nodev,
        } => bind(source, target, *recursive, *readonly, *nodev)?,
        Step::CreateFile { path } => {
            rustix::fs::open(
                path.as_c_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )?;
        }
        Step::Symlink { target, link } => rustix::fs::symlink(target.as_c_str(), link.as_c_str())?,
        Step::Mask { target } => match rustix::fs::lstat(target.as_c_str()) {
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                rustix::mount::mount(
                    c"tmpfs",
                    target.as_c_str(),
                    c"tmpfs",
                    MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    Some(c"size=0"),
                )?
            }
            // Still the host's /dev: the root has not changed yet.
            Ok(_) => bind(c"/dev/null", target, false, true, false)?,
        },
        Step::ReadOnly { target } => match rustix::fs::lstat(target.as_c_str()) {
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
            Ok(_) => bind(target, target, true, true, true)?,
        },
        Step::Hostname { name } => rustix::system::sethostname(name.as_bytes())?,
        Step::LoopbackUp => loopback_up()?,
        Step::PivotRoot { new_root } => {
            rustix::process::chdir(new_root.as_c_str())?;
            rustix::process::pivot_root(c".", c".")?;
            // The old root is stacked under the new one at "."; detach it.
            rustix::mount::unmount(c".", UnmountFlags::DETACH)?;
            rustix::process::chdir(c"/")?;
        }
        Step::Chroot { path } => {
            rustix::process::chroot(path.as_c_str())?;
            rustix::process::chdir(c"/")?;
        }
        Step::MkdirAll { dirs } => {
            for d in dirs {
                match rustix::fs::mkdir(d.as_c_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Step::DropCaps => caps::drop_bounding()?,
        Step::Seccomp { filter } => seccomp::install(filter)?,
        Step::LimitCaps => caps::limit()?,
        Step::SetIds { uid, gid, groups } => set_ids(*uid, *gid, groups.as_deref(), c)?,
        Step::StdinNull => {
            let null = rustix::fs::open(c"/dev/null", OFlags::RDONLY, Mode::empty())?;
            dup2(null.as_fd(), 0)?;
        }
        Step::Chdir { path } => rustix::process::chdir(path.as_c_str())?,
        Step::Exec { path, .. } => exec(path, c)?,
        Step::Exit => exit_now(),
    }
    Ok(())
}

fn legacy_ref(legacy: &Option<(CString, CString)>) -> Option<(&CStr, &CStr)> {
    legacy.as_ref().map(|(d, o)| (d.as_c_str(), o.as_c_str()))
}

fn mount_overlay(step: &Step, index: u32, c: &Child<'_>) -> R {
    let Step::MountOverlay {
        target,
        lowers,
        upper,
        work,
        userxattr,
        legacy,
        ..
    } = step
    else {
        return Err(Errno::INVAL);
    };
    let (userxattr, legacy) = (*userxattr, legacy_ref(legacy));
    let fs = match rustix::mount::fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fs) => fs,
        // Before Linux 5.2: no new mount API.
        Err(Errno::NOSYS) => return mount_overlay_legacy(target, legacy),
        Err(e) => return Err(e),
    };
    if let Some(first) = lowers.first() {
        // Before Linux 6.8 overlay has no `lowerdir+` and refuses the key.
        match rustix::mount::fsconfig_set_string(&fs, c"lowerdir+", first.as_c_str()) {
            Ok(()) => {}
            Err(Errno::INVAL) if legacy.is_some() => return mount_overlay_legacy(target, legacy),
            Err(e) => return Err(e),
        }
    }
    let configured = (|| -> Result<(), Errno> {
        for l in lowers.iter().skip(1) {
            rustix::mount::fsconfig_set_string(&fs, c"lowerdir+", l.as_c_str())?;
        }
        rustix::mount::fsconfig_set_string(&fs, c"upperdir", upper)?;
        rustix::mount::fsconfig_set_string(&fs, c"workdir", work)?;
        for (key, value) in mount_options::options(userxattr) {
            match value {
                Some(v) => rustix::mount::fsconfig_set_string(&fs, *key, *v)?,
                None => rustix::mount::fsconfig_set_flag(&fs, *key)?,
            }
        }
        rustix::mount::fsconfig_create(&fs)?;
        // Device nodes from the image or made by the step must not open (Docker's device
        // cgroup refuses them; kiln has none).
        let m = rustix::mount::fsmount(
            &fs,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_NODEV,
        )?;
        rustix::mount::move_mount(
            &m,
            c"",
            CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
    })();
    if let Err(e) = configured {
        // The kernel explains a refused configuration in the context's log.
        let mut msg = [0u8; 400];
        let mut len = 0;
        while msg.len() - len > 1 {
            let room = msg.len() - len - 1;
            match rustix::io::read(&fs, &mut msg[len..len + room]) {
                Ok(n) if n > 0 => {
                    len += n;
                    msg[len] = b';';
                    len += 1;
                }
                _ => break,
            }
        }
        report(c, index, e, &msg[..len]);
    }
    Ok(())
}

/// Mounts the overlay with `mount(2)` and an option string naming the lowers by short
/// relative links (the string is limited to a page).
fn mount_overlay_legacy(target: &CStr, legacy: Option<(&CStr, &CStr)>) -> R {
    let Some((links, data)) = legacy else {
        return Err(Errno::NOSYS);
    };
    if data.to_bytes().len() >= 4096 {
        return Err(Errno::TOOBIG);
    }
    rustix::process::chdir(links)?;
    rustix::mount::mount(
        c"overlay",
        target,
        c"overlay",
        MountFlags::NODEV,
        Some(data),
    )?;
    rustix::process::chdir(c"/")?;
    Ok(())
}

#[allow(unsafe_code)]
fn bind(source: &CStr, target: &CStr, recursive: bool, readonly: bool, nodev: bool) -> R {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = rustix::mount::open_tree(CWD, source, flags)?;
    if readonly || nodev {
        // mount_setattr only sets the bits asked for, so flags a user namespace may not
        // clear (nosuid, nodev of the source) stay as they are.
        let mut attr_set = 0;
        if readonly {
            attr_set |= libc::MOUNT_ATTR_RDONLY;
        }
        if nodev {
            attr_set |= libc::MOUNT_ATTR_NODEV;
        }
        let attr = libc::mount_attr {
            attr_set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let at = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: mount_setattr on our detached tree's descriptor with "" and AT_EMPTY_PATH;
        // `attr` lives on the stack for the call and its size is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                at as libc::c_uint,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if r < 0 {
            return Err(last_errno());
        }
    }
    rustix::mount::move_mount(
        &tree,
        c"",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// `struct ifreq` with the flags member, as SIOCGIFFLAGS/SIOCSIFFLAGS use it.
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

#[allow(unsafe_code)]
fn loopback_up() -> R {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write a `struct ifreq` (40 bytes, name then
    // a short of flags), which `req` is, on the stack.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(last_errno());
        }
        req.flags |= libc::IFF_UP as i16;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(last_errno());
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn set_ids(uid: u32, gid: u32, groups: Option<&[u32]>, c: &Child<'_>) -> R {
    // Raw system calls: glibc's wrappers would signal the parent's other threads, which the
    // child does not have.
    if let Some(g) = groups {
        // SAFETY: setgroups reads `g.len()` gid_t values from `g`, a live slice of u32 (gid_t).
        if unsafe { libc::syscall(libc::SYS_setgroups, g.len(), g.as_ptr()) } < 0 {
            return Err(last_errno());
        }
    }
    // SAFETY: setresgid/setresuid take integers only.
    if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } < 0 {
        return Err(last_errno());
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } < 0 {
        return Err(last_errno());
    }
    // Changing credentials clears the death signal: arm it again, then make sure the parent
    // did not die in between (it holds the sync pipe open until the exec).
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let mut fds = [rustix::event::PollFd::new(
        c.sync,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&zero))? > 0
        && fds[0].revents().contains(rustix::event::PollFlags::HUP)
    {
        return Err(Errno::CANCELED);
    }
    Ok(())
}

#[allow(unsafe_code)]
fn exit_now() -> ! {
    // SAFETY: as in `report`: the child must not run the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

#[allow(unsafe_code)]
fn exec(path: &CStr, c: &Child<'_>) -> R {
    // SAFETY: `argv` and `envp` are NULL-terminated arrays of pointers into CStrings owned by
    // the plan, all built before the clone and alive here; execve only reads them.
    unsafe { libc::execve(path.as_ptr(), c.argv.as_ptr(), c.envp.as_ptr()) };
    Err(last_errno())
}
