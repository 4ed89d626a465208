//! Several layers as one (`--single-snapshot`): a walk over layer directories in overlay form
//! (top-most first) that yields the entries of their merged diff, in the same layer order as
//! [`super::walk::Walker`], so the one tar writer serves both.
//!
//! The rules are those of applying the layers one after the other: the top-most layer naming a
//! path decides it; directories merge down to the first layer that hides what is below (an
//! opaque directory, a whiteout, a non-directory). Deletions are kept only where they hide
//! something of the layers below the merged ones (the base image): a whiteout of a file an
//! earlier merged layer added just removes that file, and an opaque directory over a base
//! directory stays opaque.

use super::error::LayerError;
use super::walk::{read_xattrs, Item};
use super::whiteout::{has_opaque_marker, oci_whiteout_of, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::path_io::IoAt;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// What the layers below the merged ones hold at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Below {
    /// Nothing: a deletion there would hide nothing.
    Absent,
    /// A directory: an opaque marker there hides its content.
    Dir,
    /// Something else: a whiteout there hides it.
    Other,
}

/// How one path of the merged directory resolves.
enum Resolved {
    /// Deleted by the top-most layer naming it.
    Whiteout(Metadata),
    /// A non-directory: its host path.
    Other(PathBuf),
    /// A directory: its host paths, top-most first, and whether the last of them hides
    /// everything below it.
    Dir(Vec<PathBuf>, bool),
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn lstat(p: &std::path::Path) -> Result<Option<Metadata>, LayerError> {
    match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::path_io::PathIo::new(p, e).into()),
    }
}

fn resolve(dirs: &[PathBuf], name: &OsStr) -> Result<Option<Resolved>, LayerError> {
    let mut found: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let p = d.join(name);
        let (m, deleted) = match lstat(&p)? {
            Some(m) => {
                let w = is_whiteout(&m);
                (m, w)
            }
            None => match oci_whiteout_of(&p).at(&p)? {
                // A layer extracted where whiteout devices are refused.
                Some(m) => (m, true),
                None => continue,
            },
        };
        if deleted {
            return Ok(Some(if found.is_empty() {
                Resolved::Whiteout(m)
            } else {
                // A directory made over a deleted one: nothing older shows through.
                Resolved::Dir(found, true)
            }));
        }
        if m.is_dir() {
            let opaque = read_xattrs(&p)?.1 || has_opaque_marker(&p);
            found.push(p);
            if opaque {
                return Ok(Some(Resolved::Dir(found, true)));
            }
        } else if found.is_empty() {
            return Ok(Some(Resolved::Other(p)));
        } else {
            // A directory over what was a file: the file's past is hidden.
            return Ok(Some(Resolved::Dir(found, true)));
        }
    }
    Ok((!found.is_empty()).then_some(Resolved::Dir(found, false)))
}

/// An entry listed but not yet yielded.
enum Pending {
    Ready(Item),
    /// A merged directory: entered when it is yielded.
    Dir {
        item: Item,
        rel: Vec<u8>,
        dirs: Vec<PathBuf>,
        opaque: bool,
    },
}

/// Iterates over the merged diff of layer directories in layer order.
pub(crate) struct MergeWalker<F> {
    /// Per directory being walked, its entries sorted in reverse, so `pop` yields the next.
    stack: Vec<Vec<Pending>>,
    below: F,
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

impl<F: FnMut(&[u8]) -> Result<Below, LayerError>> MergeWalker<F> {
    /// Merges `layers` (directories in overlay form, top-most first); `below` tells what the
    /// layers under them hold at a path relative to the root (`etc/passwd`).
    pub(crate) fn new(layers: &[PathBuf], below: F) -> Result<Self, LayerError> {
        for l in layers {
            let m = std::fs::symlink_metadata(l).at(l)?;
            if !m.is_dir() {
                return Err(LayerError::Unsupported {
                    path: l.clone(),
                    reason: "not a directory".into(),
                });
            }
        }
        let mut w = MergeWalker {
            stack: Vec::new(),
            below,
        };
        w.push_dir(Vec::new(), layers.to_vec(), false)?;
        Ok(w)
    }

