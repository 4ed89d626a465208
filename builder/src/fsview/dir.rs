//! A plain directory as a view.

use super::{Entry, FsView, Kind};
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A directory on the host seen as a tree rooted at `/`.
///
/// Paths given to it must have no symlink in a parent component (pass them through
/// [`super::resolve`] first): the host resolves parents, so a parent symlink would be followed
/// outside the tree. Our trees are not changed by others while viewed, so checking once is
/// enough.
#[derive(Debug, Clone)]
pub struct DirView {
    root: PathBuf,
}

impl DirView {
    /// Views the tree at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirView { root: root.into() }
    }

    /// The host path of `path` in the view.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        self.root.join(rel)
    }
}

/// The [`Kind`] of a host file type.
pub(crate) fn kind(ft: std::fs::FileType) -> Kind {
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    }
}

/// Converts host metadata to an [`Entry`].
pub(crate) fn entry(m: &std::fs::Metadata) -> Entry {
    Entry {
        kind: kind(m.file_type()),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
        mtime: m.mtime(),
        rdev: m.rdev(),
        nlink: m.nlink(),
        id: (m.dev(), m.ino()),
    }
}

impl FsView for DirView {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        match std::fs::symlink_metadata(self.host_path(path)) {
            Ok(m) => Ok(Some(entry(&m))),
            // ENOENT, or ENOTDIR when a parent is a file: nothing is there.
            Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut names = std::fs::read_dir(self.host_path(path))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW: the last component is never a link the caller did not resolve.
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(self.host_path(path))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(self.host_path(path))
    }

    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        host_xattrs(&self.host_path(path))
    }
}

/// All extended attributes of the host file `path` (not following a symlink), sorted by name;
/// none on filesystems without xattrs.
pub fn host_xattrs(path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    use std::os::unix::ffi::OsStrExt;
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        // An attribute removed between list and get is simply gone.
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; size];
        let n = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(n);
        out.push((name.to_os_string(), value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{read_small, resolve};
    use super::*;

    #[test]
    fn resolve_stays_inside_the_view() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../etc", r.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let v = DirView::new(r);
        assert_eq!(
            resolve(&v, Path::new("/abs/passwd"), true).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            resolve(&v, Path::new("/up/passwd"), true).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            resolve(&v, Path::new("/abs"), false).unwrap(),
            Path::new("/abs")
        );
        assert_eq!(
            read_small(&v, Path::new("/abs/passwd")).unwrap().unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert!(resolve(&v, Path::new("/loop"), true).is_err());
        assert_eq!(v.lstat(Path::new("/missing/x")).unwrap(), None);
        assert_eq!(v.lstat(Path::new("/etc/passwd/x")).unwrap(), None);
        assert_eq!(
            v.lstat(Path::new("/abs")).unwrap().unwrap().kind,
            Kind::Symlink
        );
        assert_eq!(
            v.read_dir(Path::new("/")).unwrap(),
            ["abs", "etc", "loop", "up"]
        );
    }
}
