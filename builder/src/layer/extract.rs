//! Extracting a layer onto a directory: sniffs the compression, applies OCI whiteouts to what
//! earlier layers left there (or records them as overlay whiteouts), restores numeric owners,
//! modes, mtimes, xattrs, hard links, symlinks and device nodes, and refuses any entry that
//! would write outside the target (see [`super::safe_fs`] for how).

use super::error::LayerError;
use super::index::{IndexBuilder, IndexEntry, IndexKind, LayerIndex};
use super::safe_fs::{clean, kind_at, list, os, rel, remove_all_at, Root};
use super::whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::blob::Digest;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::process::{Gid, Uid};
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use tar::EntryType;

/// How a layer is extracted.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Record whiteouts the way overlayfs does (a 0:0 char device for `.wh.<name>`, the
    /// `trusted.overlay.opaque=y` xattr for `.wh..wh..opq`) instead of applying them, so the
    /// directory can serve as an overlay lower directory of its own.
    pub overlay_whiteouts: bool,
    /// Leave owners as the extracting user instead of restoring the layer's numeric ids
    /// (for extraction without root); files and directories owned by anyone but root record
    /// their owner in [`super::owners::OWNER_XATTR`], so layers written from them keep it.
    pub ignore_owners: bool,
    /// The most bytes the layer may expand to, counted twice over: its uncompressed tar
    /// stream, and the bytes written into its files (where a sparse entry's holes count).
    /// `None`: no limit.
    pub max_bytes: Option<u64>,
}

/// The default of `--max-layer-size`: far above any real layer, far below a full disk.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

/// Why a limited reader or writer stopped: turned back into [`LayerError::TooLarge`].
#[derive(Debug)]
struct OverLimit(&'static str);

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} over the limit", self.0)
    }
}

impl std::error::Error for OverLimit {}

/// Counts bytes against a limit, failing the read or write that passes it.
#[derive(Debug)]
struct Budget {
    what: &'static str,
    left: u64,
}

impl Budget {
    fn new(what: &'static str, limit: Option<u64>) -> Self {
        Budget {
            what,
            left: limit.unwrap_or(u64::MAX),
        }
    }

    fn spend(&mut self, n: usize) -> io::Result<()> {
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other(OverLimit(self.what)))?;
        Ok(())
    }
}

/// A stream error, or the limit it ran into.
fn stream_err(limit: Option<u64>) -> impl Fn(io::Error) -> LayerError {
    move |e| match e.get_ref().and_then(|i| i.downcast_ref::<OverLimit>()) {
        Some(OverLimit(what)) => LayerError::TooLarge {
            what,
            limit: limit.unwrap_or(u64::MAX),
        },
        None => LayerError::Stream(e),
    }
}

/// A file being extracted, its bytes counted against the layer's budget.
struct LimitedFile<'a> {
    file: std::fs::File,
    budget: &'a mut Budget,
}

impl Write for LimitedFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.budget.spend(buf.len())?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl super::sparse::SparseOut for LimitedFile<'_> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        // A hole counts against the budget as its zeros would: the limit is on what the
        // layer expands to, and a sparse entry is the cheap way to ask for much.
        self.budget
            .spend(usize::try_from(n).unwrap_or(usize::MAX))?;
        super::sparse::SparseOut::skip(&mut self.file, n)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        super::sparse::SparseOut::set_len(&mut self.file, len)
    }
}

/// The paths a layer wrote, as 128-bit fingerprints: 16 bytes an entry however long its path,
/// so a layer of a million files keeps this set in tens of MiB, not hundreds. Two entries of one
/// layer sharing a fingerprint (odds about 2^-90 for a million) would only spare a lower path
/// from that layer's own whiteout.
#[derive(Default)]
struct Touched(std::collections::HashSet<u128>);

impl Touched {
    fn fingerprint(path: &[u8]) -> u128 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut a = DefaultHasher::new();
        path.hash(&mut a);
        let mut b = DefaultHasher::new();
        b.write_u8(0x5a);
        path.hash(&mut b);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }

    fn insert(&mut self, path: &[u8]) {
        self.0.insert(Self::fingerprint(path));
    }

    fn contains(&self, path: &[u8]) -> bool {
        self.0.contains(&Self::fingerprint(path))
    }
}

