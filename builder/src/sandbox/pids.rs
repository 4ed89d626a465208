//! The pids limit of a RUN step: a child cgroup of kiln's own with `pids.max`, where kiln may
//! make one: cgroup v1's pids hierarchy, or v2 when the pids controller is enabled for the
//! children of kiln's cgroup. Elsewhere (rootless without a delegated cgroup, a container's
//! cgroup v2 with no controller delegated) steps run without a limit, said once in the log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Default `pids.max` of a step (Podman's default; Docker sets none).
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;

/// A step's cgroup, removed when dropped.
pub(crate) struct PidsCgroup {
    dir: PathBuf,
}

/// The cgroup under which kiln may make a child with a pids controller.
fn parent() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "pids") {
            return Ok(Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/')));
        }
    }
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        let enabled =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        if enabled.split_whitespace().any(|c| c == "pids") {
            return Ok(dir);
        }
        return Err(format!(
            "the pids controller is not enabled for the children of kiln's cgroup {}",
            dir.display()
        ));
    }
    Err("no pids cgroup controller".into())
}

/// Removes the empty step cgroups a killed kiln left behind (its drop never ran).
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("kiln-step-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            // A cgroup with processes in it is not removed.
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

impl PidsCgroup {
    /// Makes a cgroup limited to `limit` processes, or says once why steps run without one.
    pub(crate) fn create(limit: u32) -> Option<PidsCgroup> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let made = parent().and_then(|p| {
            sweep(&p);
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let dir = p.join(format!("kiln-step-{}-{n}", std::process::id()));
            std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let cgroup = PidsCgroup { dir };
            let max = cgroup.dir.join("pids.max");
            std::fs::write(&max, limit.to_string())
                .map_err(|e| format!("{}: {e}", max.display()))?;
            Ok(cgroup)
        });
        match made {
            Ok(c) => Some(c),
            Err(why) => {
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    eprintln!("kiln: note: RUN steps run without a pids limit: {why}")
                });
                None
            }
        }
    }

    /// Moves process `pid` (the step, before it starts its program) into the cgroup.
    pub(crate) fn add(&self, pid: i32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // The step's processes are gone once it ends, but the kernel may still be releasing
        // them for a moment (EBUSY).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
