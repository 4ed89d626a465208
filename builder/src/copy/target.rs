//! The step's destination tree: the upper directory over the (read-only) parent, resolved as
//! one merged tree and written only in the upper.
//!
//! Invariant that keeps the merged lookup simple (upper first, else parent): nothing here puts
//! a non-directory in the upper where the parent has a directory (that is the "cannot replace
//! directory" error) or a directory where the parent has something else (the "cannot copy to
//! non-directory" error), and no whiteouts are ever made, so an upper entry never hides a
//! parent subtree.

use super::{CopyError, CopyStats};
use crate::fsview::{resolve, DirView, Entry, FsView, Kind};
use crate::layer::owners::{self, is_owner_xattr, recorded_owner, HostIds};
use crate::path_io::IoAt;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Upper first, parent below.
pub(crate) struct Merged<'a> {
    parent: &'a dyn FsView,
    upper: &'a DirView,
}

impl FsView for Merged<'_> {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        match self.upper.lstat(path)? {
            Some(e) => Ok(Some(e)),
            None => self.parent.lstat(path),
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let mut names = match self.parent.lstat(path)? {
            Some(e) if e.kind == Kind::Dir => self.parent.read_dir(path)?,
            _ => Vec::new(),
        };
        if let Some(e) = self.upper.lstat(path)? {
            if e.kind == Kind::Dir {
                names.extend(self.upper.read_dir(path)?);
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        match self.upper.lstat(path)? {
            Some(_) => self.upper.open(path),
            None => self.parent.open(path),
        }
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        match self.upper.lstat(path)? {
            Some(_) => self.upper.read_link(path),
            None => self.parent.read_link(path),
        }
    }

    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        match self.upper.lstat(path)? {
            Some(_) => self.upper.xattrs(path),
            None => self.parent.xattrs(path),
        }
    }
}

/// Metadata to give a written entry.
pub(crate) struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// `None` for symlinks (their mode is not settable).
    pub mode: Option<u32>,
    pub mtime: i64,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Attributes overlay interprets itself, and kiln's owner record (the owner is given anew):
/// never copied into an upper directory.
pub(crate) fn keep_xattr(name: &OsString) -> bool {
    let n = name.to_string_lossy();
    !n.starts_with("trusted.overlay.")
        && !n.starts_with("user.overlay.")
        && !is_owner_xattr(n.as_bytes())
}

/// Writes into the upper directory, resolving in the merged tree.
pub(crate) struct Target<'a> {
    parent: &'a dyn FsView,
    upper: DirView,
    kw: &'static str,
    /// Directories copied up from the parent, with the parent's mtime to restore at the end
    /// (adding children changed it).
    copied_up: BTreeMap<PathBuf, i64>,
    /// How owners on the host read as image owners (and whether files can be chowned).
    ids: HostIds,
    pub stats: CopyStats,
}

impl<'a> Target<'a> {
    pub(crate) fn new(parent: &'a dyn FsView, upper: &Path, kw: &'static str) -> Self {
        Target {
            parent,
            upper: DirView::new(upper),
            kw,
            copied_up: BTreeMap::new(),
            ids: crate::sandbox::host_ids(),
            stats: CopyStats::default(),
        }
    }