/// What an extraction read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractInfo {
    /// sha256 of the uncompressed tar stream: compare with the image config's diff_id.
    pub diff_id: Digest,
    /// Entries in the tar stream (whiteouts included).
    pub entries: u64,
    /// The layer's metadata, read off the headers on the way; `None` for a layer of more than
    /// [`super::MAX_INDEX_ENTRIES`] entries.
    pub index: Option<LayerIndex>,
}

/// Extracts the layer read from `layer` (gzip, zstd or plain tar) onto `target`. The stream
/// is decompressed and hashed on a second thread (`decode.rs`).
pub fn extract<R: Read + Send>(
    layer: R,
    target: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractInfo, LayerError> {
    let root = Root::open(target)?;
    let err = stream_err(opts.max_bytes);
    let mut budget = Budget::new("uncompressed stream", opts.max_bytes);
    let (entries, sha) = std::thread::scope(|s| {
        let (decoded, hashed) = super::decode::spawn(s, layer, move |n| budget.spend(n));
        let entries = fill(&root, opts, decoded, &err);
        // A failed extraction dropped the reader, which stops the thread.
        (entries, hashed.join())
    });
    let (entries, index) = entries?;
    let diff_id = sha
        .ok()
        .flatten()
        .ok_or_else(|| LayerError::Stream(io::Error::other("the layer stream ended early")))?;
    Ok(ExtractInfo {
        diff_id,
        entries,
        index,
    })
}

/// Reads the index of `layer` (gzip, zstd or plain tar) off its headers, extracting nothing:
/// the entries as [`extract`] records them, and the diff_id. `kiln warm` records it for the
/// layers it fetches, so a COPY onto a warmed base neither downloads nor extracts the base.
///
/// # Errors
/// A malformed or unsafe entry (as extraction refuses it), a stream past `max_bytes`.
pub fn read_index<R: Read + Send>(
    layer: R,
    max_bytes: Option<u64>,
) -> Result<(Digest, Option<LayerIndex>), LayerError> {
    let err = stream_err(max_bytes);
    let mut budget = Budget::new("uncompressed stream", max_bytes);
    let (index, sha) = std::thread::scope(|s| {
        let (decoded, hashed) = super::decode::spawn(s, layer, move |n| budget.spend(n));
        let index = index_entries(decoded, &err);
        (index, hashed.join())
    });
    let index = index?;
    let diff_id = sha
        .ok()
        .flatten()
        .ok_or_else(|| LayerError::Stream(io::Error::other("the layer stream ended early")))?;
    Ok((diff_id, index))
}

/// The index of the tar stream `decoded`, each entry classified as [`Extractor::entry`]
/// classifies it (a test holds the two equal).
fn index_entries(
    decoded: super::decode::Decoded,
    err: &impl Fn(io::Error) -> LayerError,
) -> Result<Option<LayerIndex>, LayerError> {
    let mut ar = tar::Archive::new(decoded);
    let mut index = IndexBuilder::default();
    for entry in ar.entries().map_err(err)? {
        let mut e = entry.map_err(err)?;
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            continue;
        }
        let comps = clean(&name, &raw)?;
        let Some((base, _)) = comps.split_last() else {
            continue;
        };
        if base.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            index.push(IndexEntry::named(rel(&comps), IndexKind::File));
            continue;
        }
        let m = meta_of(&mut e, &name)?;
        if let Some(entry) = index_entry(&e, kind, &rel(&comps), &m) {
            index.push(entry);
        }
    }
    io::copy(&mut ar.into_inner(), &mut io::sink()).map_err(err)?;
    Ok(index.finish())
}

