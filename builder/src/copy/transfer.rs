//! The copy itself: BuildKit's `fsutil` copier semantics driven the way the Dockerfile
//! frontend drives it (`CopyDirContentsOnly`, `CreateDestPath`, `AllowWildcard`,
//! `AllowEmptyWildcard`, `FollowSymlinks`, `AttemptUnpack` for ADD).

use super::mode::ChmodSpec;
use super::sources::{self, Item};
use super::target::{Meta, Target};
use super::{archive, url, CopyError, CopyRequest, CopyStats};
use crate::context::dockerignore::DockerIgnore;
use crate::fsview::{Entry, FsView, Kind};
use crate::path_io::IoAt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The destination in the image and whether it names a directory (`/` at the end, or `.`).
pub(crate) fn dest_path(req: &CopyRequest) -> (PathBuf, bool) {
    let d = req.dest.as_str();
    let dir = d.is_empty() || d == "." || d.ends_with('/');
    let joined = if d.starts_with('/') {
        d.to_owned()
    } else {
        format!(
            "{}/{d}",
            if req.workdir.is_empty() {
                "/"
            } else {
                &req.workdir
            }
        )
    };
    let mut p = PathBuf::from("/");
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                p.pop();
            }
            c => p.push(c),
        }
    }
    (p, dir)
}

struct Copier<'a, 't> {
    req: &'a CopyRequest,
    source: &'a dyn FsView,
    t: Target<'t>,
    chmod: Option<ChmodSpec>,
    excludes: Option<DockerIgnore>,
    /// Files with several links already written, by source identity (one source at a time).
    links: HashMap<(u64, u64), PathBuf>,
}

pub(crate) fn run(
    req: &CopyRequest,
    source: &dyn FsView,
    parent: &dyn FsView,
    upper: &Path,
) -> Result<CopyStats, CopyError> {
    let chmod = req.chmod.as_deref().map(ChmodSpec::parse).transpose()?;
    let excludes = sources::excludes(req)?;
    // Everything is looked up before anything is written: a missing source leaves the upper
    // untouched.
    let items = sources::resolve_all(req, source)?;
    let mut c = Copier {
        req,
        source,
        t: Target::new(parent, upper, req.keyword()),
        chmod,
        excludes,
        links: HashMap::new(),
    };
    // Several sources (or a wildcard's several matches) to a destination that is neither
    // written with a `/` nor an existing directory: BuildKit copies each onto it in turn, so the
    // last file wins. The classic builder (and kaniko) refuse; kiln follows BuildKit, checked
    // against docker's BuildKit.
    let (dest, dest_is_dir) = dest_path(req);
    let owner = req.chown.unwrap_or((0, 0));
    // BuildKit creates the destination (or its parent) before matching anything, so even a
    // wildcard matching nothing leaves `dest/` behind.
    let ensure = if dest_is_dir {
        dest.clone()
    } else {
        dest.parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
    };
    c.t.mkdir_all(&ensure, owner)?;
    let dst = c.t.resolve(&dest, true)?;
    for item in items {
        c.links.clear();
        match item {
            Item::Path {
                arg,
                followed,
                entry,
                name,
                parents,
                path,
            } => {
                if req.add && entry.kind == Kind::File && archive::is_archive(source, &followed)? {
                    let f = source.open(&followed).at(&followed)?;
                    archive::unpack(&mut c.t, f, &dst, req.chown, &arg)?;
                } else if let Some((keep, pivot)) = parents {
                    c.copy_parents(&path, pivot, &keep, &followed, &entry, &dst)?;
                } else {
                    c.copy_top(&followed, &entry, &name, &dst)?;
                }
            }
            Item::Url { url } => {
                let tmp_dir = upper.parent().unwrap_or(upper);
                let got = url::fetch(&url, req.checksum.as_deref(), tmp_dir)?;
                let entry = file_entry(0o600, got.mtime);
                let mut file = got.file;
                c.copy_file_source(&mut file, &entry, &got.name, &dst)?;
            }
            Item::Heredoc { name, content } => {
                let entry = file_entry(0o644, crate::image::time::now_unix());
                c.copy_file_source(&mut content.as_bytes(), &entry, &name, &dst)?;
            }
        }
    }
    c.t.finish()
}

fn file_entry(mode: u32, mtime: i64) -> Entry {
    Entry {
        kind: Kind::File,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
        rdev: 0,
        nlink: 1,
        id: (0, 0),
    }
}

impl Copier<'_, '_> {
    fn is_dir(&self, p: &Path) -> Result<Option<bool>, CopyError> {
        let r = self.t.resolve(p, true)?;
        Ok(self.t.lstat(&r)?.map(|(e, _)| e.kind == Kind::Dir))
    }

    /// BuildKit's `prepareTargetDir` then `copy` for one match.
    fn copy_top(
        &mut self,
        src: &Path,
        entry: &Entry,
        name: &str,
        dst: &Path,
    ) -> Result<(), CopyError> {
        let dest_kind = self.is_dir(dst)?;
        let src_dir = entry.kind == Kind::Dir;
        let target = if !src_dir && dest_kind == Some(true) {
            dst.join(name)
        } else {
            dst.to_path_buf()
        };
        let mkdir = if src_dir && dest_kind.is_none() {
            target.clone()
        } else {
            target
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
        };
        self.t.mkdir_all(&mkdir, self.req.chown.unwrap_or((0, 0)))?;
        self.copy_entry(src, entry, "", &target, false)
    }

