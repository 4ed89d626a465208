//! Test support: real overlay mounts that go away with the test, and trees in overlay form
//! (files, whiteout devices, opaque directories) written by hand.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An overlay mounted at a path; unmounted on drop, so a failing assertion leaves nothing behind.
pub struct Mount(PathBuf);

impl Mount {
    /// `mount -t overlay overlay -o OPTIONS AT`, creating `at` first.
    pub fn overlay(options: &str, at: &Path) -> Mount {
        fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", options])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "mount -o {options} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Mount(at.to_path_buf())
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes `data` to `p`, making its parents.
pub fn write(p: &Path, data: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// An overlay whiteout (a 0:0 character device) at `p`.
pub fn whiteout(p: &Path) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
}

/// An opaque directory (root's `trusted.overlay.opaque` xattr) at `p`.
pub fn opaque(p: &Path) {
    fs::create_dir_all(p).unwrap();
    rustix::fs::setxattr(
        p,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}
