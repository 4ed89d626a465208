//! A directory of a view seen as a view of its own (a `RUN --mount=type=bind,source=dir`).

use super::{Entry, FsView};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// The subtree at `root` of `inner` (a path already resolved in `inner`).
pub struct Rooted<'a> {
    inner: &'a dyn FsView,
    root: PathBuf,
}

impl<'a> Rooted<'a> {
    /// Views `root` of `inner` as `/`.
    pub fn new(inner: &'a dyn FsView, root: impl Into<PathBuf>) -> Self {
        Rooted {
            inner,
            root: root.into(),
        }
    }

    fn map(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl FsView for Rooted<'_> {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        self.inner.lstat(&self.map(path))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        self.inner.read_dir(&self.map(path))
    }
    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        self.inner.open(&self.map(path))
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.read_link(&self.map(path))
    }
    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        self.inner.xattrs(&self.map(path))
    }
}
