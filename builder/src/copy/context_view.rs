//! The build context as an [`FsView`], `.dockerignore` applied: what COPY and ADD may read.

use crate::context::walk::BuildContext;
use crate::context::ContextError;
use crate::fsview::{DirView, Entry, FsView};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

/// The build context directory seen as a tree rooted at `/`, with every path that
/// `.dockerignore` excludes invisible (missing for `lstat`, absent from `read_dir`, refused by
/// `open`), also when reached through a glob or a symlink.
#[derive(Debug, Clone)]
pub struct ContextView {
    context: BuildContext,
    dir: DirView,
}

impl ContextView {
    /// Views an already listed context.
    pub fn new(context: BuildContext) -> Self {
        let dir = DirView::new(context.root());
        ContextView { context, dir }
    }

    /// Lists the context at `root` with its `.dockerignore` and views it.
    ///
    /// # Errors
    /// Those of [`BuildContext::open`].
    pub fn open(root: &Path) -> Result<Self, ContextError> {
        Ok(Self::new(BuildContext::open(root)?))
    }

    /// The listed context.
    pub fn context(&self) -> &BuildContext {
        &self.context
    }

    fn visible(&self, path: &Path) -> bool {
        let rel = path.to_string_lossy();
        let rel = rel.trim_start_matches('/');
        rel.is_empty() || self.context.is_visible(rel)
    }

    fn hidden(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: excluded by .dockerignore", path.display()),
        )
    }
}

impl FsView for ContextView {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        if !self.visible(path) {
            return Ok(None);
        }
        self.dir.lstat(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        if !self.visible(path) {
            return Err(Self::hidden(path));
        }
        let names = self.dir.read_dir(path)?;
        Ok(names
            .into_iter()
            .filter(|n| self.visible(&path.join(n)))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        if !self.visible(path) {
            return Err(Self::hidden(path));
        }
        self.dir.open(path)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        if !self.visible(path) {
            return Err(Self::hidden(path));
        }
        self.dir.read_link(path)
    }

    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        if !self.visible(path) {
            return Err(Self::hidden(path));
        }
        self.dir.xattrs(path)
    }
}
