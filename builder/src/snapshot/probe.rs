//! Whether overlay can be mounted here: one real mount, in a child's private mount namespace
//! (`unshare -m`, and `-U` with `userxattr` when not root), on the cache's filesystem (an
//! upper on overlayfs or on a filesystem without xattrs fails here as it would in a build).

use super::dirs::Scratch;
use crate::cache_dir::CacheDir;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// How steps get their filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Overlay mounts over the cached layers.
    Overlay,
    /// Overlay cannot be mounted: copy the parent and diff trees, for `reason`.
    TreeDiff {
        /// Why overlay is not used (for the log).
        reason: String,
    },
}

/// Answers per cache directory, found once per process.
static PROBED: Mutex<Option<HashMap<PathBuf, Mode>>> = Mutex::new(None);

/// Whether overlay can be mounted for builds using `dir`, with the reason when not.
pub fn probe(dir: &CacheDir) -> Mode {
    let key = dir.extracted_layers();
    let mut probed = PROBED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = probed.get_or_insert_with(HashMap::new).get(&key) {
        return m.clone();
    }
    let m = probe_now(dir);
    probed
        .get_or_insert_with(HashMap::new)
        .insert(key, m.clone());
    m
}

fn probe_now(dir: &CacheDir) -> Mode {
    let tree_diff = |reason: String| Mode::TreeDiff { reason };
    let scratch = match Scratch::new(&dir.scratch(), "probe-") {
        Ok(s) => s,
        Err(e) => return tree_diff(format!("cannot make a probe directory: {e}")),
    };
    let d = &scratch.0;
    for sub in ["l", "u", "w", "m"] {
        if let Err(e) = std::fs::create_dir(d.join(sub)) {
            return tree_diff(format!("cannot make a probe directory: {e}"));
        }
    }
    let root = crate::layer::owners::host_root();
    // Without root, builds mount in a user namespace with `userxattr`.
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},{}",
        d.join("l").display(),
        d.join("u").display(),
        d.join("w").display(),
        super::mount_options::option_string(!root)
    );
    let mut cmd = Command::new("unshare");
    // Root in a user namespace mounts in it as its steps do, with `userxattr`.
    if crate::layer::owners::settable() {
        cmd.arg("--mount");
    } else {
        cmd.args(["--user", "--map-root-user", "--mount"]);
    }
    // The mount dies with the child's namespace: nothing to unmount.
    cmd.args(["--", "mount", "-t", "overlay", "overlay", "-o"])
        .arg(&opts)
        .arg(d.join("m"));
    match cmd.output() {
        Ok(out) if out.status.success() => Mode::Overlay,
        Ok(out) => {
            // mount(8) explains in several lines and points at dmesg: one line for the log,
            // and the usual cause named when it is the one.
            let said = String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.contains("dmesg"))
                .collect::<Vec<_>>()
                .join("; ");
            let cause = if on_overlayfs(&dir.scratch()) {
                " (the cache directory is on overlayfs, which the kernel refuses as an upper \
                 directory: pass --cache-dir on another filesystem, such as a volume)"
            } else {
                ""
            };
            tree_diff(format!(
                "overlay mount failed{}: {said}{cause}",
                if root { "" } else { " in a user namespace" },
            ))
        }
        Err(e) => tree_diff(format!("cannot run unshare to try an overlay mount: {e}")),
    }
}

/// Whether `dir` is on an overlayfs mount.
fn on_overlayfs(dir: &std::path::Path) -> bool {
    const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type as u64 == OVERLAYFS_SUPER_MAGIC)
}
