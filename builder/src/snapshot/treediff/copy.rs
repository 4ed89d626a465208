//! Creating files with all their metadata: owner, mode (setuid included), xattrs, times, hard
//! links, device nodes. Shared by materialising a view and writing a diff.

use crate::fsview::Kind;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use rustix::process::{Gid, Uid};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One file to create.
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Seconds and nanoseconds.
    pub(crate) mtime: (i64, i64),
    pub(crate) rdev: u64,
    /// Identity shared by hard links (set when a non-directory has several links).
    pub(crate) link_id: Option<(u64, u64)>,
}

/// Where the content comes from.
pub(crate) enum Content {
    None,
    File(std::fs::File),
    Link(PathBuf),
}

/// Creates files, remembering hard links and the directories whose mode and times are set last.
#[derive(Default)]
pub(crate) struct Copier {
    links: HashMap<(u64, u64), PathBuf>,
    dirs: Vec<(PathBuf, u32, (i64, i64))>,
    /// What could not be reproduced (devices, owners, xattrs refused without privilege).
    pub(crate) skipped: Vec<String>,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

fn refused(e: rustix::io::Errno) -> bool {
    matches!(
        e,
        rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ACCESS
    )
}

fn times(t: (i64, i64)) -> Timestamps {
    let ts = Timespec {
        tv_sec: t.0,
        tv_nsec: t.1 as _,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

impl Copier {
    /// Creates `dst` as `node` (a directory may already be there).
    pub(crate) fn put(
        &mut self,
        dst: &Path,
        node: &Node,
        content: Content,
        xattrs: &[(OsString, Vec<u8>)],
    ) -> io::Result<()> {
        if let Some(id) = node.link_id {
            if let Some(first) = self.links.get(&id) {
                return std::fs::hard_link(first, dst);
            }
        }
        match node.kind {
            Kind::Dir => match std::fs::create_dir(dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => {}
                Err(e) => return Err(e),
            },
            Kind::File => {
                use std::os::unix::fs::OpenOptionsExt;
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(dst)?;
                if let Content::File(mut f) = content {
                    // std uses copy_file_range here: no copy through user space.
                    io::copy(&mut f, &mut out)?;
                }
            }
            Kind::Symlink => {
                let Content::Link(target) = content else {
                    return Err(io::Error::other("symlink without a target"));
                };
                std::os::unix::fs::symlink(target, dst)?;
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let ft = match node.kind {
                    Kind::CharDevice => FileType::CharacterDevice,
                    Kind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let rdev = if node.kind == Kind::Fifo {
                    0
                } else {
                    node.rdev
                };
                if let Err(e) = rustix::fs::mknodat(CWD, dst, ft, Mode::from_raw_mode(0o600), rdev)
                {
                    if refused(e) {
                        self.skipped
                            .push(format!("{}: device node not permitted", dst.display()));
                        return Ok(());
                    }
                    return Err(errno(e));
                }
            }
            Kind::Socket => return Ok(()),
        }
        self.meta(dst, node, xattrs)?;
        if let Some(id) = node.link_id {
            self.links.insert(id, dst.to_path_buf());
        }
        Ok(())
    }

    /// Owner, then mode (chown clears setuid), then xattrs (chown clears capabilities), then
    /// times; a directory's mode and times wait for [`Copier::finish`].
    fn meta(&mut self, dst: &Path, node: &Node, xattrs: &[(OsString, Vec<u8>)]) -> io::Result<()> {
        if let Err(e) = rustix::fs::chownat(
            CWD,
            dst,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            if !refused(e) && e != rustix::io::Errno::INVAL {
                return Err(errno(e));
            }
            self.skipped.push(format!(
                "{}: owner {}:{} not permitted",
                dst.display(),
                node.uid,
                node.gid
            ));
        }
        let is_dir = node.kind == Kind::Dir;
        if node.kind != Kind::Symlink && !is_dir {
            rustix::fs::chmod(dst, Mode::from_raw_mode(node.mode)).map_err(errno)?;
        }
        for (name, value) in xattrs {
            let n = name.as_bytes();
            if n.starts_with(b"trusted.overlay.") || n.starts_with(b"user.overlay.") {
                continue;
            }
            if let Err(e) = rustix::fs::lsetxattr(dst, name, value, XattrFlags::empty()) {
                if !refused(e) {
                    return Err(errno(e));
                }
                self.skipped.push(format!(
                    "{}: xattr {} not permitted",
                    dst.display(),
                    name.to_string_lossy()
                ));
            }
        }
        if is_dir {
            self.dirs.push((dst.to_path_buf(), node.mode, node.mtime));
        } else {
            rustix::fs::utimensat(CWD, dst, &times(node.mtime), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno)?;
        }
        Ok(())
    }

    /// Directory modes and times, deepest first: children changed the times, and a read-only
    /// mode would have blocked filling them.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        for (p, mode, mtime) in dirs {
            rustix::fs::chmod(&p, Mode::from_raw_mode(mode)).map_err(errno)?;
            rustix::fs::utimensat(CWD, &p, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno)?;
        }
        Ok(())
    }
}
