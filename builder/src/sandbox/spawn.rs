//! Starting the child in its namespaces, writing its id maps, streaming its output and
//! collecting its status.

use super::child::{self, Child, REPORT_HEADER};
use super::pids::PidsCgroup;
use super::syscalls::Step;
use super::userns::IdMap;
use super::{ExitKind, RunOutcome, SandboxError};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use std::ffi::c_char;
use std::io::Write;

#[allow(unsafe_code)]
fn clone_into(flags: u64, c: &Child<'_>) -> std::io::Result<i32> {
    // SAFETY: clone without CLONE_VM and with a null stack behaves as fork does: the child
    // gets a copy of this thread's memory and continues here with 0. It then only runs
    // `child::main`, which makes system calls on memory prepared before the clone, never
    // allocates or locks, and never returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match r {
        -1 => Err(std::io::Error::last_os_error()),
        0 => child::main(c),
        pid => Ok(pid as i32),
    }
}

fn decode(status: WaitStatus) -> ExitKind {
    if let Some(sig) = status.terminating_signal() {
        ExitKind::Signal(sig)
    } else {
        ExitKind::Code(status.exit_status().unwrap_or(0))
    }
}

/// Kills and reaps the child after a failure on our side.
fn abandon(pid: Pid) {
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
}

fn wait(pid: Pid) -> Result<WaitStatus, SandboxError> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, s))) => return Ok(s),
            Ok(None) | Err(Errno::INTR) => continue,
            Err(e) => return Err(SandboxError::Spawn(e.into())),
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| SandboxError::Spawn(e.into()))
}

/// Turns the child's failure report into an error naming the step.
fn failure(steps: &[Step], report: &[u8]) -> SandboxError {
    let word = |i: usize| [report[i], report[i + 1], report[i + 2], report[i + 3]];
    let index = u32::from_le_bytes(word(0)) as usize;
    let errno = i32::from_le_bytes(word(4));
    let len = u16::from_le_bytes([report[8], report[9]]) as usize;
    let msg = report
        .get(REPORT_HEADER..REPORT_HEADER + len)
        .map(|m| {
            String::from_utf8_lossy(m)
                .trim_end_matches(';')
                .replace(';', "; ")
        })
        .unwrap_or_default();
    let source = std::io::Error::from_raw_os_error(errno);
    let step = steps.get(index);
    let what = step
        .map(Step::describe)
        .unwrap_or_else(|| "prepare the sandboxed process".into());
    let detail = if msg.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {msg})")
    };
    match step {
        Some(Step::MountOverlay { .. }) if errno != libc::ENOENT && errno != libc::ENOTDIR => {
            SandboxError::OverlayUnsupported {
                detail: format!("{what}: {source}{detail}"),
            }
        }
        _ => SandboxError::Setup {
            step: what,
            source,
            detail,
        },
    }
}

