//! What a step changed in a tree, written as an upper directory: changed and added entries
//! with their parents, deletions as whiteouts.

use super::copy::{Content, Copier, Node};
use super::manifest::{hash_file, kind_of, record_of, Manifest, Record};
use super::walk;
use crate::fsview::Kind;
use crate::layer::WHITEOUT_PREFIX;
use crate::path_io::IoAt;
use crate::snapshot::error::SnapshotError;
use crate::snapshot::Whiteouts;
use rustix::fs::{FileType, Mode, CWD};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What [`diff`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// How the upper directory spells deletions: pass it to [`crate::snapshot::commit_as`].
    pub whiteouts: Whiteouts,
    /// Entries written because they are new or changed (parents added for them not counted).
    pub changed: u64,
    /// Whiteouts written.
    pub deleted: u64,
    /// Files whose content was hashed because their metadata was ambiguous.
    pub hashed: u64,
}

fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => b"",
    }
}

fn base(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[i + 1..],
        None => rel,
    }
}

fn os(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

struct Writer<'a> {
    root: &'a Path,
    upper: &'a Path,
    copier: Copier,
    made: HashSet<Vec<u8>>,
    whiteouts: Option<Whiteouts>,
}

impl Writer<'_> {
    /// Creates directory `rel` in the upper with the tree's metadata, parents first (what
    /// overlay's copy-up does).
    fn dir(&mut self, rel: &[u8]) -> Result<(), SnapshotError> {
        if rel.is_empty() || self.made.contains(rel) {
            return Ok(());
        }
        self.dir(parent(rel))?;
        let abs = self.root.join(os(rel));
        let m = std::fs::symlink_metadata(&abs).at(&abs)?;
        self.entry(rel, &abs, &m)?;
        self.made.insert(rel.to_vec());
        Ok(())
    }

    fn entry(&mut self, rel: &[u8], abs: &Path, m: &Metadata) -> Result<(), SnapshotError> {
        let kind = kind_of(m);
        let node = Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: (m.mtime(), m.mtime_nsec()),
            rdev: m.rdev(),
            link_id: (kind != Kind::Dir && m.nlink() > 1).then_some((m.dev(), m.ino())),
        };
        let content = match kind {
            Kind::File => Content::File(std::fs::File::open(abs).at(abs)?),
            Kind::Symlink => Content::Link(std::fs::read_link(abs).at(abs)?),
            _ => Content::None,
        };
        let xattrs = crate::fsview::host_xattrs(abs).at(abs)?;
        let dst = self.upper.join(os(rel));
        self.copier
            .put(&dst, &node, content, &xattrs)
            .at(&dst)
            .map_err(Into::into)
    }

    fn whiteout(&mut self, rel: &[u8]) -> Result<(), SnapshotError> {
        let dir = parent(rel);
        self.dir(dir)?;
        let dst = self.upper.join(os(rel));
        if self.whiteouts != Some(Whiteouts::Oci) {
            match rustix::fs::mknodat(
                CWD,
                &dst,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            ) {
                Ok(()) => {
                    self.whiteouts = Some(Whiteouts::Overlay);
                    return Ok(());
                }
                // The first whiteout decides the spelling for all of them.
                Err(rustix::io::Errno::PERM) if self.whiteouts.is_none() => {
                    self.whiteouts = Some(Whiteouts::Oci);
                }
                Err(e) => return Err(crate::path_io::PathIo::new(&dst, e).into()),
            }
        }
        let mut name = WHITEOUT_PREFIX.as_bytes().to_vec();
        name.extend_from_slice(base(rel));
        let dst = self.upper.join(os(dir)).join(os(&name));
        std::fs::File::create(&dst).at(&dst)?;
        Ok(())
    }
}

/// Compares the tree at `root` with `before` (recorded from it earlier) and writes what
/// changed into `out_upper` (created if missing, expected empty): new and changed entries with
/// their parent directories, deletions as whiteouts (overlay's 0:0 devices, or `.wh.` files
/// where `mknod` is refused; see [`Diff::whiteouts`]).
pub fn diff(before: &Manifest, root: &Path, out_upper: &Path) -> Result<Diff, SnapshotError> {
    std::fs::create_dir_all(out_upper).at(out_upper)?;
    let mut w = Writer {
        root,
        upper: out_upper,
        copier: Copier::default(),
        made: HashSet::new(),
        whiteouts: None,
    };
    let mut out = Diff {
        whiteouts: Whiteouts::Overlay,
        changed: 0,
        deleted: 0,
        hashed: 0,
    };
    // Recorded paths still there → whether they are a directory now.
    let mut seen: HashMap<&[u8], bool> = HashMap::with_capacity(before.entries.len());
    let root_dev = std::fs::symlink_metadata(root).at(root)?.dev();
    walk(root, |rel, abs, m| {
        if base(rel).starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Err(SnapshotError::Unsupported {
                path: abs.to_path_buf(),
                reason: "a file named .wh.* would be read as a whiteout by every runtime".into(),
            });
        }
        let old = before.entries.get_key_value(rel);
        if let Some((k, _)) = old {
            seen.insert(k.as_slice(), m.is_dir());
        }
        if rel.is_empty() || m.dev() != root_dev {
            // The root's own metadata is the upper's; mounts are the sandbox's, not the step's.
            return Ok(());
        }
        let changed = match old {
            None => true,
            Some((_, r)) => differs(r, abs, m, &mut out.hashed)?,
        };
        if changed {
            if m.is_dir() {
                w.dir(rel)?;
            } else {
                w.dir(parent(rel))?;
                w.entry(rel, abs, m)?;
            }
            out.changed += 1;
        }
        Ok(())
    })?;
    let mut gone: Vec<&[u8]> = before
        .entries
        .keys()
        .map(Vec::as_slice)
        .filter(|k| !seen.contains_key(k))
        .filter(|k| {
            // Only where the parent is still a directory: a deleted parent's whiteout covers
            // its children, and a parent replaced by a file hides them anyway.
            let p = parent(k);
            seen.get(p).copied().unwrap_or(false)
        })
        .collect();
    gone.sort();
    for rel in gone {
        w.whiteout(rel)?;
        out.deleted += 1;
    }
    w.copier.finish().at(out_upper)?;
    out.whiteouts = w.whiteouts.unwrap_or(Whiteouts::Overlay);
    Ok(out)
}

/// Whether the entry changed since `r` was recorded; hashes content only when every piece of
/// metadata is the same but the record could not trust the mtime.
fn differs(r: &Record, abs: &Path, m: &Metadata, hashed: &mut u64) -> Result<bool, SnapshotError> {
    let now = record_of(abs, m)?;
    let same_meta = Record {
        hash: r.hash,
        ..now.clone()
    } == *r;
    if !same_meta {
        return Ok(true);
    }
    match r.hash {
        Some(h) if now.kind == Kind::File => {
            *hashed += 1;
            Ok(hash_file(abs).at(abs)? != h)
        }
        _ => Ok(false),
    }
}
