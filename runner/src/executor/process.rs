//! One child process in its own process group, its stdout and stderr merged into the
//! trace, stopped (with its whole group) when the control level says so.

use super::{Control, ExecutorError};
use crate::trace::Trace;
use rustix::process::{kill_process_group, Pid, Signal};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// How a stage's script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEnd {
    /// It exited with this code (128+signal when killed by a signal).
    Exited(i32),
    /// It was stopped because control reached this level.
    Stopped(Control),
    /// Its own time limit passed.
    TimedOut,
}

/// Grace between SIGTERM and SIGKILL when stopping a process group.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long output is still read after the main process exited.
const DRAIN: Duration = Duration::from_secs(2);

fn signal_group(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // ESRCH (the group is already gone) is the expected case after an exit.
        let _ = kill_process_group(pid, sig);
    }
}

/// SIGKILLs the process group when dropped armed: if the job's future is dropped (the
/// runner exiting with the job still running), `kill_on_drop` alone would kill only the
/// direct child and leave the script's own children running.
struct GroupGuard {
    pid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pid, Signal::KILL);
        }
    }
}

/// Returns once `control` is at `level` or above; never if the job layer is gone.
pub(crate) async fn reached(control: &mut watch::Receiver<Control>, level: Control) {
    while *control.borrow_and_update() < level {
        if control.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `cmd`, copying its output into `trace`, until it exits, `control` reaches
/// `stop_at`, or `limit` passes.
pub(crate) async fn run(
    mut cmd: tokio::process::Command,
    program: &str,
    trace: &Trace,
    control: &mut watch::Receiver<Control>,
    stop_at: Control,
    limit: Option<Duration>,
) -> Result<StageEnd, ExecutorError> {
    let spawn_err = |source| ExecutorError::Spawn {
        program: program.to_owned(),
        source,
    };
    let (reader, writer) = rustix::pipe::pipe().map_err(|e| spawn_err(e.into()))?;
    let writer2 = writer.try_clone().map_err(spawn_err)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // The command holds our copies of the pipe's write end: without dropping it the
    // reader would never see end-of-file.
    drop(cmd);
    let pid = child.id().unwrap_or(0);
    let mut guard = GroupGuard { pid, armed: true };

    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(reader).map_err(spawn_err)?;
    let out = trace.clone();
    let mut pump = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.write(&buf[..n]),
            }
        }
    });

    let deadline = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);

    let stop = |why| {
        let sig = match why {
            StageEnd::Stopped(Control::Kill) => Signal::KILL,
            _ => Signal::TERM,
        };
        signal_group(pid, sig);
        why
    };
    let end = loop {
        let level = *control.borrow();
        if level >= stop_at {
            break stop(StageEnd::Stopped(level));
        }
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(spawn_err)?;
                use std::os::unix::process::ExitStatusExt;
                let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1);
                break StageEnd::Exited(code);
            }
            changed = control.changed() => {
                if changed.is_err() {
                    // The job layer is gone: nobody will report; stop.
                    break stop(StageEnd::Stopped(Control::Abort));
                }
            }
            _ = &mut deadline => break stop(StageEnd::TimedOut),
        }
    };
    if !matches!(end, StageEnd::Exited(_)) {
        tokio::select! {
            _ = child.wait() => {},
            _ = tokio::time::sleep(KILL_GRACE) => {},
            _ = reached(control, Control::Kill) => {},
        }
        // Also what ignored SIGTERM while the script itself obeyed it: a stopped job
        // leaves nothing running.
        signal_group(pid, Signal::KILL);
        let _ = child.wait().await;
    }
    // Background children left behind by the script would keep the pipe open forever.
    if tokio::time::timeout(DRAIN, &mut pump).await.is_err() {
        signal_group(pid, Signal::KILL);
        if tokio::time::timeout(DRAIN, &mut pump).await.is_err() {
            pump.abort();
        }
    }
    guard.armed = false;
    Ok(end)
}
