//! Writing a layer: walk → tar → (diff_id) → compressor → (digest, size) → blob store, in one
//! streaming pass with bounded buffers.

use super::compress::{Compression, Encoder};
use super::error::LayerError;
use super::index::{IndexBuilder, IndexEntry, IndexKind, LayerIndex};
use super::merge::{Below, MergeWalker};
use super::owners::{is_owner_xattr, recorded_owner, HostIds};
use super::record::Layer;
use super::tar_write::{EntryHeader, Kind, TarWriter};
use super::walk::{Item, Walker};
use crate::blob::{BlobStore, Digest, DigestWriter};
use crate::path_io::IoAt;
use crate::transfer::Counted;
use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How a layer is written.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// `--reproducible`: every entry's mtime is set to this (seconds since the epoch; use 0
    /// when no `SOURCE_DATE_EPOCH` is given).
    pub reproducible_epoch: Option<i64>,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are clamped to it.
    pub clamp_epoch: Option<i64>,
    /// How the tar stream is compressed.
    pub compression: Compression,
    /// Compression level; `None` for the fast default of each format.
    pub level: Option<i32>,
    /// Compression threads; 0 for every core.
    pub threads: usize,
    /// Turn overlay whiteouts (0:0 char devices, opaque xattrs) into OCI whiteouts: set when
    /// the tree is an overlay upper directory, clear for a whole rootfs.
    pub overlay_whiteouts: bool,
    /// The tree is an upper directory whose deletions are already OCI whiteout files (a
    /// tree diff's, where `mknod` of a whiteout was refused): its `.wh.` names go into the
    /// layer as they are instead of being refused.
    pub oci_whiteouts: bool,
    /// Paths (relative to the tree) left out with everything under them, such as the mount
    /// points the sandbox added.
    pub exclude: Vec<PathBuf>,
    /// With `overlay_whiteouts`: the lower directories under the upper, top first. An opaque
    /// directory is then written as whiteouts of what it hides below (a tree diff's spelling)
    /// instead of an opaque marker; without them, as the marker.
    pub overlay_lowers: Vec<PathBuf>,
    /// Where the bytes of the tar stream going into the compressor are counted.
    pub progress: Option<std::sync::Arc<crate::transfer::Transfer>>,
    /// How the tree's owners on the host become the layer's (mapped when kiln is not root).
    pub host_ids: HostIds,
    /// Where the nanoseconds the tar writer spends blocked on the compressor are added up,
    /// telling compression's share of the pass from the walk's and tar's.
    pub compress_nanos: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// A layer just written to the blob store: its record and what only the writer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The blob, as a manifest and an image config name it.
    pub layer: Layer,
    /// The layer's metadata, collected from the headers as they were written; `None` for a
    /// layer of more than [`super::MAX_INDEX_ENTRIES`] entries.
    pub index: Option<LayerIndex>,
}

/// Bytes read from a file per read: big enough to keep syscalls cheap, small enough not to
/// matter per thread.
const COPY_BUF: usize = 256 * 1024;

/// Writes the tree at `dir` as a layer into `store`.
pub fn write_layer(
    store: &BlobStore,
    dir: &Path,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    store_layer(store, walk(dir, opts)?, opts)
}

/// Tars `items` through the compressor into a new blob of `store`.
fn store_layer(
    store: &BlobStore,
    items: impl Iterator<Item = Result<Item, LayerError>>,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    let blob = store.writer()?;
    let enc = Encoder::new(blob, opts.compression, opts.level, opts.threads)
        .map_err(LayerError::Stream)?;
    let timed = Timed {
        inner: enc,
        nanos: opts.compress_nanos.clone(),
    };
    let counted = Counted::new(timed, opts.progress.as_ref().map(|t| t.blob(None)));
    // The encoder computes the diff_id itself: parallel gzip hashes off this thread.
    let (counted, index) = tar_items(items, opts, counted)?;
    let timed = counted.finish();
    let (diff_id, blob) =
        add_time(&timed.nanos, || timed.inner.finish()).map_err(LayerError::Stream)?;
    let (digest, size) = blob.commit()?;
    Ok(LayerInfo {
        layer: Layer {
            digest,
            size,
            diff_id,
            media_type: opts.compression.media_type().to_string(),
        },
        index,
    })
}

