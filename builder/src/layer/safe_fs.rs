//! Path resolution that cannot leave the extraction target.
//!
//! Choice: every path is resolved component by component from a directory fd of the target,
//! each component opened with `O_NOFOLLOW | O_DIRECTORY`, and the final component is only ever
//! touched through `*at` calls on its parent's fd that do not follow symlinks. `..` is refused
//! lexically before any syscall. This needs no `openat2` (which seccomp profiles of CI
//! containers often block with ENOSYS, and which older kernels lack) and refuses a symlink
//! anywhere in the parent chain, including one this same layer created a moment earlier,
//! naming the component. `RESOLVE_BENEATH` alone would still follow a symlink that stays
//! inside the tree; refusing all of them is stricter and matches what a layer may contain.

use super::error::LayerError;
use crate::path_io::IoAt;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A layer path split into its components: a leading `/` and `.` components dropped (as
/// Docker does), `..` refused.
pub(crate) fn clean(entry: &str, raw: &[u8]) -> Result<Vec<Vec<u8>>, LayerError> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(LayerError::Unsafe {
                    entry: entry.to_string(),
                    reason: "path has a `..` component".into(),
                })
            }
            _ if c.contains(&0) => {
                return Err(LayerError::Malformed {
                    entry: entry.to_string(),
                    reason: "path holds a NUL byte".into(),
                })
            }
            _ => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// Joins components with `/`.
pub(crate) fn rel(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

pub(crate) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// The extraction target, opened once.
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Root {
    /// Opens (creating) the target directory.
    pub(crate) fn open(path: &Path) -> Result<Root, LayerError> {
        std::fs::create_dir_all(path).at(path)?;
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty()).at(path)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path of a layer path, for error messages.
    pub(crate) fn host(&self, rel: &[u8]) -> PathBuf {
        self.path.join(os(rel))
    }

    /// An io error at a layer path.
    pub(crate) fn err(&self, rel: &[u8], e: impl Into<std::io::Error>) -> LayerError {
        crate::path_io::PathIo::new(self.host(rel), e).into()
    }

    /// Opens the directory `comps` below the root without following any symlink. Missing
    /// directories are created (mode 0755, as tar readers do) when `create`; otherwise a
    /// missing one gives `Ok(None)`.
    pub(crate) fn open_dir(
        &self,
        comps: &[Vec<u8>],
        create: bool,
        entry: &str,
    ) -> Result<Option<OwnedFd>, LayerError> {
        self.open_below(&self.fd, comps, 0, create, entry)
    }

    /// [`Self::open_dir`] from `start`, the directory of `comps[..from]`, already open.
    pub(crate) fn open_below(
        &self,
        start: &OwnedFd,
        comps: &[Vec<u8>],
        from: usize,
        create: bool,
        entry: &str,
    ) -> Result<Option<OwnedFd>, LayerError> {
        if from >= comps.len() {
            return rustix::fs::openat(start, ".", DIR_FLAGS, Mode::empty())
                .map(Some)
                .map_err(|e| self.err(&rel(comps), e));
        }
        let mut cur: Option<OwnedFd> = None;
        for (i, c) in comps.iter().enumerate().skip(from) {
            let parent = cur.as_ref().unwrap_or(start);
            let next = match rustix::fs::openat(parent, os(c), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(parent, os(c), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.err(&rel(&comps[..=i]), e)),
                    }
                    rustix::fs::openat(parent, os(c), DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.refusal(parent, comps, i, entry, e))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(self.refusal(parent, comps, i, entry, e)),
            };
            cur = Some(next);
        }
        Ok(cur)
    }

    /// Why component `i` could not be opened as a directory: a symlink is refused as unsafe.
    fn refusal(
        &self,
        parent: &OwnedFd,
        comps: &[Vec<u8>],
        i: usize,
        entry: &str,
        e: Errno,
    ) -> LayerError {
        let at = rel(&comps[..=i]);
        match rustix::fs::statat(parent, os(&comps[i]), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                LayerError::Unsafe {
                    entry: entry.to_string(),
                    reason: format!(
                        "its parent `{}` is a symlink; extraction never follows symlinks",
                        String::from_utf8_lossy(&at)
                    ),
                }
            }
            Ok(_) => LayerError::Malformed {
                entry: entry.to_string(),
                reason: format!(
                    "its parent `{}` is not a directory",
                    String::from_utf8_lossy(&at)
                ),
            },
            Err(_) => self.err(&at, e),
        }
    }
}

/// What is at `name` in `dir`, without following a symlink; `None` if nothing.
pub(crate) fn kind_at(dir: &OwnedFd, name: &[u8]) -> Result<Option<FileType>, Errno> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` from `dir`, with everything below it if it is a directory; never follows
/// a symlink. Nothing there is fine.
pub(crate) fn remove_all_at(dir: &OwnedFd, name: &[u8]) -> Result<(), Errno> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = rustix::fs::openat(dir, os(name), DIR_FLAGS, Mode::empty())?;
            for child in list(&sub)? {
                remove_all_at(&sub, &child)?;
            }
            rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)
        }
        Some(_) => rustix::fs::unlinkat(dir, os(name), AtFlags::empty()),
    }
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn list(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}