    /// Lists a merged directory: its resolved children (directories pushed as frames when
    /// reached), whiteouts first, each group by the bytes of the names in the layer.
    fn push_dir(
        &mut self,
        rel: Vec<u8>,
        dirs: Vec<PathBuf>,
        opaque: bool,
    ) -> Result<(), LayerError> {
        let mut names = BTreeSet::new();
        for d in &dirs {
            for e in std::fs::read_dir(d).at(d)? {
                let name = e.at(d)?.file_name();
                // OCI spelling, where whiteout devices were refused: the marker is read with
                // the directory, a whiteout names the path `resolve` finds deleted.
                match name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                    Some(_) if name == OPAQUE_MARKER => {}
                    Some(hidden) => {
                        names.insert(OsStr::from_bytes(hidden).to_os_string());
                    }
                    None => {
                        names.insert(name);
                    }
                }
            }
        }
        let mut whiteouts = Vec::new();
        let mut others = Vec::new();
        if opaque && (self.below)(&rel)? == Below::Dir {
            let meta = std::fs::symlink_metadata(&dirs[0]).at(&dirs[0])?;
            let rel = join(&rel, OPAQUE_MARKER.as_bytes());
            whiteouts.push((rel.clone(), Pending::Ready(Item::Opaque { rel, meta })));
        }
        for name in names {
            let child = join(&rel, name.as_bytes());
            match resolve(&dirs, &name)? {
                // A deletion that hides nothing below is no entry at all.
                None => {}
                Some(Resolved::Whiteout(meta)) if (self.below)(&child)? != Below::Absent => {
                    let mut out = WHITEOUT_PREFIX.as_bytes().to_vec();
                    out.extend_from_slice(name.as_bytes());
                    let rel = join(&rel, &out);
                    whiteouts.push((rel.clone(), Pending::Ready(Item::Whiteout { rel, meta })));
                }
                Some(Resolved::Whiteout(_)) => {}
                Some(Resolved::Other(abs)) => {
                    let meta = std::fs::symlink_metadata(&abs).at(&abs)?;
                    let (xattrs, _) = read_xattrs(&abs)?;
                    others.push((
                        child.clone(),
                        Pending::Ready(Item::File {
                            rel: child,
                            abs,
                            meta,
                            xattrs,
                        }),
                    ));
                }
                Some(Resolved::Dir(found, hides)) => {
                    let abs = found[0].clone();
                    let meta = std::fs::symlink_metadata(&abs).at(&abs)?;
                    let (xattrs, _) = read_xattrs(&abs)?;
                    others.push((
                        child.clone(),
                        Pending::Dir {
                            item: Item::File {
                                rel: child.clone(),
                                abs,
                                meta,
                                xattrs,
                            },
                            rel: child,
                            dirs: found,
                            opaque: hides,
                        },
                    ));
                }
            }
        }
        whiteouts.sort_by(|a, b| a.0.cmp(&b.0));
        others.sort_by(|a, b| a.0.cmp(&b.0));
        let mut pending: Vec<Pending> = whiteouts
            .into_iter()
            .chain(others)
            .map(|(_, i)| i)
            .collect();
        pending.reverse();
        self.stack.push(pending);
        Ok(())
    }

    fn next_item(&mut self) -> Result<Option<Item>, LayerError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            match frame.pop() {
                None => {
                    self.stack.pop();
                }
                Some(Pending::Ready(item)) => return Ok(Some(item)),
                Some(Pending::Dir {
                    item,
                    rel,
                    dirs,
                    opaque,
                }) => {
                    self.push_dir(rel, dirs, opaque)?;
                    return Ok(Some(item));
                }
            }
        }
    }
}