/// Writes the entries of the tar stream `decoded` under `root`; the number of entries and the
/// layer's index.
fn fill(
    root: &Root,
    opts: &ExtractOptions,
    decoded: super::decode::Decoded,
    err: &impl Fn(io::Error) -> LayerError,
) -> Result<(u64, Option<LayerIndex>), LayerError> {
    let mut ar = tar::Archive::new(decoded);
    let mut x = Extractor {
        root,
        last_dir: None,
        last_dir_setgid: true,
        new_file_owner: (!opts.ignore_owners).then(|| {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        }),
        opts,
        touched: Touched::default(),
        touched_parent: Vec::new(),
        dir_fixups: Vec::new(),
        entries: 0,
        index: IndexBuilder::default(),
        written: Budget::new("bytes written to files", opts.max_bytes),
    };
    for entry in ar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        x.entries += 1;
        x.entry(&mut entry)?;
    }
    // Directory modes and mtimes last: creating children changed the mtimes, and a read-only
    // mode set early would stop a non-root extraction from filling the directory. Deepest
    // first, so a parent's mode never blocks reaching its children.
    let mut fixups = std::mem::take(&mut x.dir_fixups);
    fixups.sort_by_key(|f| std::cmp::Reverse(f.0.len()));
    for (comps, mode, mtime) in fixups {
        let r = rel(&comps);
        if let Some(fd) = root.open_dir(&comps, false, &String::from_utf8_lossy(&r))? {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| root.err(&r, e))?;
            rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| root.err(&r, e))?;
        }
    }
    // The end-of-archive blocks and any padding belong to the diff_id too.
    io::copy(&mut ar.into_inner(), &mut io::sink()).map_err(err)?;
    Ok((x.entries, x.index.finish()))
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Whether a layer's xattr `name` is applied. Overlay's own attributes would change how overlay
/// reads a directory as a lower (redirects, metacopy), and kiln's owner record would change the
/// owner a later layer gets: never from a layer.
pub(super) fn kept_xattr(name: &[u8]) -> bool {
    !name.starts_with(b"trusted.overlay.")
        && !name.starts_with(b"user.overlay.")
        && !super::owners::is_owner_xattr(name)
        && !name.is_empty()
}

/// Metadata of an entry with its PAX overrides applied.
pub(super) struct Meta {
    /// Permission bits, setuid, setgid and sticky (`& 0o7777`).
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
    /// Those a layer may set ([`kept_xattr`]).
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Extractor<'a> {
    root: &'a Root,
    /// The directory the last entry went into, kept open: a layer lists a directory's
    /// entries together, so most entries need no walk from the root. An entry only removes
    /// what is below it, never this directory; a whiteout may remove it or a parent, so
    /// whiteouts drop it.
    last_dir: Option<(Vec<Vec<u8>>, Rc<OwnedFd>)>,
    /// Whether [`Self::last_dir`] is setgid (its new files take its group).
    last_dir_setgid: bool,
    /// Who owns a file this process creates (`None` when owners are not set): a new file in a
    /// directory that is not setgid needs no chown to that owner.
    new_file_owner: Option<(u32, u32)>,
    opts: &'a ExtractOptions,
    /// Paths this layer wrote (and their ancestors): whiteouts only remove lower content.
    touched: Touched,
    /// The parent directory whose ancestors were last added to [`Self::touched`].
    touched_parent: Vec<Vec<u8>>,
    /// Directories' (path, mode, mtime), applied after every entry.
    dir_fixups: Vec<(Vec<Vec<u8>>, u32, i64)>,
    entries: u64,
    index: IndexBuilder,
    /// What the layer's files may still take.
    written: Budget,
}