/// Starts the planned process with clone `flags` (namespaces), maps ids when `idmap` is given,
/// puts it in `cgroup` before it runs anything, streams its output into `output` and returns
/// how it ended.
pub(crate) fn spawn(
    steps: &[Step],
    flags: u64,
    idmap: Option<&IdMap>,
    cgroup: Option<&PidsCgroup>,
    output: &mut dyn Write,
) -> Result<RunOutcome, SandboxError> {
    let Some(Step::Exec { argv, env, .. }) = steps.last() else {
        return Err(SandboxError::Unsupported(
            "a sequence must end with exec".into(),
        ));
    };
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const c_char> = env.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let (sync_r, sync_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let raw = {
        let c = Child {
            steps,
            argv: &argv_ptrs,
            envp: &env_ptrs,
            sync: &sync_r,
            report: &report_w,
            output: &out_w,
        };
        clone_into(flags, &c).map_err(|e| {
            SandboxError::Spawn(std::io::Error::new(
                e.kind(),
                format!("creating the sandbox's namespaces: {e}"),
            ))
        })?
    };
    drop((sync_r, report_w, out_w));
    let pid = Pid::from_raw(raw).ok_or_else(|| SandboxError::Spawn(Errno::SRCH.into()))?;
    if let Some(c) = cgroup {
        if let Err(e) = c.add(raw) {
            abandon(pid);
            return Err(SandboxError::Spawn(std::io::Error::new(
                e.kind(),
                format!("joining the step's pids cgroup: {e}"),
            )));
        }
    }
    if let Some(map) = idmap {
        if let Err(e) = map.apply(raw) {
            abandon(pid);
            return Err(e);
        }
    }
    if rustix::io::write(&sync_w, &[1]).is_err() {
        // The child died before reading; its report (if any) says why.
    }
    let mut report = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::io::read(&report_r, &mut buf) {
            Ok(0) => break,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => continue,
            Err(e) => {
                abandon(pid);
                return Err(SandboxError::Spawn(e.into()));
            }
        }
    }
    if report.len() >= REPORT_HEADER {
        let _ = wait(pid);
        return Err(failure(steps, &report));
    }
    // The program runs; the sync pipe's end now only tells the child nothing.
    drop(sync_w);
    let mut status = None;
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut fds = [PollFd::new(&out_r, PollFlags::IN)];
        let timeout = if status.is_some() { &zero } else { &tick };
        match rustix::event::poll(&mut fds, Some(timeout)) {
            Ok(0) => {
                // Background processes of an unconfined run may keep the pipe open after the
                // program is gone: once it is, drain what is there and stop.
                if status.is_some() {
                    break;
                }
                if let Ok(Some((_, s))) = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                    status = Some(s);
                }
                continue;
            }
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                abandon(pid);
                return Err(SandboxError::Spawn(e.into()));
            }
        }
        match rustix::io::read(&out_r, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                    abandon(pid);
                    return Err(SandboxError::Output(e));
                }
            }
            Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
            Err(e) => {
                abandon(pid);
                return Err(SandboxError::Spawn(e.into()));
            }
        }
    }
    let status = match status {
        Some(s) => s,
        None => wait(pid)?,
    };
    Ok(RunOutcome {
        exit: decode(status),
    })
}

/// Performs `steps` (ending with [`Step::Exit`]) in a child cloned with `flags`, its ids mapped
/// by `idmap`: whether this machine lets kiln make the namespaces and mounts a mode needs.
/// `Err` holds the clone's error or the failed step's, as a run would report it.
pub(crate) fn probe(steps: &[Step], flags: u64, idmap: Option<&IdMap>) -> Result<(), SandboxError> {
    if !matches!(steps.last(), Some(Step::Exit)) {
        return Err(SandboxError::Unsupported(
            "a probe's sequence must end with exit".into(),
        ));
    }
    let none: [*const c_char; 1] = [std::ptr::null()];
    let (sync_r, sync_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let (_out_r, out_w) = pipe()?;
    let raw = {
        let c = Child {
            steps,
            argv: &none,
            envp: &none,
            sync: &sync_r,
            report: &report_w,
            output: &out_w,
        };
        clone_into(flags, &c).map_err(SandboxError::Spawn)?
    };
    drop((sync_r, report_w, out_w));
    let pid = Pid::from_raw(raw).ok_or_else(|| SandboxError::Spawn(Errno::SRCH.into()))?;
    if let Some(map) = idmap {
        if let Err(e) = map.apply(raw) {
            abandon(pid);
            return Err(e);
        }
    }
    let _ = rustix::io::write(&sync_w, &[1]);
    let mut report = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match rustix::io::read(&report_r, &mut buf) {
            Ok(0) => break,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => continue,
            Err(e) => {
                abandon(pid);
                return Err(SandboxError::Spawn(e.into()));
            }
        }
    }
    let status = wait(pid)?;
    if report.len() >= REPORT_HEADER {
        return Err(failure(steps, &report));
    }
    match decode(status) {
        ExitKind::Code(0) => Ok(()),
        other => Err(SandboxError::Spawn(std::io::Error::other(format!(
            "the probe ended with {other:?}"
        )))),
    }
}
