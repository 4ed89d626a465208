//! The fallback without overlay, as kaniko does it: copy the parent into a plain directory,
//! record its metadata, let the step change it, then write what changed into an upper
//! directory. Content is hashed only where metadata cannot tell (a file written within the
//! second the manifest was recorded).

mod copy;
mod diff;
mod manifest;
mod materialise;

pub use diff::{diff, Diff};
pub use manifest::{record, Manifest, Record};
pub use materialise::{materialise, Materialised};

use crate::path_io::IoAt;
use crate::snapshot::error::SnapshotError;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Walks `root` depth first (names sorted, parents before children), calling `f` with each
/// entry's relative path (`""` for the root), host path and metadata. Other filesystems
/// mounted inside (a sandbox's `/proc`) are passed to `f` but not entered.
fn walk(
    root: &Path,
    mut f: impl FnMut(&[u8], &Path, &Metadata) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let meta = std::fs::symlink_metadata(root).at(root)?;
    let dev = meta.dev();
    f(b"", root, &meta)?;
    let mut stack: Vec<(Vec<u8>, PathBuf)> = vec![(Vec::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).at(&dir)? {
            names.push(e.at(&dir)?.file_name());
        }
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let abs = dir.join(&name);
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(name.as_bytes());
            let m = match std::fs::symlink_metadata(&abs) {
                Ok(m) => m,
                // Removed since listed (a step's background process): it is simply not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(crate::path_io::PathIo::new(&abs, e).into()),
            };
            f(&r, &abs, &m)?;
            if m.is_dir() && m.dev() == dev {
                subdirs.push((r, abs));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}
