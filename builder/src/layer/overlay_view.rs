//! Merged layers read the way overlayfs reads them, without mounting anything.

use crate::fsview::{host_xattrs, Entry, FsView};
use crate::layer::whiteout::{has_opaque_marker, oci_whiteout_of};
use crate::layer::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// A read-only merged view of layer directories in overlay form (top-most first): a 0:0
/// character device hides the name below it, a directory with `trusted.overlay.opaque=y` or
/// `user.overlay.opaque=y` hides the directories below it, a non-directory hides everything
/// below it, and directories merge. Metadata comes from the top-most layer holding the entry.
#[derive(Debug, Clone)]
pub struct OverlayView {
    lowers: Vec<PathBuf>,
}

/// Where an entry of the merged tree lives.
enum Found {
    /// A directory: the layers holding it (top-most first), its host path in the top-most.
    Dir(Vec<usize>, PathBuf, Metadata),
    /// Anything else: its host path in the layer that decides it.
    Other(PathBuf, Metadata),
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut v = [0u8; 4];
            matches!(rustix::fs::lgetxattr(path, *name, &mut v), Ok(1) if v[0] == b'y')
        })
        || has_opaque_marker(path)
}

fn lstat(p: &Path) -> io::Result<Option<Metadata>> {
    match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not in the view", path.display()),
    )
}

impl OverlayView {
    /// Views `lowers` (top-most first) merged.
    pub fn new(lowers: Vec<PathBuf>) -> Self {
        OverlayView { lowers }
    }

    /// The layer directories, top-most first.
    pub fn lowers(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// Looks `path` up component by component, carrying the layers in which the directory
    /// reached so far is a real directory (so the host never follows a symlink in a parent).
    fn find(&self, path: &Path) -> io::Result<Option<Found>> {
        let mut rel = PathBuf::new();
        let mut layers: Vec<usize> = (0..self.lowers.len()).collect();
        let mut found = None;
        let mut comps = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .peekable();
        if comps.peek().is_none() {
            // The root: every layer's root directory merges.
            return match self.lowers.first() {
                Some(top) => {
                    let m = std::fs::symlink_metadata(top)?;
                    Ok(Some(Found::Dir(layers, top.clone(), m)))
                }
                None => Ok(None),
            };
        }
        while let Some(name) = comps.next() {
            if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
                // Whiteouts in OCI spelling are bookkeeping, never entries (layers cannot
                // hold such names).
                return Ok(None);
            }
            rel.push(name);
            let mut dirs = Vec::new();
            let mut first: Option<(PathBuf, Metadata)> = None;
            for &i in &layers {
                let host = self.lowers[i].join(&rel);
                let Some(m) = lstat(&host)? else {
                    if oci_whiteout_of(&host)?.is_some() {
                        break;
                    }
                    continue;
                };
                if is_whiteout(&m) {
                    break;
                }
                if m.is_dir() {
                    let opaque = is_opaque(&host);
                    dirs.push(i);
                    if first.is_none() {
                        first = Some((host, m));
                    }
                    if opaque {
                        break;
                    }
                } else {
                    // A non-directory on top hides the rest; under a directory it is hidden.
                    if first.is_none() {
                        first = Some((host, m));
                    }
                    break;
                }
            }
            let Some((host, m)) = first else {
                return Ok(None);
            };
            if m.is_dir() {
                layers = dirs;
                found = Some(Found::Dir(layers.clone(), host, m));
            } else if comps.peek().is_some() {
                return Ok(None);
            } else {
                found = Some(Found::Other(host, m));
            }
        }
        Ok(found)
    }

    fn host(&self, path: &Path) -> io::Result<PathBuf> {
        match self.find(path)? {
            Some(Found::Dir(_, h, _)) | Some(Found::Other(h, _)) => Ok(h),
            None => Err(not_found(path)),
        }
    }
}

