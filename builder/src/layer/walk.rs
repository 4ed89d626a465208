//! Walks a directory tree in layer order: depth first; in each directory its whiteouts, then its
//! other entries, each group sorted by the bytes of the names as they appear in the layer. A
//! parent comes before its children and the order depends on nothing but the names, so the
//! same tree gives the same tar on any filesystem.

use super::error::LayerError;
use super::overlay_view::OverlayView;
use super::whiteout::{
    is_opaque_xattr, keep_xattr, unsupported_overlay_xattr, OPAQUE_MARKER, WHITEOUT_PREFIX,
};
use crate::fsview::{FsView, Kind};
use crate::path_io::IoAt;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Extended attributes as (name, value) pairs, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// One thing the layer will hold.
pub(crate) enum Item {
    /// A file, directory, link or node of the tree, with the xattrs the layer keeps.
    File {
        rel: Vec<u8>,
        abs: PathBuf,
        meta: Metadata,
        xattrs: Xattrs,
    },
    /// An overlay whiteout (`rel` is already `.wh.<name>`); `meta` is the device's, or the
    /// opaque directory's for a lower entry it hides.
    Whiteout { rel: Vec<u8>, meta: Metadata },
    /// The opaque marker `rel` = `<dir>/.wh..wh..opq`; `meta` is the directory's.
    Opaque { rel: Vec<u8>, meta: Metadata },
}

enum Pending {
    Real(OsString),
    Whiteout(OsString),
    /// A lower entry this opaque directory hides, written as its whiteout.
    Hidden,
    Opaque,
}

struct Frame {
    rel: Vec<u8>,
    abs: PathBuf,
    meta: Option<Metadata>,
    /// The directory hides what the lower layers hold at its path: it is opaque, or inside
    /// one (overlay gives a directory made there no lower of its own).
    hides: bool,
    /// Sorted in reverse, so `pop` yields the next one.
    entries: Vec<(Vec<u8>, Pending)>,
}

/// Iterates over a tree in layer order.
pub(crate) struct Walker {
    stack: Vec<Frame>,
    overlay: bool,
    /// The tree's `.wh.` files are its whiteouts already (an upper in OCI form).
    oci_whiteouts: bool,
    exclude: Vec<Vec<u8>>,
    /// The layers under an overlay upper: where an opaque directory hides something, the
    /// layer gets a whiteout per hidden entry instead of an opaque marker.
    lower: Option<OverlayView>,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        v.extend_from_slice(prefix);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// The xattrs of `path` (not following a symlink): those a layer keeps, and whether the
/// directory is overlay-opaque.
pub(crate) fn read_xattrs(path: &Path) -> Result<(Xattrs, bool), LayerError> {
    let all = crate::fsview::host_xattrs(path).at(path)?;
    let mut kept = Vec::new();
    let mut opaque = false;
    for (name, value) in all {
        let name = name.as_bytes();
        if let Some(bad) = unsupported_overlay_xattr(name) {
            return Err(LayerError::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "has {bad}: the overlay was mounted with redirect_dir or metacopy on, \
                     so its upper directory is not a complete diff"
                ),
            });
        }
        let opaque_candidate = super::whiteout::OPAQUE_XATTRS
            .iter()
            .any(|o| o.as_bytes() == name);
        if !keep_xattr(name) && !opaque_candidate {
            continue;
        }
        if opaque_candidate {
            opaque |= is_opaque_xattr(name, &value);
        } else {
            kept.push((name.to_vec(), value));
        }
    }
    kept.sort();
    Ok((kept, opaque))
}

