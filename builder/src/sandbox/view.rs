//! The tree an overlay mount of some layer directories would show, read without mounting it:
//! the sandbox looks up users, the program and mount points there before the process starts.

use crate::fsview::{host_xattrs, Entry, FsView};
use crate::layer::whiteout::is_opaque_xattr;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Layer directories in overlay form (whiteouts as 0:0 char devices, opaque directories by
/// xattr), top-most first, seen merged.
#[derive(Debug, Clone)]
pub struct OverlayView {
    layers: Vec<PathBuf>,
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(path: &Path) -> io::Result<bool> {
    Ok(host_xattrs(path)?
        .iter()
        .any(|(n, v)| is_opaque_xattr(std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str()), v)))
}

fn lstat(path: &Path) -> io::Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.raw_os_error(), Some(2) | Some(20)) => Ok(None),
        Err(e) => Err(e),
    }
}

impl OverlayView {
    /// Views `layers` (top-most first) merged.
    pub fn new(layers: Vec<PathBuf>) -> Self {
        OverlayView { layers }
    }

    /// The layers whose entry at `path` is part of the merged result, top-most first, with the
    /// entry's host path and metadata.
    fn contributing(&self, path: &Path) -> io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
        let mut comps: Vec<&std::ffi::OsStr> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => comps.push(n),
                Component::ParentDir => {
                    comps.pop();
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        'layers: for layer in &self.layers {
            let mut host = layer.clone();
            let mut hides_below = false;
            if comps.is_empty() {
                if let Some(m) = lstat(&host)? {
                    let opaque = is_opaque(&host)?;
                    out.push((host, m));
                    if opaque {
                        break 'layers;
                    }
                }
                continue 'layers;
            }
            for (k, c) in comps.iter().enumerate() {
                host.push(c);
                let Some(m) = lstat(&host)? else {
                    if hides_below {
                        break 'layers;
                    }
                    continue 'layers;
                };
                if is_whiteout(&m) {
                    break 'layers;
                }
                let last = k + 1 == comps.len();
                if last {
                    let dir = m.is_dir();
                    let opaque = dir && is_opaque(&host)?;
                    out.push((host, m));
                    if !dir || opaque || hides_below {
                        break 'layers;
                    }
                    continue 'layers;
                }
                if !m.is_dir() {
                    break 'layers;
                }
                hides_below |= is_opaque(&host)?;
            }
        }
        Ok(out)
    }

    fn top(&self, path: &Path) -> io::Result<PathBuf> {
        self.contributing(path)?
            .into_iter()
            .next()
            .map(|(p, _)| p)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

impl FsView for OverlayView {
    fn lstat(&self, path: &Path) -> io::Result<Option<Entry>> {
        Ok(self
            .contributing(path)?
            .into_iter()
            .next()
            .map(|(_, m)| crate::fsview::dir_entry(&m)))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let dirs = self.contributing(path)?;
        if dirs.is_empty() || !dirs[0].1.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        let mut names = BTreeSet::new();
        for (host, m) in &dirs {
            if !m.is_dir() {
                break;
            }
            for e in std::fs::read_dir(host)? {
                names.insert(e?.file_name());
            }
        }
        let mut out = Vec::new();
        for n in names {
            if self.lstat(&path.join(&n))?.is_some() {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn open(&self, path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(self.top(path)?)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(self.top(path)?)
    }

    fn xattrs(&self, path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
        host_xattrs(&self.top(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsview::Kind;

    fn whiteout(p: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
    }

    #[test]
    fn merges_like_overlay() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: whiteouts need root to create");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (lo, hi) = (t.path().join("lo"), t.path().join("hi"));
        for d in ["lo/etc", "lo/gone/sub", "lo/opq", "hi/etc", "hi/opq"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(lo.join("etc/passwd"), "lower").unwrap();
        std::fs::write(lo.join("etc/group"), "g").unwrap();
        std::fs::write(lo.join("opq/old"), "").unwrap();
        std::fs::write(hi.join("etc/passwd"), "upper").unwrap();
        std::fs::write(hi.join("opq/new"), "").unwrap();
        whiteout(&hi.join("gone"));
        rustix::fs::setxattr(
            hi.join("opq"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let v = OverlayView::new(vec![hi, lo]);
        let read = |p: &str| crate::fsview::read_small(&v, Path::new(p)).unwrap();
        assert_eq!(read("/etc/passwd").unwrap(), b"upper");
        assert_eq!(read("/etc/group").unwrap(), b"g");
        assert_eq!(v.lstat(Path::new("/gone")).unwrap(), None);
        assert_eq!(v.lstat(Path::new("/gone/sub")).unwrap(), None);
        assert_eq!(v.lstat(Path::new("/opq/old")).unwrap(), None);
        assert_eq!(
            v.lstat(Path::new("/opq/new")).unwrap().unwrap().kind,
            Kind::File
        );
        assert_eq!(v.read_dir(Path::new("/")).unwrap(), ["etc", "opq"]);
        assert_eq!(v.read_dir(Path::new("/opq")).unwrap(), ["new"]);
        assert_eq!(v.read_dir(Path::new("/etc")).unwrap(), ["group", "passwd"]);
    }
}
