//! A merged view copied into a plain directory, the root a step runs in without overlay.

use super::copy::{Content, Copier, Node};
use crate::fsview::{Entry, FsView, Kind};
use crate::path_io::IoAt;
use crate::snapshot::error::SnapshotError;
use std::path::{Path, PathBuf};

/// What [`materialise`] did.
#[derive(Debug, Clone, Default)]
pub struct Materialised {
    /// Entries created (the root not counted).
    pub entries: u64,
    /// What could not be reproduced without privilege (device nodes, owners, xattrs).
    pub skipped: Vec<String>,
}

pub(crate) fn node(e: &Entry, mtime_nsec: i64) -> Node {
    Node {
        kind: e.kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: (e.mtime, mtime_nsec),
        rdev: e.rdev,
        link_id: (e.kind != Kind::Dir && e.nlink > 1).then_some(e.id),
    }
}

/// Copies `view` into `dest` (created if missing, expected empty) keeping owners, modes
/// (setuid too), xattrs, hard links and times, and device nodes where permitted.
pub fn materialise(view: &dyn FsView, dest: &Path) -> Result<Materialised, SnapshotError> {
    std::fs::create_dir_all(dest).at(dest)?;
    let mut copier = Copier::default();
    let mut done = Materialised::default();
    let at = |p: &Path| dest.join(p.strip_prefix("/").unwrap_or(p));
    let mut stack = vec![PathBuf::from("/")];
    while let Some(p) = stack.pop() {
        let Some(e) = view.lstat(&p).at(&p)? else {
            continue;
        };
        let content = match e.kind {
            Kind::File => Content::File(view.open(&p).at(&p)?),
            Kind::Symlink => Content::Link(view.read_link(&p).at(&p)?),
            _ => Content::None,
        };
        let xattrs = view.xattrs(&p).at(&p)?;
        let dst = at(&p);
        copier.put(&dst, &node(&e, 0), content, &xattrs).at(&dst)?;
        if p != Path::new("/") {
            done.entries += 1;
        }
        if e.kind == Kind::Dir {
            let names = view.read_dir(&p).at(&p)?;
            // Reversed so the stack pops them in order: hard links point at the first name.
            stack.extend(names.into_iter().rev().map(|n| p.join(n)));
        }
    }
    copier.finish().at(dest)?;
    done.skipped = copier.skipped;
    Ok(done)
}