/// A writer whose calls' time is added to `nanos`.
struct Timed<W> {
    inner: W,
    nanos: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// Runs `f`, adding its time to `nanos`.
fn add_time<T>(
    nanos: &Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    f: impl FnOnce() -> T,
) -> T {
    // Called for every write of the tar stream: an untimed write reads no clock.
    let Some(n) = nanos else {
        return f();
    };
    let start = std::time::Instant::now();
    let out = f();
    n.fetch_add(
        start.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    out
}

impl<W: Write> Write for Timed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        add_time(&self.nanos, || self.inner.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        add_time(&self.nanos, || self.inner.flush())
    }
}

/// Writes the tree at `dir` as an uncompressed tar into `out` (the compression options are
/// ignored) and returns its diff_id and `out`.
pub fn write_tar<W: Write>(
    dir: &Path,
    opts: &LayerOptions,
    out: W,
) -> Result<(Digest, W), LayerError> {
    let (hashed, _) = tar_items(walk(dir, opts)?, opts, DigestWriter::new(out))?;
    let (diff_id, _, out) = hashed.finish();
    Ok((diff_id, out))
}

/// Writes the merged diff of `layers` (extracted layer directories in overlay form, top-most
/// first) as one layer into `store`: what applying them one after the other changes, with
/// deletions kept only where `below` (what the layers under them hold, by path relative to the
/// root) says they hide something. `overlay_whiteouts`, `oci_whiteouts` and `exclude` of
/// `opts` are ignored.
pub fn write_merged_layer(
    store: &BlobStore,
    layers: &[PathBuf],
    below: impl FnMut(&[u8]) -> Result<Below, LayerError>,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    store_layer(store, MergeWalker::new(layers, below)?, opts)
}

/// The tree at `dir` in layer order, read as `opts` says.
fn walk(dir: &Path, opts: &LayerOptions) -> Result<Walker, LayerError> {
    Walker::new(
        dir,
        opts.overlay_whiteouts,
        opts.oci_whiteouts,
        &opts.exclude,
        &opts.overlay_lowers,
    )
}

/// Writes `items` (in layer order) as an uncompressed tar into `out`; returns it with the
/// layer's index.
fn tar_items<W: Write>(
    items: impl Iterator<Item = Result<Item, LayerError>>,
    opts: &LayerOptions,
    out: W,
) -> Result<(W, Option<LayerIndex>), LayerError> {
    let mut tar = IndexedTar {
        tar: TarWriter::new(out),
        index: IndexBuilder::default(),
    };
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; COPY_BUF];
    for item in items {
        match item? {
            Item::Whiteout { rel, meta } | Item::Opaque { rel, meta } => {
                let mut h = base_header(rel, &meta, None, opts);
                h.kind = Kind::Regular;
                h.mode = 0o644;
                // A whiteout's owner means nothing; root's, whoever deleted (overlay's device
                // or a directory's owner otherwise), so both snapshot modes write the same.
                h.uid = 0;
                h.gid = 0;
                tar.header(&h).map_err(LayerError::Stream)?;
            }
            Item::File {
                rel,
                abs,
                meta,
                mut xattrs,
            } => {
                let recorded = recorded_owner(xattrs.iter().map(|(n, v)| (&n[..], &v[..])));
                xattrs.retain(|(n, _)| !is_owner_xattr(n));
                let mut h = base_header(rel, &meta, recorded, opts);
                h.xattrs = xattrs;
                let ft = meta.file_type();
                let mut data = None;
                if !ft.is_dir() && meta.nlink() > 1 {
                    match links.get(&(meta.dev(), meta.ino())) {
                        Some(first) => {
                            h.kind = Kind::HardLink;
                            h.link = first.clone();
                            // The data and xattrs are the first path's; a reader takes them
                            // from there.
                            h.xattrs.clear();
                            tar.header(&h).map_err(LayerError::Stream)?;
                            continue;
                        }
                        None => {
                            links.insert((meta.dev(), meta.ino()), h.path.clone());
                        }
                    }
                }
                if ft.is_file() {
                    h.kind = Kind::Regular;
                    h.size = meta.len();
                    data = Some(std::fs::File::open(&abs).at(&abs)?);
                } else if ft.is_dir() {
                    h.kind = Kind::Dir;
                } else if ft.is_symlink() {
                    h.kind = Kind::Symlink;
                    h.link = std::fs::read_link(&abs)
                        .at(&abs)?
                        .as_os_str()
                        .as_bytes()
                        .to_vec();
                } else if ft.is_char_device() || ft.is_block_device() {
                    h.kind = if ft.is_char_device() {
                        Kind::Char
                    } else {
                        Kind::Block
                    };
                    h.dev_major = rustix::fs::major(meta.rdev());
                    h.dev_minor = rustix::fs::minor(meta.rdev());
                } else if ft.is_fifo() {
                    h.kind = Kind::Fifo;
                } else {
                    // Sockets belong to a running process, not an image: Docker drops them too.
                    continue;
                }
                tar.header(&h).map_err(LayerError::Stream)?;
                if let Some(mut f) = data {
                    copy_file(&mut tar.tar, &mut f, h.size, &abs, &mut buf)?;
                }
            }
        }
    }
    let index = tar.index.finish();
    Ok((tar.tar.finish().map_err(LayerError::Stream)?, index))
}