impl<F: FnMut(&[u8]) -> Result<Below, LayerError>> Iterator for MergeWalker<F> {
    type Item = Result<Item, LayerError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_item() {
            Ok(Some(i)) => Some(Ok(i)),
            Ok(None) => None,
            Err(e) => {
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobStore;
    use crate::layer::{write_merged_layer, Compression, LayerOptions};
    use std::io::Read;
    use std::path::Path;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn whiteout(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
    }

    fn opaque(p: &Path) {
        std::fs::create_dir_all(p).unwrap();
        rustix::fs::setxattr(
            p,
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }

    /// Merges `layers` (bottom first, as a Dockerfile makes them) over a base holding `base`
    /// (paths; a trailing `/` marks a directory) and lists the tar: `path` (a `/` after a
    /// directory) and, for files, `=content`.
    fn merged(layers: &[&Path], base: &[&str]) -> Vec<String> {
        let t = tempfile::tempdir().unwrap();
        let store = BlobStore::open(t.path().join("blobs")).unwrap();
        let top_first: Vec<PathBuf> = layers.iter().rev().map(|p| p.to_path_buf()).collect();
        let below = |rel: &[u8]| {
            let rel = std::str::from_utf8(rel).unwrap();
            Ok(if base.contains(&format!("{rel}/").as_str()) {
                Below::Dir
            } else if base.contains(&rel) {
                Below::Other
            } else {
                Below::Absent
            })
        };
        let opts = LayerOptions {
            compression: Compression::Gzip,
            ..LayerOptions::default()
        };
        let info = write_merged_layer(&store, &top_first, below, &opts).unwrap();
        let f = std::fs::File::open(store.path(&info.layer.digest)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            if e.header().entry_type().is_file() && !path.contains(".wh.") {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                out.push(format!("{path}={s}"));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[test]
    fn later_files_win_and_directories_merge() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        write(&l1.join("etc/a"), "1");
        write(&l1.join("etc/b"), "b");
        write(&l2.join("etc/a"), "2");
        write(&l2.join("etc/c"), "c");
        write(&l1.join("f"), "was a file");
        write(&l2.join("f/inside"), "now a directory");
        assert_eq!(
            merged(&[&l1, &l2], &["etc/"]),
            [
                "etc/",
                "etc/a=2",
                "etc/b=b",
                "etc/c=c",
                "f/",
                "f/inside=now a directory"
            ]
        );
    }

    #[test]
    fn a_whiteout_of_a_new_file_leaves_nothing_and_one_of_a_base_file_stays() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        write(&l1.join("etc/new"), "added then deleted");
        write(&l1.join("tmp/d/x"), "a new directory, deleted");
        write(&l1.join("etc/kept"), "k");
        whiteout(&l2.join("etc/new"));
        whiteout(&l2.join("etc/doomed"));
        whiteout(&l2.join("tmp/d"));
        assert_eq!(
            merged(&[&l1, &l2], &["etc/", "etc/doomed", "tmp/"]),
            ["etc/", "etc/.wh.doomed", "etc/kept=k", "tmp/"]
        );
    }

    #[test]
    fn a_whiteout_in_an_earlier_layer_is_kept_unless_a_later_layer_recreates_the_path() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        whiteout(&l1.join("etc/doomed"));
        whiteout(&l1.join("etc/back"));
        write(&l2.join("etc/back"), "recreated");
        assert_eq!(
            merged(&[&l1, &l2], &["etc/", "etc/doomed", "etc/back"]),
            ["etc/", "etc/.wh.doomed", "etc/back=recreated"]
        );
    }

    #[test]
    fn opaque_directories_hide_earlier_layers_and_stay_opaque_over_a_base_directory() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        write(&l1.join("opt/old"), "hidden by the opaque directory above");
        opaque(&l2.join("opt"));
        write(&l2.join("opt/new"), "n");
        write(&l1.join("srv/old"), "o");
        opaque(&l2.join("srv"));
        write(&l2.join("srv/new"), "n");
        assert_eq!(
            merged(&[&l1, &l2], &["opt/", "opt/base"]),
            ["opt/", "opt/.wh..wh..opq", "opt/new=n", "srv/", "srv/new=n"],
            "srv is not in the base: its opaque marker would hide nothing"
        );
    }

    #[test]
    fn a_directory_made_over_a_deleted_one_hides_the_base_directory() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        // A layer extracted from a tar elsewhere: the new directory is not marked opaque.
        whiteout(&l1.join("var"));
        write(&l2.join("var/fresh"), "f");
        assert_eq!(
            merged(&[&l1, &l2], &["var/", "var/old"]),
            ["var/", "var/.wh..wh..opq", "var/fresh=f"]
        );
    }

    #[test]
    fn the_merge_equals_applying_the_layers_one_by_one() {
        use crate::layer::{extract, write_layer, ExtractOptions};
        let t = tempfile::tempdir().unwrap();
        let (base, l1, l2, l3) = (
            t.path().join("base"),
            t.path().join("1"),
            t.path().join("2"),
            t.path().join("3"),
        );
        write(&base.join("etc/passwd"), "root");
        write(&base.join("etc/doomed"), "d");
        write(&base.join("opt/x/y"), "y");
        write(&base.join("usr/bin/tool"), "t");
        write(&l1.join("app/a"), "1");
        write(&l1.join("app/tmp"), "scratch");
        whiteout(&l1.join("etc/doomed"));
        opaque(&l1.join("opt"));
        write(&l1.join("opt/z"), "z");
        std::os::unix::fs::symlink("../app/a", l1.join("etc/link")).unwrap();
        write(&l2.join("app/a"), "2");
        whiteout(&l2.join("app/tmp"));
        whiteout(&l2.join("usr/bin"));
        write(&l3.join("usr/bin/other"), "o");
        let store = BlobStore::open(t.path().join("blobs")).unwrap();
        let apply = |target: &Path, digest: &crate::blob::Digest| {
            let f = std::fs::File::open(store.path(digest)).unwrap();
            extract(f, target, &ExtractOptions::default()).unwrap();
        };
        let opts = LayerOptions {
            reproducible_epoch: Some(0),
            ..LayerOptions::default()
        };
        let upper = LayerOptions {
            overlay_whiteouts: true,
            ..opts.clone()
        };
        let base_layer = write_layer(&store, &base, &opts).unwrap();
        let (one, two) = (t.path().join("one-by-one"), t.path().join("merged"));
        for d in [&one, &two] {
            std::fs::create_dir(d).unwrap();
            apply(d, &base_layer.layer.digest);
        }
        for l in [&l1, &l2, &l3] {
            apply(&one, &write_layer(&store, l, &upper).unwrap().layer.digest);
        }
        let view = crate::layer::OverlayView::new(vec![base.clone()]);
        let below = |rel: &[u8]| {
            use crate::fsview::{FsView, Kind};
            let p = Path::new("/").join(OsStr::from_bytes(rel));
            Ok(match view.lstat(&p).at(&p)? {
                None => Below::Absent,
                Some(e) if e.kind == Kind::Dir => Below::Dir,
                Some(_) => Below::Other,
            })
        };
        let m = write_merged_layer(&store, &[l3.clone(), l2.clone(), l1.clone()], below, &opts)
            .unwrap();
        apply(&two, &m.layer.digest);
        let listing = |root: &Path| {
            let mut out = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    let m = std::fs::symlink_metadata(&p).unwrap();
                    let rel = p.strip_prefix(root).unwrap().display().to_string();
                    let what = if m.is_dir() {
                        stack.push(p.clone());
                        "dir".to_string()
                    } else if m.file_type().is_symlink() {
                        format!("-> {}", std::fs::read_link(&p).unwrap().display())
                    } else {
                        std::fs::read_to_string(&p).unwrap()
                    };
                    out.push(format!("{rel} {what} {:o}", m.mode()));
                }
            }
            out.sort();
            out
        };
        let want = listing(&one);
        assert!(want.iter().any(|l| l.starts_with("usr/bin/other")));
        assert!(!want.iter().any(|l| l.starts_with("usr/bin/tool")));
        assert!(!want.iter().any(|l| l.starts_with("opt/x")));
        assert_eq!(listing(&two), want);
    }

    #[test]
    fn layers_extracted_with_oci_whiteouts_merge_alike() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2) = (t.path().join("1"), t.path().join("2"));
        write(&l1.join("etc/new"), "added then deleted");
        write(&l1.join("opt/old"), "hidden");
        write(&l2.join("etc/.wh.new"), "");
        write(&l2.join("etc/.wh.doomed"), "");
        write(&l2.join("opt/.wh..wh..opq"), "");
        write(&l2.join("opt/fresh"), "f");
        assert_eq!(
            merged(&[&l1, &l2], &["etc/", "etc/doomed", "opt/", "opt/base"]),
            [
                "etc/",
                "etc/.wh.doomed",
                "opt/",
                "opt/.wh..wh..opq",
                "opt/fresh=f"
            ]
        );
    }
}