impl Walker {
    /// Walks `root` (not emitted itself). With `overlay`, char devices 0:0 and opaque
    /// directories are turned into OCI whiteouts. `exclude` paths are relative to `root`.
    /// With `oci_whiteouts`, `.wh.` names are emitted as they are instead of refused. With
    /// `lowers` (an overlay upper's layers, top first), an opaque directory becomes whiteouts of
    /// the lower entries it hides, as a tree diff writes the same change, so both
    /// snapshot modes give one layer; a directory that replaced a file hides nothing.
    pub(crate) fn new(
        root: &Path,
        overlay: bool,
        oci_whiteouts: bool,
        exclude: &[PathBuf],
        lowers: &[PathBuf],
    ) -> Result<Self, LayerError> {
        let exclude = exclude
            .iter()
            .map(|p| {
                let b = p.as_os_str().as_bytes();
                let b = b.strip_prefix(b"./").unwrap_or(b);
                let b = b.trim_ascii_start();
                let b: &[u8] = &b[b.iter().take_while(|&&c| c == b'/').count()..];
                b.strip_suffix(b"/").unwrap_or(b).to_vec()
            })
            .collect();
        let mut w = Walker {
            stack: Vec::new(),
            overlay,
            oci_whiteouts,
            exclude,
            lower: (overlay && !lowers.is_empty()).then(|| OverlayView::new(lowers.to_vec())),
        };
        let meta = std::fs::symlink_metadata(root).at(root)?;
        if !meta.is_dir() {
            return Err(LayerError::Unsupported {
                path: root.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        w.push_dir(Vec::new(), root.to_path_buf(), None, false, false)?;
        Ok(w)
    }

    fn push_dir(
        &mut self,
        rel: Vec<u8>,
        abs: PathBuf,
        meta: Option<Metadata>,
        opaque: bool,
        inside_hiding: bool,
    ) -> Result<(), LayerError> {
        let hides = (opaque || inside_hiding) && self.lower.is_some();
        let mut entries = Vec::new();
        // Every name the upper holds here, whiteouts and excluded paths included: a hidden
        // lower entry is one of none of them.
        let mut upper_names: Vec<OsString> = Vec::new();
        for e in std::fs::read_dir(&abs).at(&abs)? {
            let e = e.at(&abs)?;
            let name = e.file_name();
            if hides {
                upper_names.push(name.clone());
            }
            let child_rel = join(&rel, name.as_bytes());
            if self.exclude.contains(&child_rel) {
                continue;
            }
            if !self.oci_whiteouts && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(LayerError::Unsupported {
                    path: abs.join(&name),
                    reason: "a file named .wh.* would be read as a whiteout by every runtime"
                        .into(),
                });
            }
            if self.oci_whiteouts && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                // Already OCI-spelled deletions: written as the overlay ones are (first, with
                // a whiteout's header), so both snapshot modes give the same layer.
                if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
                    if !opaque {
                        entries.push((OPAQUE_MARKER.as_bytes().to_vec(), Pending::Opaque));
                    }
                } else {
                    entries.push((name.as_bytes().to_vec(), Pending::Whiteout(name)));
                }
                continue;
            }
            let ft = e.file_type().at(abs.join(&name))?;
            if self.overlay && ft.is_char_device() {
                let m = e.metadata().at(abs.join(&name))?;
                if m.rdev() == 0 {
                    let mut out = WHITEOUT_PREFIX.as_bytes().to_vec();
                    out.extend_from_slice(name.as_bytes());
                    entries.push((out, Pending::Whiteout(name)));
                    continue;
                }
            }
            entries.push((name.as_bytes().to_vec(), Pending::Real(name)));
        }
        if hides {
            for name in self.hidden(&rel, upper_names)? {
                let mut out = WHITEOUT_PREFIX.as_bytes().to_vec();
                out.extend_from_slice(name.as_bytes());
                entries.push((out, Pending::Hidden));
            }
        } else if opaque {
            entries.push((OPAQUE_MARKER.as_bytes().to_vec(), Pending::Opaque));
        }
        // Whiteouts first (the OCI spec asks for them before their siblings, so a reader that
        // applies an opaque marker as it meets it cannot delete this layer's own entries),
        // then everything else; each group by name bytes. Reversed, for `pop`.
        let key = |e: &(Vec<u8>, Pending)| {
            !matches!(
                e.1,
                Pending::Whiteout(_) | Pending::Hidden | Pending::Opaque
            )
        };
        entries.sort_by(|a, b| (key(b), &b.0).cmp(&(key(a), &a.0)));
        self.stack.push(Frame {
            rel,
            abs,
            meta,
            hides,
            entries,
        });
        Ok(())
    }

    /// The names the lower layers hold in directory `rel` that the upper does not, sorted;
    /// none when the lower has no directory there.
    fn hidden(&self, rel: &[u8], mut upper: Vec<OsString>) -> Result<Vec<OsString>, LayerError> {
        let Some(lower) = &self.lower else {
            return Ok(Vec::new());
        };
        let p = Path::new("/").join(OsStr::from_bytes(rel));
        match lower.lstat(&p).at(&p)? {
            Some(e) if e.kind == Kind::Dir => {}
            _ => return Ok(Vec::new()),
        }
        upper.sort();
        let mut names = lower.read_dir(&p).at(&p)?;
        names.retain(|n| upper.binary_search(n).is_err());
        Ok(names)
    }

    fn next_item(&mut self) -> Result<Option<Item>, LayerError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some((out_name, pending)) = frame.entries.pop() else {
                self.stack.pop();
                continue;
            };
            let rel = join(&frame.rel, &out_name);
            let hides = frame.hides;
            match pending {
                Pending::Opaque | Pending::Hidden => {
                    let opaque = matches!(pending, Pending::Opaque);
                    let meta = match &frame.meta {
                        Some(m) => m.clone(),
                        None => std::fs::symlink_metadata(&frame.abs).at(&frame.abs)?,
                    };
                    return Ok(Some(if opaque {
                        Item::Opaque { rel, meta }
                    } else {
                        Item::Whiteout { rel, meta }
                    }));
                }
                Pending::Whiteout(name) => {
                    let abs = frame.abs.join(&name);
                    let meta = std::fs::symlink_metadata(&abs).at(&abs)?;
                    return Ok(Some(Item::Whiteout { rel, meta }));
                }
                Pending::Real(name) => {
                    let abs = frame.abs.join(&name);
                    let meta = std::fs::symlink_metadata(&abs).at(&abs)?;
                    let (xattrs, opaque) = read_xattrs(&abs)?;
                    if meta.is_dir() {
                        let opaque = opaque && self.overlay;
                        self.push_dir(rel.clone(), abs.clone(), Some(meta.clone()), opaque, hides)?;
                    }
                    return Ok(Some(Item::File {
                        rel,
                        abs,
                        meta,
                        xattrs,
                    }));
                }
            }
        }
    }
}

impl Iterator for Walker {
    type Item = Result<Item, LayerError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_item() {
            Ok(Some(i)) => Some(Ok(i)),
            Ok(None) => None,
            Err(e) => {
                // One error ends the walk: the layer is abandoned anyway.
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}