/// A tar writer that records each header in the index as it goes.
struct IndexedTar<W: Write> {
    tar: TarWriter<W>,
    index: IndexBuilder,
}

impl<W: Write> IndexedTar<W> {
    fn header(&mut self, h: &EntryHeader) -> io::Result<()> {
        self.tar.header(h)?;
        self.index.push(IndexEntry {
            path: h.path.clone(),
            kind: match h.kind {
                Kind::Regular => IndexKind::File,
                Kind::Dir => IndexKind::Dir,
                Kind::Symlink => IndexKind::Symlink,
                Kind::HardLink => IndexKind::HardLink,
                Kind::Char => IndexKind::Char,
                Kind::Block => IndexKind::Block,
                Kind::Fifo => IndexKind::Fifo,
            },
            mode: h.mode,
            uid: u32::try_from(h.uid).unwrap_or(u32::MAX),
            gid: u32::try_from(h.gid).unwrap_or(u32::MAX),
            size: h.size,
            mtime: h.mtime,
            rdev: rustix::fs::makedev(h.dev_major, h.dev_minor),
            link: h.link.clone(),
            xattrs: h.xattrs.clone(),
        });
        Ok(())
    }
}

fn copy_file<W: Write>(
    tar: &mut TarWriter<W>,
    f: &mut std::fs::File,
    size: u64,
    abs: &Path,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    // Reads go through a wrapper so a read error is told apart from a write error.
    struct Src<'a>(&'a mut std::fs::File, Option<io::Error>);
    impl io::Read for Src<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b).inspect_err(|e| {
                self.1 = Some(io::Error::new(e.kind(), e.to_string()));
            })
        }
    }
    let mut src = Src(f, None);
    match tar.data(&mut src, size, buf) {
        Ok(_) => Ok(()),
        Err(e) if src.1.is_some() => Err(crate::path_io::PathIo::new(abs, e).into()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(LayerError::Changed {
            path: abs.to_path_buf(),
            expected: size,
        }),
        Err(e) => Err(LayerError::Stream(e)),
    }
}

/// The header of `rel` from its host metadata; `recorded` is the owner kept in its
/// [`super::owners::OWNER_XATTR`].
fn base_header(
    rel: Vec<u8>,
    meta: &Metadata,
    recorded: Option<(u32, u32)>,
    opts: &LayerOptions,
) -> EntryHeader {
    let mut mtime = meta.mtime();
    if let Some(clamp) = opts.clamp_epoch {
        mtime = mtime.min(clamp);
    }
    if let Some(epoch) = opts.reproducible_epoch {
        mtime = epoch;
    }
    let (uid, gid) = opts.host_ids.image_owner(meta.uid(), meta.gid(), recorded);
    EntryHeader {
        path: rel,
        kind: Kind::Regular,
        mode: meta.mode() & 0o7777,
        uid: u64::from(uid),
        gid: u64::from(gid),
        mtime,
        size: 0,
        link: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        xattrs: Vec::new(),
    }
}