fn malformed(entry: &str, reason: impl Into<String>) -> LayerError {
    LayerError::Malformed {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn meta_of<R: Read>(e: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, LayerError> {
    let h = e.header();
    let bad = |what: &str, err: io::Error| malformed(name, format!("{what}: {err}"));
    let mut m = Meta {
        mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
        uid: u32::try_from(h.uid().map_err(|e| bad("uid", e))?)
            .map_err(|_| malformed(name, "uid out of range"))?,
        gid: u32::try_from(h.gid().map_err(|e| bad("gid", e))?)
            .map_err(|_| malformed(name, "gid out of range"))?,
        mtime: i64::try_from(h.mtime().map_err(|e| bad("mtime", e))?).unwrap_or(i64::MAX),
        xattrs: Vec::new(),
    };
    if let Some(pax) = e.pax_extensions().map_err(|e| bad("pax header", e))? {
        for rec in pax {
            let rec = rec.map_err(|e| bad("pax record", e))?;
            let (key, value) = (rec.key_bytes(), rec.value_bytes());
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| malformed(name, "bad numeric pax record"))
            };
            match key {
                b"uid" => m.uid = u32::try_from(num()?).map_err(|_| malformed(name, "bad uid"))?,
                b"gid" => m.gid = u32::try_from(num()?).map_err(|_| malformed(name, "bad gid"))?,
                b"mtime" => m.mtime = num()?,
                _ => {
                    if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                        if kept_xattr(x) {
                            m.xattrs.push((x.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(m)
}

/// The index entry of tar entry `e` (at `path`, with PAX-applied `m`); `None` for a kind the
/// index does not record.
fn index_entry<R: Read>(
    e: &tar::Entry<'_, R>,
    kind: EntryType,
    path: &[u8],
    m: &Meta,
) -> Option<IndexEntry> {
    let k = IndexKind::of_tar(kind)?;
    let h = e.header();
    let dev = (
        h.device_major().ok().flatten().unwrap_or(0),
        h.device_minor().ok().flatten().unwrap_or(0),
    );
    let link = e.link_name_bytes().unwrap_or_default();
    Some(entry_as_extracted(
        k,
        path,
        m,
        h.size().unwrap_or(0),
        &link,
        dev,
    ))
}

/// The index entry of a layer entry as extraction leaves it, whether a tar header or a
/// zstd:chunked table of contents ([`super::toc`]) describes it: `link` as the layer spells
/// it, `dev` its device numbers.
pub(super) fn entry_as_extracted(
    kind: IndexKind,
    path: &[u8],
    m: &Meta,
    size: u64,
    link: &[u8],
    dev: (u32, u32),
) -> IndexEntry {
    let link = match kind {
        IndexKind::Symlink => link.to_vec(),
        // As the path it names in the layer, the way the writer records it.
        IndexKind::HardLink => {
            rel(&clean(&String::from_utf8_lossy(path), link).unwrap_or_default())
        }
        _ => Vec::new(),
    };
    let rdev = match kind {
        IndexKind::Char | IndexKind::Block => rustix::fs::makedev(dev.0, dev.1),
        _ => 0,
    };
    IndexEntry {
        path: path.to_vec(),
        kind,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        size,
        mtime: m.mtime,
        rdev,
        link,
        xattrs: m.xattrs.clone(),
    }
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let comps = clean(&name, &raw)?;
        let Some((base, parent)) = comps.split_last() else {
            // The root itself (`./`): the target's own metadata is the caller's.
            return Ok(());
        };
        let parent_rel = rel(parent);
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            // Applied whiteouts have nothing to remove under a directory that is not there;
            // recorded ones (overlay spelling) need it.
            let create = self.opts.overlay_whiteouts;
            self.last_dir = None;
            self.index
                .push(IndexEntry::named(rel(&comps), IndexKind::File));
            return match self.root.open_dir(parent, create, &name)? {
                Some(dir) => self.whiteout(&name, &dir, &parent_rel, base, hidden),
                None => Ok(()),
            };
        }
        let dir = self.parent_dir(parent, &name)?;
        // A layer lists a directory's entries together: the ancestors are those of the last
        // entry most of the time, already in.
        if parent != &self.touched_parent[..] {
            for i in 1..comps.len() {
                self.touched.insert(&rel(&comps[..i]));
            }
            self.touched_parent = parent.to_vec();
        }
        let path = rel(&comps);
        let m = meta_of(e, &name)?;
        if let Some(entry) = index_entry(e, kind, &path, &m) {
            self.index.push(entry);
        }
        let existing = kind_at(&dir, base).map_err(|er| self.root.err(&path, er))?;
        if existing.is_some()
            && !(kind == EntryType::Directory && existing == Some(FileType::Directory))
        {
            remove_all_at(&dir, base).map_err(|er| self.root.err(&path, er))?;
        }
        let err = |er: rustix::io::Errno| self.root.err(&path, er);
        match kind {
            EntryType::Directory => {
                if existing != Some(FileType::Directory) {
                    rustix::fs::mkdirat(&dir, os(base), Mode::from_raw_mode(0o700)).map_err(err)?;
                }
                let fd = rustix::fs::openat(
                    &dir,
                    os(base),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(err)?;
                self.fd_meta(&fd, &path, &m, false, false)?;
                self.dir_fixups.push((comps.clone(), m.mode, m.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = rustix::fs::openat(
                    &dir,
                    os(base),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(err)?;
                let mut f = LimitedFile {
                    file: std::fs::File::from(fd),
                    budget: &mut self.written,
                };
                super::sparse::copy(e, &mut f).map_err(stream_err(self.opts.max_bytes))?;
                let fd = OwnedFd::from(f.file);
                // Made just now (O_EXCL): already its creator's, in a directory that is
                // not setgid.
                let owned = !self.last_dir_setgid && self.new_file_owner == Some((m.uid, m.gid));
                self.fd_meta(&fd, &path, &m, true, owned)?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| malformed(&name, "symlink without a target"))?;
                // The target is stored as is: extraction never follows it, and in a container
                // it resolves against the container's root.
                rustix::fs::symlinkat(os(&target), &dir, os(base)).map_err(err)?;
                self.at_meta(&dir, base, &path, &m, false)?;
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| malformed(&name, "hard link without a target"))?;
                let tname = String::from_utf8_lossy(&target).into_owned();
                let tcomps = clean(&name, &target).map_err(|_| LayerError::Unsafe {
                    entry: name.clone(),
                    reason: format!("hard link target `{tname}` is outside the layer"),
                })?;
                let Some((tbase, tparent)) = tcomps.split_last() else {
                    return Err(malformed(&name, "hard link to the root"));
                };
                let tdir = self.root.open_dir(tparent, false, &name)?.ok_or_else(|| {
                    malformed(&name, format!("hard link target `{tname}` missing"))
                })?;
                match kind_at(&tdir, tbase).map_err(err)? {
                    None => {
                        return Err(malformed(
                            &name,
                            format!("hard link target `{tname}` missing"),
                        ))
                    }
                    Some(FileType::Directory) => {
                        return Err(malformed(
                            &name,
                            format!("hard link target `{tname}` is a directory"),
                        ))
                    }
                    Some(_) => {}
                }
                // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never resolved.
                rustix::fs::linkat(&tdir, os(tbase), &dir, os(base), AtFlags::empty())
                    .map_err(err)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = if kind == EntryType::Fifo {
                    (FileType::Fifo, 0)
                } else {
                    let major = e.header().device_major().ok().flatten().unwrap_or(0);
                    let minor = e.header().device_minor().ok().flatten().unwrap_or(0);
                    let ft = if kind == EntryType::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, rustix::fs::makedev(major, minor))
                };
                rustix::fs::mknodat(&dir, os(base), ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(err)?;
                self.at_meta(&dir, base, &path, &m, true)?;
            }
            other => {
                return Err(malformed(
                    &name,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        self.touched.insert(&path);
        Ok(())
    }

    /// The directory `comps` (made if missing), from [`Self::last_dir`] when it is that one
    /// or one of its parents.
    fn parent_dir(&mut self, comps: &[Vec<u8>], name: &str) -> Result<Rc<OwnedFd>, LayerError> {
        if let Some((at, fd)) = &self.last_dir {
            if at.as_slice() == comps {
                return Ok(fd.clone());
            }
        }
        let fd = match &self.last_dir {
            Some((at, fd)) if comps.starts_with(at) => {
                self.root.open_below(fd, comps, at.len(), true, name)?
            }
            _ => self.root.open_dir(comps, true, name)?,
        };
        let fd = Rc::new(fd.ok_or_else(|| malformed(name, "parent missing"))?);
        self.last_dir_setgid = rustix::fs::fstat(&*fd)
            .map(|st| st.st_mode & libc::S_ISGID != 0)
            .unwrap_or(true);
        self.last_dir = Some((comps.to_vec(), fd.clone()));
        Ok(fd)
    }

    fn whiteout(
        &mut self,
        name: &str,
        dir: &OwnedFd,
        parent_rel: &[u8],
        base: &[u8],
        hidden: &[u8],
    ) -> Result<(), LayerError> {
        let child = |n: &[u8]| {
            let mut p = parent_rel.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(n);
            p
        };
        if base == OPAQUE_MARKER.as_bytes() {
            if self.opts.overlay_whiteouts {
                // `trusted.` needs privilege in the initial user namespace; without it overlay
                // is mounted with `userxattr` and reads the `user.` spelling.
                match rustix::fs::fsetxattr(
                    dir,
                    "trusted.overlay.opaque",
                    b"y",
                    XattrFlags::empty(),
                ) {
                    Err(rustix::io::Errno::PERM) => {
                        rustix::fs::fsetxattr(dir, "user.overlay.opaque", b"y", XattrFlags::empty())
                    }
                    r => r,
                }
                .or_else(|e| match e {
                    // No xattr to be had: the marker stays in OCI spelling (see below).
                    rustix::io::Errno::PERM | rustix::io::Errno::NOTSUP => rustix::fs::openat(
                        dir,
                        os(base),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map(drop),
                    e => Err(e),
                })
                .map_err(|e| self.root.err(parent_rel, e))?;
                return Ok(());
            }
            for n in list(dir).map_err(|e| self.root.err(parent_rel, e))? {
                let p = child(&n);
                if !self.touched.contains(&p) {
                    remove_all_at(dir, &n).map_err(|e| self.root.err(&p, e))?;
                }
            }
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(LayerError::Unsafe {
                entry: name.to_string(),
                reason: "whiteout of an invalid name".into(),
            });
        }
        let p = child(hidden);
        if self.opts.overlay_whiteouts {
            remove_all_at(dir, hidden).map_err(|e| self.root.err(&p, e))?;
            match rustix::fs::mknodat(
                dir,
                os(hidden),
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            ) {
                // Where whiteout devices are refused (inside an overlay mount, where kiln
                // runs without overlay anyway), the OCI spelling stays: readers of extracted
                // layers ([`super::OverlayView`]) know both.
                Err(rustix::io::Errno::PERM) => {
                    rustix::fs::openat(
                        dir,
                        os(base),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| self.root.err(&p, e))?;
                }
                r => r.map_err(|e| self.root.err(&p, e))?,
            }
        } else if !self.touched.contains(&p) {
            remove_all_at(dir, hidden).map_err(|e| self.root.err(&p, e))?;
        }
        Ok(())
    }

    /// Owner (unless `owned` says the file has it already), then mode and xattrs, then times,
    /// on an open file; a directory (`file` false) gets its mode and times at the end of the
    /// extraction. chown clears setuid bits and file capabilities, so those come after it.
    fn fd_meta(
        &self,
        fd: &OwnedFd,
        path: &[u8],
        m: &Meta,
        file: bool,
        owned: bool,
    ) -> Result<(), LayerError> {
        let err = |e: rustix::io::Errno| self.root.err(path, e);
        if owned {
            // Nothing to change: see the caller.
        } else if self.opts.ignore_owners {
            super::owners::record(m.uid, m.gid, |k, v| {
                rustix::fs::fsetxattr(fd, k, v, XattrFlags::empty())
            })
            .map_err(err)?;
        } else {
            rustix::fs::fchown(fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))
                .map_err(|e| self.chown_err(path, m, e))?;
        }
        if file {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(m.mode)).map_err(err)?;
        }
        for (k, v) in &m.xattrs {
            rustix::fs::fsetxattr(fd, os(k), v, XattrFlags::empty()).map_err(err)?;
        }
        if file {
            rustix::fs::futimens(fd, &times(m.mtime)).map_err(err)?;
        }
        Ok(())
    }

    /// A failed chown; in a user namespace EINVAL means the owner is not one of its ids.
    fn chown_err(&self, path: &[u8], m: &Meta, e: rustix::io::Errno) -> LayerError {
        if e == rustix::io::Errno::INVAL && super::owners::in_user_namespace() {
            return LayerError::Unsupported {
                path: self.root.host(path),
                reason: format!(
                    "owner {}:{} is not among the ids of kiln's user namespace: give the user \
                     a larger range in /etc/subuid and /etc/subgid",
                    m.uid, m.gid
                ),
            };
        }
        self.root.err(path, e)
    }

    /// The same for a symlink or a node, by name in its parent, never following it (without
    /// an owner record: the kernel takes no `user.` xattr on them).
    fn at_meta(
        &self,
        dir: &OwnedFd,
        base: &[u8],
        path: &[u8],
        m: &Meta,
        chmod: bool,
    ) -> Result<(), LayerError> {
        let err = |e: rustix::io::Errno| self.root.err(path, e);
        if !self.opts.ignore_owners {
            rustix::fs::chownat(
                dir,
                os(base),
                Some(Uid::from_raw(m.uid)),
                Some(Gid::from_raw(m.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.chown_err(path, m, e))?;
        }
        if chmod {
            // We created this node a moment ago in a directory reached without symlinks, so
            // following is moot; mknod's mode was cut by the umask.
            rustix::fs::chmodat(dir, os(base), Mode::from_raw_mode(m.mode), AtFlags::empty())
                .map_err(err)?;
        }
        if !m.xattrs.is_empty() {
            // lsetxattr wants a path: the parent through its fd's /proc link (no lookup from
            // the root again), the last component not followed.
            let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            p.extend_from_slice(base);
            for (k, v) in &m.xattrs {
                rustix::fs::lsetxattr(os(&p), os(k), v, XattrFlags::empty()).map_err(err)?;
            }
        }
        rustix::fs::utimensat(dir, os(base), &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(err)?;
        Ok(())
    }
}
