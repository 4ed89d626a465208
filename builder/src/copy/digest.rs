//! The content digest of what a COPY/ADD reads, for the step's cache key: each match's name
//! (and kept path with `--parents`), then every entry below it in name order with its path
//! relative to the match, type, mode, owner (only for `--from` sources: context files become
//! 0:0 anyway), size and content hash, link target or device number, and xattrs. Mtimes are
//! left out, so touching a file does not miss the cache; files are streamed, never loaded.

use super::sources::{self, Item};
use super::{CopyError, CopyRequest};
use crate::blob::{Digest, DigestWriter};
use crate::context::dockerignore::DockerIgnore;
use crate::fsview::{Entry, FsView, Kind};
use crate::path_io::IoAt;
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

/// Digest of the inputs of `req` read from `source` (see the module docs). URLs count by
/// their text and `--checksum` (their content is only known after downloading).
///
/// # Errors
/// As [`super::copy`] for missing or invalid sources, and read errors.
pub fn inputs_digest(req: &CopyRequest, source: &dyn FsView) -> Result<Digest, CopyError> {
    let items = sources::resolve_all(req, source)?;
    let excludes = sources::excludes(req)?;
    let mut h = Hasher {
        out: DigestWriter::new(io::sink()),
        source,
        with_owner: !req.is_context,
        excludes,
        links: HashMap::new(),
    };
    for item in items {
        h.links.clear();
        match item {
            Item::Path {
                name,
                parents,
                followed,
                entry,
                ..
            } => {
                let kept = parents.map(|(k, _)| k.join("/")).unwrap_or_default();
                h.put(format!("match\0{name}\0{kept}\0").as_bytes());
                h.entry(&followed, &entry, "")?;
            }
            Item::Url { url } => {
                let c = req.checksum.as_deref().unwrap_or("");
                h.put(format!("url\0{url}\0{c}\0").as_bytes());
            }
            Item::Heredoc { name, content } => {
                h.put(format!("heredoc\0{name}\0{}\0", Digest::of(content.as_bytes())).as_bytes());
            }
        }
    }
    Ok(h.out.finish().0)
}

struct Hasher<'a> {
    out: DigestWriter<io::Sink>,
    source: &'a dyn FsView,
    with_owner: bool,
    excludes: Option<DockerIgnore>,
    links: HashMap<(u64, u64), String>,
}

impl Hasher<'_> {
    fn put(&mut self, b: &[u8]) {
        // A sink never fails.
        let _ = self.out.write_all(b);
    }

    fn entry(&mut self, path: &Path, e: &Entry, rel: &str) -> Result<(), CopyError> {
        if let Some(x) = &self.excludes {
            if !rel.is_empty() && x.is_excluded(rel) && (e.kind != Kind::Dir || x.can_skip_dir(rel))
            {
                return Ok(());
            }
        }
        let kind = match e.kind {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
        };
        self.put(format!("{rel}\0{kind}\0{:o}\0", e.mode).as_bytes());
        if self.with_owner {
            self.put(format!("{}:{}\0", e.uid, e.gid).as_bytes());
        }
        match e.kind {
            Kind::File => {
                let first = (e.nlink > 1)
                    .then(|| self.links.get(&e.id).cloned())
                    .flatten();
                if let Some(first) = first {
                    self.put(format!("hardlink\0{first}\0").as_bytes());
                } else {
                    if e.nlink > 1 {
                        self.links.insert(e.id, rel.to_owned());
                    }
                    let mut f = self.source.open(path).at(path)?;
                    let mut d = DigestWriter::new(io::sink());
                    let n = io::copy(&mut f, &mut d).at(path)?;
                    let (digest, _, _) = d.finish();
                    self.put(format!("{n}\0{digest}\0").as_bytes());
                }
            }
            Kind::Symlink => {
                let t = self.source.read_link(path).at(path)?;
                self.put(t.as_os_str().as_encoded_bytes());
                self.put(b"\0");
            }
            Kind::CharDevice | Kind::BlockDevice => self.put(format!("{}\0", e.rdev).as_bytes()),
            _ => {}
        }
        for (k, v) in self.source.xattrs(path).unwrap_or_default() {
            self.put(k.as_encoded_bytes());
            self.put(b"=");
            self.put(Digest::of(&v).hex().as_bytes());
            self.put(b"\0");
        }
        self.put(b"\n");
        if e.kind == Kind::Dir {
            for name in self.source.read_dir(path).at(path)? {
                let child = path.join(&name);
                let Some(ce) = self.source.lstat(&child).at(&child)? else {
                    continue;
                };
                let name = name.to_string_lossy();
                let crel = if rel.is_empty() {
                    name.into_owned()
                } else {
                    format!("{rel}/{name}")
                };
                self.entry(&child, &ce, &crel)?;
            }
        }
        Ok(())
    }
}
