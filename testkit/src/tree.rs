//! Test support: reading a directory tree back as comparable text, so two trees (a source and
//! its extracted layer, a merged overlay view and a rebuilt one) compare with one `assert_eq!`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Every path below `root`, relative to it: parents before their children, siblings sorted.
/// Symlinks to directories are not followed.
pub fn paths(root: &Path) -> Vec<PathBuf> {
    fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                collect(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    collect(root, root, &mut out);
    out
}

/// Every path below `root` as text, sorted as strings (`a.txt` before `a/b`).
pub fn names(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = paths(root)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    out.sort();
    out
}

/// The extended attributes of `p` (not following a symlink), `name=[bytes]`, sorted; SELinux
/// labels, which the host sets on its own, are left out.
pub fn xattrs(p: &Path) -> Vec<String> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap();
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_s = String::from_utf8_lossy(name).into_owned();
        if name_s == "security.selinux" {
            continue;
        }
        let mut v = vec![0u8; 4096];
        let k = rustix::fs::lgetxattr(p, std::ffi::OsStr::from_bytes(name), &mut v[..]).unwrap();
        out.push(format!("{name_s}={:?}", &v[..k]));
    }
    out.sort();
    out
}

/// What a container would see of every path: type, size and content digest, device, link
/// target, mode, owner, mtime, hard-link group (named by its first path) and, when
/// `with_xattrs`, the extended attributes.
pub fn listing(root: &Path, with_xattrs: bool) -> Vec<String> {
    let mut inodes: HashMap<u64, String> = HashMap::new();
    paths(root)
        .iter()
        .map(|rel| {
            let p = root.join(rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link->{}", fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let mut s = Vec::new();
                fs::File::open(&p).unwrap().read_to_end(&mut s).unwrap();
                format!("file {} {}", m.len(), kiln::blob::Digest::of(&s))
            } else if ft.is_char_device() {
                format!("chr {}", m.rdev())
            } else if ft.is_block_device() {
                format!("blk {}", m.rdev())
            } else if ft.is_fifo() {
                "fifo".into()
            } else {
                "other".into()
            };
            let group = if !ft.is_dir() && m.nlink() > 1 {
                inodes
                    .entry(m.ino())
                    .or_insert_with(|| rel.display().to_string())
                    .clone()
            } else {
                String::new()
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            let xattrs = if with_xattrs {
                format!(" xattrs={:?}", xattrs(&p))
            } else {
                String::new()
            };
            format!(
                "{} {kind} {mode:o} {}:{} mtime={}{xattrs} hl={group}",
                rel.display(),
                m.uid(),
                m.gid(),
                m.mtime(),
            )
        })
        .collect()
}
