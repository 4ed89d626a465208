//! What a tree looked like before a step: metadata per path, content hashes only for files
//! whose times cannot be trusted to show a later write.

use super::walk;
use crate::fsview::Kind;
use crate::path_io::IoAt;
use crate::snapshot::error::SnapshotError;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One path's recorded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// File type.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch: changes with any write, chmod, chown
    /// or xattr change and cannot be set back by the step.
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Target of a symlink.
    pub link: Option<Vec<u8>>,
    /// sha256 of a regular file's content, for files changed within the recording's second.
    pub hash: Option<[u8; 32]>,
}

/// The recorded state of a tree, keyed by path relative to its root (`""` is the root).
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub(crate) entries: HashMap<Vec<u8>, Record>,
}

impl Manifest {
    /// Paths recorded (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record of `rel` (relative to the root, no leading `/`).
    pub fn get(&self, rel: &Path) -> Option<&Record> {
        self.entries.get(rel.as_os_str().as_bytes())
    }
}

pub(crate) fn kind_of(m: &Metadata) -> Kind {
    crate::fsview::file_kind(m.file_type())
}

fn ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

pub(crate) fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The metadata part of a record (no hash).
pub(crate) fn record_of(abs: &Path, m: &Metadata) -> Result<Record, SnapshotError> {
    let kind = kind_of(m);
    let link = if kind == Kind::Symlink {
        Some(
            std::fs::read_link(abs)
                .at(abs)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        )
    } else {
        None
    };
    Ok(Record {
        kind,
        size: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        rdev: m.rdev(),
        link,
        hash: None,
    })
}

/// Records the tree at `root`, streaming: one directory listing at a time, memory
/// proportional to the number of paths.
pub fn record(root: &Path) -> Result<Manifest, SnapshotError> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut entries = HashMap::new();
    walk(root, |rel, abs, m| {
        let mut r = record_of(abs, m)?;
        // A write later in the same second may leave the mtime as it is (filesystems with
        // coarse timestamps, writes within one clock tick): only the content can tell. Older
        // files show any write in their mtime (ctime may be recent: materialising sets it).
        if r.kind == Kind::File && m.mtime() >= started {
            r.hash = Some(hash_file(abs).at(abs)?);
        }
        entries.insert(rel.to_vec(), r);
        Ok(())
    })?;
    Ok(Manifest { entries })
}