    /// A downloaded file or heredoc, copied like a file source.
    fn copy_file_source(
        &mut self,
        content: &mut dyn std::io::Read,
        entry: &Entry,
        name: &str,
        dst: &Path,
    ) -> Result<(), CopyError> {
        let target = if self.is_dir(dst)? == Some(true) {
            dst.join(name)
        } else {
            dst.to_path_buf()
        };
        if let Some(p) = target.parent() {
            self.t.mkdir_all(p, self.req.chown.unwrap_or((0, 0)))?;
        }
        self.t.clear_for_file(&target)?;
        self.t.write_file(&target, content)?;
        let meta = self.meta(entry, Vec::new());
        self.t.apply(&target, &meta)
    }

    /// `--parents`: the match keeps its path below the pivot; directories on the way are
    /// copied from the source (metadata included) when the destination lacks them.
    fn copy_parents(
        &mut self,
        path: &Path,
        pivot: usize,
        keep: &[String],
        followed: &Path,
        entry: &Entry,
        dst: &Path,
    ) -> Result<(), CopyError> {
        self.t.mkdir_all(dst, self.req.chown.unwrap_or((0, 0)))?;
        let comps: Vec<_> = path.components().skip(1).collect();
        let mut target = dst.to_path_buf();
        for (i, c) in keep.iter().enumerate() {
            if i + 1 == keep.len() {
                target.push(c);
                break;
            }
            target.push(c);
            let mut src_dir = PathBuf::from("/");
            src_dir.extend(&comps[..pivot + i + 1]);
            let src_dir = crate::fsview::resolve(self.source, &src_dir, true).at(&src_dir)?;
            let e = self.source.lstat(&src_dir).at(&src_dir)?.ok_or_else(|| {
                crate::path_io::PathIo::new(&src_dir, std::io::ErrorKind::NotFound)
            })?;
            if self.t.dir_for_copy(&target)? {
                let x = self.source.xattrs(&src_dir).at(&src_dir)?;
                let m = self.meta(&e, x);
                self.t.apply(&target, &m)?;
            }
        }
        if keep.is_empty() {
            // The pivot itself: its contents go to the destination.
            return self.copy_entry(followed, entry, "", dst, false);
        }
        self.copy_entry(followed, entry, "", &target, true)
    }

    fn meta(&self, e: &Entry, xattrs: Vec<(std::ffi::OsString, Vec<u8>)>) -> Meta {
        let (uid, gid) = match (self.req.chown, self.req.is_context) {
            (Some(o), _) => o,
            (None, true) => (0, 0),
            (None, false) => self.t.image_owner(e, &xattrs),
        };
        let mode = match e.kind {
            Kind::Symlink => None,
            k => Some(match &self.chmod {
                Some(c) => c.apply(e.mode, k == Kind::Dir),
                None => e.mode,
            }),
        };
        Meta {
            uid,
            gid,
            mode,
            mtime: e.mtime,
            xattrs,
        }
    }

    fn excluded(&self, rel: &str, dir: bool) -> bool {
        match &self.excludes {
            Some(x) if !rel.is_empty() => {
                // A directory holding an exception stays, its other entries are checked one
                // by one.
                x.is_excluded(rel) && (!dir || x.can_skip_dir(rel))
            }
            _ => false,
        }
    }

    /// BuildKit's `copier.copy`: `rel` is the path below the match (for `--exclude`),
    /// `overwrite` whether an existing directory takes the source's metadata.
    fn copy_entry(
        &mut self,
        src: &Path,
        entry: &Entry,
        rel: &str,
        dst: &Path,
        overwrite: bool,
    ) -> Result<(), CopyError> {
        if self.excluded(rel, entry.kind == Kind::Dir) {
            return Ok(());
        }
        let mut info = true;
        match entry.kind {
            Kind::Dir => {
                let created = self.t.dir_for_copy(dst)?;
                for name in self.source.read_dir(src).at(src)? {
                    let child = src.join(&name);
                    let Some(ce) = self.source.lstat(&child).at(&child)? else {
                        continue;
                    };
                    let name = name.to_string_lossy().into_owned();
                    let crel = if rel.is_empty() {
                        name.clone()
                    } else {
                        format!("{rel}/{name}")
                    };
                    self.copy_entry(&child, &ce, &crel, &dst.join(&name), true)?;
                }
                info = overwrite || created;
            }
            Kind::File => {
                self.t.clear_for_file(dst)?;
                if entry.nlink > 1 {
                    if let Some(first) = self.links.get(&entry.id).cloned() {
                        if self.t.in_upper(&first)? {
                            return self.t.hard_link(&first, dst);
                        }
                    }
                    self.links.insert(entry.id, dst.to_path_buf());
                }
                let mut f = self.source.open(src).at(src)?;
                self.t.write_file(dst, &mut f)?;
            }
            Kind::Symlink => {
                self.t.clear_for_file(dst)?;
                let target = self.source.read_link(src).at(src)?;
                self.t.symlink(&target, dst)?;
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                self.t.clear_for_file(dst)?;
                self.t.mknod(dst, entry.kind, entry.rdev)?;
            }
            Kind::Socket => {
                return Err(CopyError::Unsupported {
                    keyword: self.req.keyword(),
                    path: src.to_path_buf(),
                    what: "socket".into(),
                })
            }
        }
        if info {
            let x = self.source.xattrs(src).unwrap_or_default();
            let m = self.meta(entry, x);
            self.t.apply(dst, &m)?;
        }
        Ok(())
    }
}
