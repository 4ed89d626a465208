//! The merged metadata of a stack of layers, read from their indexes: what [`OverlayView`]
//! would answer over the extracted layers, without a byte of their content.
//!
//! [`OverlayView`]: super::OverlayView

use crate::fsview::{Entry, FsView, Kind};
use crate::layer::{IndexEntry, IndexKind, LayerIndex, OPAQUE_MARKER, WHITEOUT_PREFIX};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Layer indexes (top-most first) merged as the layers merge: `.wh.<name>` hides the name
/// below, `.wh..wh..opq` hides the directories below, a non-directory hides everything below
/// it, directories merge, and metadata comes from the top-most layer holding the entry (a hard
/// link answers for the file it names, as the extracted layer's inode does).
///
/// [`FsView::open`] fails: the index has no content. A step that needs some reads the
/// extracted layers instead.
#[derive(Debug, Clone)]
pub struct IndexView {
    layers: Vec<Arc<LayerIndex>>,
}

/// What one layer says about a path.
enum Here<'a> {
    /// An entry of the layer (a hard link already followed).
    Entry(&'a IndexEntry),
    /// No entry, but the layer has something below it: extraction made the directory.
    Implied,
}

/// The directory extraction makes for an implied parent: 0755, root's (as kiln extracts as
/// root), and no meaningful mtime.
fn implied_dir(path: Vec<u8>) -> IndexEntry {
    IndexEntry {
        mode: 0o755,
        ..IndexEntry::named(path, IndexKind::Dir)
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn rel_of(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for c in path.components() {
        if let Component::Normal(n) = c {
            out = join(&out, n.as_bytes());
        }
    }
    out
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not in the view", path.display()),
    )
}

impl IndexView {
    /// Views the layers of `indexes` (top-most first) merged.
    pub fn new(layers: Vec<Arc<LayerIndex>>) -> Self {
        IndexView { layers }
    }

    fn here<'a>(&'a self, i: usize, rel: &[u8]) -> Option<Here<'a>> {
        let l = &self.layers[i];
        match l.get(rel) {
            Some(e) if e.kind == IndexKind::HardLink => l.get(&e.link).map(Here::Entry),
            Some(e) => Some(Here::Entry(e)),
            None if l.has_below(rel) => Some(Here::Implied),
            None => None,
        }
    }

    fn whited_out(&self, i: usize, rel: &[u8]) -> bool {
        let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(n) => (&rel[..n], &rel[n + 1..]),
            None => (&b""[..], rel),
        };
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(name);
        self.layers[i].get(&join(dir, &wh)).is_some()
    }

    fn opaque(&self, i: usize, rel: &[u8]) -> bool {
        self.layers[i]
            .get(&join(rel, OPAQUE_MARKER.as_bytes()))
            .is_some()
    }

    /// The entry at `path` and, for a directory, the layers that merge into it.
    fn find(&self, path: &Path) -> Option<(IndexEntry, Vec<usize>)> {
        let mut layers: Vec<usize> = (0..self.layers.len()).collect();
        let mut rel = Vec::new();
        let mut found = implied_dir(Vec::new());
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            return (!self.layers.is_empty()).then_some((found, layers));
        }
        for (n, name) in comps.iter().enumerate() {
            if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return None;
            }
            rel = join(&rel, name.as_bytes());
            let mut dirs = Vec::new();
            let mut first: Option<IndexEntry> = None;
            for &i in &layers {
                let e = match self.here(i, &rel) {
                    None if self.whited_out(i, &rel) => break,
                    None => continue,
                    Some(Here::Implied) => implied_dir(rel.clone()),
                    Some(Here::Entry(e)) => e.clone(),
                };
                if e.kind == IndexKind::Dir {
                    dirs.push(i);
                    let opaque = self.opaque(i, &rel);
                    first.get_or_insert(e);
                    if opaque {
                        break;
                    }
                } else {
                    first.get_or_insert(e);
                    break;
                }
            }
            let e = first?;
            if e.kind != IndexKind::Dir && n + 1 < comps.len() {
                return None;
            }
            layers = dirs;
            found = e;
        }
        Some((found, layers))
    }

    fn entry_of(&self, path: &Path) -> io::Result<IndexEntry> {
        self.find(path)
            .map(|(e, _)| e)
            .ok_or_else(|| not_found(path))
    }
}

fn kind(k: IndexKind) -> Kind {
    match k {
        IndexKind::File | IndexKind::HardLink => Kind::File,
        IndexKind::Dir => Kind::Dir,
        IndexKind::Symlink => Kind::Symlink,
        IndexKind::Char => Kind::CharDevice,
        IndexKind::Block => Kind::BlockDevice,
        IndexKind::Fifo => Kind::Fifo,
    }
}

impl FsView for IndexView {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        Ok(self.find(path).map(|(e, _)| {
            let k = kind(e.kind);
            Entry {
                kind: k,
                // Linux gives every symlink 0777, whatever the layer said.
                mode: if k == Kind::Symlink { 0o777 } else { e.mode },
                uid: e.uid,
                gid: e.gid,
                size: match k {
                    Kind::Symlink => e.link.len() as u64,
                    _ => e.size,
                },
                mtime: e.mtime,
                rdev: e.rdev,
                nlink: 1,
                // Hard links of one layer share the path they name, so they share an id.
                id: (u64::MAX, {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    e.path.hash(&mut h);
                    h.finish()
                }),
            }
        }))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let layers = match self.find(path) {
            Some((e, layers)) if e.kind == IndexKind::Dir => layers,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{}: not a directory in the view", path.display()),
                ))
            }
        };
        let rel = rel_of(path);
        // name → visible; the top-most layer naming an entry decides.
        let mut names: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for i in layers {
            for name in self.layers[i].children(&rel) {
                if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                    if name != OPAQUE_MARKER.as_bytes() {
                        names.entry(hidden.to_vec()).or_insert(false);
                    }
                    continue;
                }
                names.entry(name).or_insert(true);
            }
        }
        Ok(names
            .into_iter()
            .filter_map(|(n, v)| v.then(|| OsStr::from_bytes(&n).to_os_string()))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{}: the parent image is seen through its layer index, which holds no file \
                 content",
                path.display()
            ),
        ))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let e = self.entry_of(path)?;
        if e.kind != IndexKind::Symlink {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a symbolic link", path.display()),
            ));
        }
        Ok(PathBuf::from(OsStr::from_bytes(&e.link)))
    }

    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        Ok(self
            .entry_of(path)?
            .xattrs
            .into_iter()
            .map(|(n, v)| (OsStr::from_bytes(&n).to_os_string(), v))
            .collect())
    }
}