impl FsView for OverlayView {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        Ok(self.find(path)?.map(|f| match f {
            Found::Dir(_, _, m) | Found::Other(_, m) => crate::fsview::dir_entry(&m),
        }))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let Some(Found::Dir(layers, _, _)) = self.find(path)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory in the view", path.display()),
            ));
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        // name → visible; the top-most layer naming an entry decides.
        let mut names: BTreeMap<OsString, bool> = BTreeMap::new();
        for i in layers {
            let dir = self.lowers[i].join(rel);
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let name = e.file_name();
                if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                    // A whiteout in OCI spelling (see `crate::layer::extract`).
                    if hidden != &OPAQUE_MARKER.as_bytes()[WHITEOUT_PREFIX.len()..] {
                        names
                            .entry(OsStr::from_bytes(hidden).to_os_string())
                            .or_insert(false);
                    }
                    continue;
                }
                if names.contains_key(&name) {
                    continue;
                }
                let ft = e.file_type()?;
                let visible = !(ft.is_char_device() && e.metadata()?.rdev() == 0);
                names.insert(name, visible);
            }
        }
        Ok(names
            .into_iter()
            .filter_map(|(n, v)| v.then_some(n))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let h = self.host(path)?;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(h)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(self.host(path)?)
    }

    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        let mut all = host_xattrs(&self.host(path)?)?;
        // Overlay's bookkeeping is not the file's (a mount hides it too).
        all.retain(|(n, _)| {
            let n = n.as_bytes();
            !n.starts_with(b"trusted.overlay.") && !n.starts_with(b"user.overlay.")
        });
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn user_xattr_opaque_whiteouts_and_type_changes() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom) = (t.path().join("top"), t.path().join("bottom"));
        write(&bottom.join("etc/a"), "a");
        write(&bottom.join("etc/b"), "b");
        write(&bottom.join("opt/x"), "x");
        write(&bottom.join("f"), "file");
        std::os::unix::fs::symlink("etc", bottom.join("l")).unwrap();
        write(&top.join("opt/y"), "y");
        rustix::fs::setxattr(
            top.join("opt").as_path(),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        // Whiteout devices need no privilege since Linux 5.8.
        std::fs::create_dir_all(top.join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            top.join("etc/a"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        write(&top.join("f/inside"), "f is a dir");
        write(&top.join("l/z"), "l is a dir");
        let v = OverlayView::new(vec![top, bottom]);
        let names = |p: &str| v.read_dir(Path::new(p)).unwrap();
        assert_eq!(names("/"), ["etc", "f", "l", "opt"]);
        assert_eq!(names("/etc"), ["b"]);
        assert_eq!(names("/opt"), ["y"]);
        assert!(v.lstat(Path::new("/etc/a")).unwrap().is_none());
        assert!(v.lstat(Path::new("/opt/x")).unwrap().is_none());
        assert_eq!(
            names("/l"),
            ["z"],
            "a directory on top hides the symlink below"
        );
        assert!(v.lstat(Path::new("/l/b")).unwrap().is_none());
        assert!(v.lstat(Path::new("/etc/b/c")).unwrap().is_none());
        assert!(v.xattrs(Path::new("/opt")).unwrap().is_empty());
        assert!(v.open(Path::new("/etc/a")).is_err());
    }

    #[test]
    fn oci_spelled_whiteouts_and_opaque_markers_hide_what_is_below() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom) = (t.path().join("top"), t.path().join("bottom"));
        write(&bottom.join("etc/a"), "a");
        write(&bottom.join("etc/b"), "b");
        write(&bottom.join("opt/x"), "x");
        write(&top.join("etc/.wh.a"), "");
        write(&top.join("opt/.wh..wh..opq"), "");
        write(&top.join("opt/y"), "y");
        let v = OverlayView::new(vec![top, bottom]);
        let names = |p: &str| v.read_dir(Path::new(p)).unwrap();
        assert_eq!(names("/etc"), ["b"]);
        assert_eq!(names("/opt"), ["y"]);
        assert!(v.lstat(Path::new("/etc/a")).unwrap().is_none());
        assert!(v.lstat(Path::new("/etc/.wh.a")).unwrap().is_none());
        assert!(v.lstat(Path::new("/opt/x")).unwrap().is_none());
    }
}
