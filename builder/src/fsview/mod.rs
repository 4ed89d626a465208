//! Read-only views of a filesystem tree as a build step sees it: a plain directory, the merged
//! layers of a parent image, a stage's result, the build context. COPY reads its sources and
//! the destination's parent through this trait, and user and group names are looked up in it,
//! without mounting anything.
//!
//! Paths are absolute within the view (`/etc/passwd`). Methods never follow a symlink in the
//! last component; [`resolve`] follows symlinks the way a process chrooted into the view would,
//! so a link to `/etc` never leaves the tree.

mod dir;
mod rooted;

pub(crate) use dir::entry as dir_entry;
pub(crate) use dir::kind as file_kind;
pub use dir::{host_xattrs, DirView};
pub use rooted::Rooted;

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

/// An entry's metadata (as `lstat` reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File type.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files; link length for symlinks).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Identity of the file for hard-link detection (device, inode) within one view.
    pub id: (u64, u64),
}

/// A read-only tree.
pub trait FsView: Send + Sync {
    /// The entry at `path` without following a symlink there; `None` when nothing is there
    /// (also when a parent is missing or is not a directory).
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>>;
    /// Names in the directory at `path`, sorted bytewise.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// Opens the regular file at `path` for reading.
    fn open(&self, path: &Path) -> io::Result<std::fs::File>;
    /// The target of the symlink at `path`.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// Extended attributes of `path` (name, value), sorted by name.
    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>>;
}

/// Most symlinks followed in one resolution, as Linux allows (`ELOOP` beyond).
const MAX_LINKS: usize = 40;

/// Resolves `path` inside `view` as a process whose root is the view would: `..` stops at `/`,
/// absolute link targets restart at the view's root. The last component is followed only when
/// `follow_last`. Missing components are kept as they are (the result may not exist).
pub fn resolve(view: &dyn FsView, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut links = 0;
    let mut done = PathBuf::from("/");
    let mut todo: Vec<OsString> = components(path);
    todo.reverse();
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&c);
        let last = todo.is_empty();
        match view.lstat(&next)? {
            Some(e) if e.kind == Kind::Symlink && (!last || follow_last) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        path.display()
                    )));
                }
                let target = view.read_link(&next)?;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            _ => done = next,
        }
    }
    Ok(done)
}

/// The normal and `..` components of `path` (`.` and the root dropped).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Reads the whole (small) file at `path` after following symlinks, `None` when missing.
pub fn read_small(view: &dyn FsView, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let p = resolve(view, path, true)?;
    match view.lstat(&p)? {
        Some(e) if e.kind == Kind::File => {
            let mut buf = Vec::new();
            io::Read::read_to_end(&mut view.open(&p)?, &mut buf)?;
            Ok(Some(buf))
        }
        _ => Ok(None),
    }
}