    pub(crate) fn merged(&self) -> Merged<'_> {
        Merged {
            parent: self.parent,
            upper: &self.upper,
        }
    }

    fn host(&self, p: &Path) -> PathBuf {
        self.upper.host_path(p)
    }

    /// The image owner of `e`, an entry of the parent or of another stage read from the host
    /// (whose owners are kiln's own when it is not root), with its xattrs.
    pub(crate) fn image_owner(&self, e: &Entry, xattrs: &[(OsString, Vec<u8>)]) -> (u32, u32) {
        let recorded = recorded_owner(xattrs.iter().map(|(n, v)| (n.as_bytes(), &v[..])));
        self.ids.image_owner(e.uid, e.gid, recorded)
    }

    /// Gives `host` the image owner `uid`:`gid`: by chown as root, else by a record for the
    /// layer writer.
    fn set_owner(&self, host: &Path, (uid, gid): (u32, u32)) -> Result<(), CopyError> {
        if self.ids == HostIds::Same {
            return std::os::unix::fs::lchown(host, Some(uid), Some(gid))
                .at(host)
                .map_err(Into::into);
        }
        owners::record(uid, gid, |k, v| {
            rustix::fs::lsetxattr(host, k, v, rustix::fs::XattrFlags::empty())
        })
        .at(host)
        .map_err(Into::into)
    }

    /// Resolves `p` in the merged tree (symlinks followed inside it).
    pub(crate) fn resolve(&self, p: &Path, follow_last: bool) -> Result<PathBuf, CopyError> {
        resolve(&self.merged(), p, follow_last)
            .at(p)
            .map_err(Into::into)
    }

    /// The merged entry at `p` (not following a final symlink) and whether the upper has it.
    pub(crate) fn lstat(&self, p: &Path) -> Result<Option<(Entry, bool)>, CopyError> {
        if let Some(e) = self.upper.lstat(p).at(p)? {
            return Ok(Some((e, true)));
        }
        Ok(self.parent.lstat(p).at(p)?.map(|e| (e, false)))
    }

    fn not_dir(&self, p: &Path) -> CopyError {
        CopyError::NotADirectory {
            keyword: self.kw,
            path: p.to_path_buf(),
        }
    }

    /// Makes the upper hold the directory `p` (already resolved, existing in the merged tree as
    /// a directory) and every ancestor, copying parent directories up.
    pub(crate) fn ensure_upper_dir(&mut self, p: &Path) -> Result<(), CopyError> {
        let mut cur = PathBuf::from("/");
        for c in p.components().skip(1) {
            cur.push(c);
            match self.lstat(&cur)? {
                Some((e, true)) if e.kind == Kind::Dir => {}
                Some((e, false)) if e.kind == Kind::Dir => self.copy_up(&cur, &e)?,
                _ => return Err(self.not_dir(&cur)),
            }
        }
        Ok(())
    }

    fn copy_up(&mut self, p: &Path, e: &Entry) -> Result<(), CopyError> {
        let host = self.host(p);
        std::fs::create_dir(&host).at(&host)?;
        let xattrs = self.parent.xattrs(p).at(p)?;
        let (uid, gid) = self.image_owner(e, &xattrs);
        self.apply(
            p,
            &Meta {
                uid,
                gid,
                mode: Some(e.mode),
                mtime: e.mtime,
                xattrs,
            },
        )?;
        self.copied_up.insert(p.to_path_buf(), e.mtime);
        Ok(())
    }

    /// `mkdir -p` of `p` in the merged tree (symlinks followed): missing directories are
    /// created 0755 owned by `owner`, as BuildKit's `MkdirAll`. Existing ones are left alone
    /// (and not copied up unless something is created inside).
    pub(crate) fn mkdir_all(&mut self, p: &Path, owner: (u32, u32)) -> Result<bool, CopyError> {
        let p = self.resolve(p, true)?;
        let comps: Vec<_> = p.components().skip(1).collect();
        let mut cur = PathBuf::from("/");
        let mut existing = 0;
        for c in &comps {
            let next = cur.join(c);
            match self.lstat(&next)? {
                Some((e, _)) if e.kind == Kind::Dir => {
                    cur = next;
                    existing += 1;
                }
                Some(_) => return Err(self.not_dir(&next)),
                None => break,
            }
        }
        if existing == comps.len() {
            return Ok(false);
        }
        self.ensure_upper_dir(&cur)?;
        for c in &comps[existing..] {
            cur.push(c);
            let host = self.host(&cur);
            std::fs::create_dir(&host).at(&host)?;
            self.set_owner(&host, owner)?;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).at(&host)?;
            self.stats.dirs += 1;
        }
        Ok(true)
    }

    /// BuildKit's `copyDirectoryOnly`: `p` becomes a directory of the upper; true when it was
    /// created (the caller then gives it the source's metadata).
    pub(crate) fn dir_for_copy(&mut self, p: &Path) -> Result<bool, CopyError> {
        match self.lstat(p)? {
            None => {
                if let Some(parent) = p.parent() {
                    self.ensure_upper_dir(parent)?;
                }
                let host = self.host(p);
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&host)
                    .at(&host)?;
                self.stats.dirs += 1;
                Ok(true)
            }
            Some((e, _)) if e.kind == Kind::Dir => {
                self.ensure_upper_dir(p)?;
                Ok(false)
            }
            Some(_) => Err(self.not_dir(p)),
        }
    }

    /// BuildKit's `ensureEmptyFileTarget`: nothing may stay at `p` (a directory there is an
    /// error); its parent is made a directory of the upper.
    pub(crate) fn clear_for_file(&mut self, p: &Path) -> Result<(), CopyError> {
        match self.lstat(p)? {
            Some((e, _)) if e.kind == Kind::Dir => {
                return Err(CopyError::ReplaceDir {
                    keyword: self.kw,
                    path: p.to_path_buf(),
                })
            }
            Some((_, true)) => {
                let host = self.host(p);
                std::fs::remove_file(&host).at(&host)?;
            }
            // Only in the parent: the upper's new entry hides it.
            _ => {}
        }
        if let Some(parent) = p.parent() {
            self.ensure_upper_dir(parent)?;
        }
        Ok(())
    }

    /// Writes a new regular file at `p` (cleared by [`Target::clear_for_file`]).
    pub(crate) fn write_file(&mut self, p: &Path, content: &mut dyn Read) -> Result<(), CopyError> {
        let host = self.host(p);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&host)
            .at(&host)?;
        let n = crate::layer::sparse::copy(content, &mut f).at(&host)?;
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    pub(crate) fn symlink(&mut self, target: &Path, p: &Path) -> Result<(), CopyError> {
        let host = self.host(p);
        std::os::unix::fs::symlink(target, &host).at(&host)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// Hard-links `p` to `first`, which this copy wrote into the upper.
    pub(crate) fn hard_link(&mut self, first: &Path, p: &Path) -> Result<(), CopyError> {
        let host = self.host(p);
        std::fs::hard_link(self.host(first), &host).at(&host)?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// Whether the upper holds `p` (not following a symlink there).
    pub(crate) fn in_upper(&self, p: &Path) -> Result<bool, CopyError> {
        Ok(self.upper.lstat(p).at(p)?.is_some())
    }

    pub(crate) fn mknod(&mut self, p: &Path, kind: Kind, rdev: u64) -> Result<(), CopyError> {
        use rustix::fs::FileType;
        let host = self.host(p);
        let ft = match kind {
            Kind::CharDevice => FileType::CharacterDevice,
            Kind::BlockDevice => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &host,
            ft,
            rustix::fs::Mode::from_raw_mode(0o600),
            rdev,
        )
        .at(&host)?;
        self.stats.nodes += 1;
        Ok(())
    }

    /// Owner, then mode, then xattrs (chown clears setuid bits and file capabilities), then
    /// times; never following a symlink at `p`. Xattr failures are ignored, as BuildKit does.
    pub(crate) fn apply(&mut self, p: &Path, m: &Meta) -> Result<(), CopyError> {
        let host = self.host(p);
        self.set_owner(&host, (m.uid, m.gid))?;
        if let Some(mode) = m.mode {
            // Only files, directories and nodes get here, all created by us: no link to follow.
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).at(&host)?;
        }
        for (k, v) in &m.xattrs {
            if keep_xattr(k) {
                let _ = rustix::fs::lsetxattr(&host, k, v, rustix::fs::XattrFlags::empty());
            }
        }
        set_mtime(&host, m.mtime)?;
        self.copied_up.remove(p);
        Ok(())
    }

    /// Restores the parent's mtimes on copied-up directories (deepest first) and returns the
    /// counts.
    pub(crate) fn finish(self) -> Result<CopyStats, CopyError> {
        for (p, mtime) in self.copied_up.iter().rev() {
            set_mtime(&self.host(p), *mtime)?;
        }
        Ok(self.stats)
    }
}

pub(crate) fn set_mtime(host: &Path, mtime: i64) -> Result<(), CopyError> {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        host,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .at(host)
    .map_err(Into::into)
}
