//! kiln's own user namespace. Without root, kiln can give the files it writes (extracted
//! layers, COPY, WORKDIR) their image owners, read what a step left unreadable and see a
//! step's `chown` to another id only from inside a user namespace where it is root and the
//! user's subordinate ids (`/etc/subuid`, `/etc/subgid`) are the image's 1, 2, ... So a kiln
//! run by another user with such ranges re-executes itself there once, at the start, as
//! `buildah unshare` and rootlesskit do; its RUN steps then run in that namespace too, as
//! rootless Docker's containers do in rootlesskit's.
//!
//! Files kiln leaves in its cache then belong to subordinate ids on the host: remove the cache
//! with `buildah unshare rm -rf` or as root (as with buildah's and podman's storage).

use super::userns::IdMap;
use super::SandboxError;
use rustix::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// Set in the re-executed kiln (`1`); `0` keeps kiln out of its own namespace.
pub const ENV: &str = "KILN_USERNS";

/// What [`enter_own_namespace`] did.
#[derive(Debug)]
pub enum Entered {
    /// Nothing to do here: root, already inside, no subordinate ranges, or `KILN_USERNS=0`.
    NotNeeded,
    /// The re-executed kiln ran in the namespace and ended with this exit code.
    Ran(i32),
}

/// Re-executes this kiln (same arguments, stdio and environment, plus [`ENV`]`=1`) in a new
/// user namespace with the current user as root and its subordinate ranges as 1.., and waits
/// for it, passing on SIGINT, SIGTERM and SIGHUP. Call it before any thread starts.
pub fn enter_own_namespace() -> Result<Entered, SandboxError> {
    if crate::layer::owners::settable() || std::env::var_os(ENV).is_some() {
        return Ok(Entered::NotNeeded);
    }
    let map = IdMap::for_current_user();
    if !matches!(map, IdMap::Ranges { .. }) {
        return Ok(Entered::NotNeeded);
    }
    let exe = std::env::current_exe()
        .map_err(|e| SandboxError::UserNamespace(format!("finding kiln's own binary: {e}")))?;
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| SandboxError::Spawn(e.into()))
    };
    // `ready`: the child says it has unshared (and its pid); `go`: its ids are mapped.
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let raw = (
        ready_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        go_r.as_raw_fd(),
        go_w.as_raw_fd(),
    );
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(ENV, "1");
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (close, unshare, getpid, write, read, prctl) on values copied before the fork; it does
    // not allocate or lock.
    unsafe {
        cmd.pre_exec(move || child_side(raw));
    }
    // The mapping waits for the child's word in a thread: spawn returns only after the exec,
    // which waits for the mapping.
    let mapper = std::thread::spawn(move || map_child(&map, ready_r, go_w));
    let spawned = cmd.spawn();
    drop((ready_w, go_r));
    let mapped = mapper.join().unwrap_or_else(|_| {
        Err(SandboxError::UserNamespace(
            "the mapping thread died".into(),
        ))
    });
    let mut child = match (spawned, mapped) {
        (Ok(c), Ok(())) => c,
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(())) => {
            return Err(SandboxError::Spawn(std::io::Error::new(
                e.kind(),
                format!("re-executing kiln in its user namespace: {e}"),
            )))
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    forward_signals();
    let status = child.wait().map_err(SandboxError::Spawn)?;
    use std::os::unix::process::ExitStatusExt;
    Ok(Entered::Ran(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    ))
}

/// The child's half, between fork and exec: leave the parent's pipe ends, unshare, tell the
/// parent, wait until it has written the maps (exec then gives the new root its capabilities).
fn child_side((ready_r, ready_w, go_r, go_w): (i32, i32, i32, i32)) -> std::io::Result<()> {
    let errno = |r: libc::c_long| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: plain system calls on file descriptors this child owns (its copies of the pipe
    // ends) and on a stack buffer.
    unsafe {
        libc::close(ready_r);
        libc::close(go_w);
        // A kiln left alone when its parent dies would build on unseen.
        errno(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) as libc::c_long)?;
        errno(libc::unshare(libc::CLONE_NEWUSER) as libc::c_long)?;
        let pid = libc::getpid().to_le_bytes();
        errno(libc::write(ready_w, pid.as_ptr().cast(), pid.len()) as libc::c_long)?;
        let mut b = [0u8; 1];
        if errno(libc::read(go_r, b.as_mut_ptr().cast(), 1) as libc::c_long)? != 1 {
            return Err(std::io::Error::other("kiln's ids were not mapped"));
        }
    }
    Ok(())
}

/// The parent's half: wait for the child's pid, write its maps, let it go. Dropping `go`
/// without a byte (on any failure) makes the child give up.
fn map_child(map: &IdMap, ready: OwnedFd, go: OwnedFd) -> Result<(), SandboxError> {
    let mut pid = [0u8; 4];
    let mut got = 0;
    while got < pid.len() {
        match rustix::io::read(&ready, &mut pid[got..]) {
            Ok(0) => {
                return Err(SandboxError::UserNamespace(
                    "the re-executed kiln could not make its user namespace".into(),
                ))
            }
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(SandboxError::Spawn(e.into())),
        }
    }
    map.apply(i32::from_le_bytes(pid))?;
    rustix::io::write(&go, &[1]).map_err(|e| SandboxError::Spawn(e.into()))?;
    Ok(())
}

/// The re-executed kiln, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        #[allow(unsafe_code)]
        // SAFETY: kill is async-signal-safe; `pid` is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Passes the signals a runner or a terminal sends kiln on to the re-executed kiln, which
/// cleans up and exits; the parent then ends with its code.
fn forward_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        #[allow(unsafe_code)]
        // SAFETY: installs a handler that only loads an atomic and calls kill.
        unsafe {
            libc::signal(sig, pass_on as *const () as libc::sighandler_t);
        }
    }
}
