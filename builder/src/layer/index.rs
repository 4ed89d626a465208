//! A layer's metadata index: every entry's path, kind, mode, owner, size, mtime, device number,
//! link target and xattrs, with no content. It is collected from the tar headers as a layer is
//! extracted or written, and lets a step that only needs the parent's metadata (COPY, WORKDIR)
//! see the parent without downloading it (see [`IndexView`](super::IndexView)).
//!
//! Encoding: gzip'd JSON lines, a header line then one entry per line sorted by path bytes, so
//! the same layer always gives the same bytes whether it was extracted or written. Paths, link
//! targets and xattr names that are not UTF-8 (or start with `b64:`) are written `b64:<base64>`;
//! xattr values are always base64. Whiteout entries (`.wh.<name>`, `.wh..wh..opq`) are kept as
//! the layer names them, with their metadata zeroed: only their names mean anything.

use crate::blob::Digest;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read, Write};

/// The first line's `format`.
pub const INDEX_FORMAT: &str = "kiln-layer-index/1";

/// What kind of entry a layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// A regular file (whiteouts included).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to another path of the same layer.
    HardLink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

impl IndexKind {
    /// The kind of a tar entry type; `None` for headers that are not entries.
    pub(crate) fn of_tar(t: tar::EntryType) -> Option<IndexKind> {
        use tar::EntryType as T;
        Some(match t {
            T::Regular | T::Continuous | T::GNUSparse => IndexKind::File,
            T::Directory => IndexKind::Dir,
            T::Symlink => IndexKind::Symlink,
            T::Link => IndexKind::HardLink,
            T::Char => IndexKind::Char,
            T::Block => IndexKind::Block,
            T::Fifo => IndexKind::Fifo,
            _ => return None,
        })
    }
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Path inside the layer: no leading `/` or `./`, no trailing `/`.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: IndexKind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Bytes of a regular file.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Device number of a device node (`makedev(major, minor)`).
    pub rdev: u64,
    /// Symlink target as stored, or the layer path a hard link names.
    pub link: Vec<u8>,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl IndexEntry {
    /// An entry with only a path and a kind, everything else zero (a whiteout's metadata).
    pub fn named(path: Vec<u8>, kind: IndexKind) -> IndexEntry {
        IndexEntry {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            rdev: 0,
            link: Vec::new(),
            xattrs: Vec::new(),
        }
    }
}

/// The index of one layer: its entries sorted by path, each path once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerIndex {
    entries: Vec<IndexEntry>,
}

/// Paths an index holds at most. While a layer is written or extracted its index is in memory,
/// about 350 bytes an entry measured (and again when a COPY reads it): past this many a layer
/// gets no index, so memory stays bounded (about 23 MiB at that rate) whatever the layer, and
/// builds on it extract it as they would without indexes.
pub const MAX_INDEX_ENTRIES: usize = 65_536;

/// Collects entries in layer order, as extraction applies them: a later entry for the same
/// path replaces the earlier one, and a non-directory replaces what was below it.
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    /// By path; each entry's own `path` is left empty here (the key holds it once).
    entries: BTreeMap<Vec<u8>, IndexEntry>,
    /// More than [`MAX_INDEX_ENTRIES`] paths came: there is no index.
    overflowed: bool,
}

fn is_whiteout_name(path: &[u8]) -> bool {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    base.starts_with(super::WHITEOUT_PREFIX.as_bytes())
}

impl IndexBuilder {
    /// Adds the next entry of the layer.
    pub(crate) fn push(&mut self, mut e: IndexEntry) {
        if self.overflowed {
            return;
        }
        if e.path.is_empty() {
            // The root: its metadata is the target's, never the layer's.
            return;
        }
        if is_whiteout_name(&e.path) || e.kind == IndexKind::HardLink {
            // Only a whiteout's name and a hard link's target mean anything; zeroing the rest
            // keeps the index of a layer the same whether it was written or extracted.
            let link = std::mem::take(&mut e.link);
            e = IndexEntry {
                link,
                ..IndexEntry::named(e.path, e.kind)
            };
        }
        if e.kind != IndexKind::Symlink && e.kind != IndexKind::HardLink {
            e.link.clear();
        }
        if e.kind != IndexKind::File {
            e.size = 0;
        }
        e.xattrs.sort();
        if e.kind != IndexKind::Dir {
            let mut below = e.path.clone();
            below.push(b'/');
            let gone: Vec<Vec<u8>> = self
                .entries
                .range(below.clone()..)
                .take_while(|(p, _)| p.starts_with(&below))
                .map(|(p, _)| p.clone())
                .collect();
            for p in gone {
                self.entries.remove(&p);
            }
        }
        let path = std::mem::take(&mut e.path);
        if self.entries.len() >= MAX_INDEX_ENTRIES && !self.entries.contains_key(&path) {
            self.entries = BTreeMap::new();
            self.overflowed = true;
            return;
        }
        self.entries.insert(path, e);
    }

    /// The index, unless the layer had too many paths for one.
    pub(crate) fn finish(self) -> Option<LayerIndex> {
        if self.overflowed {
            return None;
        }
        let entries = self
            .entries
            .into_iter()
            .map(|(path, e)| IndexEntry { path, ..e })
            .collect();
        Some(LayerIndex { entries })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    diff_id: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
struct Line {
    path: String,
    kind: IndexKind,
    mode: u32,
    uid: u32,
    gid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    size: u64,
    mtime: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    rdev: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    link: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<(String, String)>,
}

const B64_PREFIX: &str = "b64:";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn enc_name(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.starts_with(B64_PREFIX) => s.to_string(),
        _ => format!("{B64_PREFIX}{}", b64().encode(b)),
    }
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("layer index: {what}"))
}

fn dec_name(s: &str) -> io::Result<Vec<u8>> {
    match s.strip_prefix(B64_PREFIX) {
        Some(b) => b64().decode(b).map_err(bad),
        None => Ok(s.as_bytes().to_vec()),
    }
}

impl LayerIndex {
    /// Entries sorted by path.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The entry at `path` (layer form: `etc/passwd`).
    pub fn get(&self, path: &[u8]) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entries below the directory `dir` (`b""` for the root), deepest included.
    fn below<'a>(&'a self, dir: &[u8]) -> impl Iterator<Item = &'a IndexEntry> + 'a {
        let mut prefix = dir.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let start = self.entries.partition_point(|e| e.path < prefix);
        self.entries[start..]
            .iter()
            .take_while(move |e| e.path.starts_with(&prefix))
    }

    /// Whether the layer holds anything below `dir`: extraction makes such a directory even
    /// when the layer has no entry for it.
    pub fn has_below(&self, dir: &[u8]) -> bool {
        self.below(dir).next().is_some()
    }

    /// The names directly in `dir` (`b""` for the root), sorted, whiteout names included.
    pub fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
        let mut out: Vec<Vec<u8>> = Vec::new();
        for e in self.below(dir) {
            let rest = &e.path[skip..];
            let name = rest.split(|&b| b == b'/').next().unwrap_or(rest);
            if out.last().map(Vec::as_slice) != Some(name) {
                out.push(name.to_vec());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Writes the index of the layer `diff_id` (gzip'd JSON lines).
    pub fn encode<W: Write>(&self, diff_id: &Digest, out: W) -> io::Result<W> {
        let mut gz = flate2::GzBuilder::new().write(out, flate2::Compression::new(6));
        let header = Header {
            format: INDEX_FORMAT.into(),
            diff_id: diff_id.to_string(),
        };
        serde_json::to_writer(&mut gz, &header)?;
        gz.write_all(b"\n")?;
        for e in &self.entries {
            let line = Line {
                path: enc_name(&e.path),
                kind: e.kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                mtime: e.mtime,
                rdev: e.rdev,
                link: if e.link.is_empty() {
                    String::new()
                } else {
                    enc_name(&e.link)
                },
                xattrs: e
                    .xattrs
                    .iter()
                    .map(|(n, v)| (enc_name(n), b64().encode(v)))
                    .collect(),
            };
            serde_json::to_writer(&mut gz, &line)?;
            gz.write_all(b"\n")?;
        }
        gz.finish()
    }

    /// The index as bytes (see [`LayerIndex::encode`]).
    pub fn to_bytes(&self, diff_id: &Digest) -> Vec<u8> {
        self.encode(diff_id, Vec::new())
            .expect("writing to memory cannot fail")
    }

    /// Reads an index, refusing one of another layer than `diff_id` or out of order.
    pub fn decode<R: Read>(input: R, diff_id: &Digest) -> io::Result<LayerIndex> {
        let mut lines = io::BufReader::new(flate2::read::GzDecoder::new(input)).lines();
        let first = lines.next().ok_or_else(|| bad("empty"))??;
        let header: Header = serde_json::from_str(&first).map_err(bad)?;
        if header.format != INDEX_FORMAT {
            return Err(bad(format!("unknown format {:?}", header.format)));
        }
        if header.diff_id != diff_id.to_string() {
            return Err(bad(format!(
                "is the index of {}, not of {diff_id}",
                header.diff_id
            )));
        }
        let mut entries: Vec<IndexEntry> = Vec::new();
        for line in lines {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let l: Line = serde_json::from_str(&line).map_err(bad)?;
            let e = IndexEntry {
                path: dec_name(&l.path)?,
                kind: l.kind,
                mode: l.mode,
                uid: l.uid,
                gid: l.gid,
                size: l.size,
                mtime: l.mtime,
                rdev: l.rdev,
                link: dec_name(&l.link)?,
                xattrs: l
                    .xattrs
                    .iter()
                    .map(|(n, v)| Ok((dec_name(n)?, b64().decode(v).map_err(bad)?)))
                    .collect::<io::Result<_>>()?,
            };
            if entries.last().is_some_and(|p| p.path >= e.path) {
                return Err(bad("entries out of order"));
            }
            entries.push(e);
        }
        Ok(LayerIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: IndexKind) -> IndexEntry {
        IndexEntry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            uid: 1,
            gid: 2,
            size: 3,
            mtime: 4,
            rdev: 0,
            link: Vec::new(),
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn later_entries_replace_and_files_drop_what_was_below() {
        let mut b = IndexBuilder::default();
        b.push(entry("a", IndexKind::Dir));
        b.push(entry("a/x", IndexKind::File));
        b.push(entry("a-b", IndexKind::File));
        b.push(entry("a", IndexKind::File));
        let mut wh = entry("c/.wh.d", IndexKind::File);
        wh.xattrs = vec![(b"user.x".to_vec(), b"1".to_vec())];
        b.push(wh);
        let idx = b.finish().unwrap();
        let paths: Vec<&[u8]> = idx.entries().iter().map(|e| &e.path[..]).collect();
        assert_eq!(paths, [&b"a"[..], b"a-b", b"c/.wh.d"]);
        assert_eq!(idx.get(b"a").unwrap().kind, IndexKind::File);
        let wh = idx.get(b"c/.wh.d").unwrap();
        assert_eq!((wh.mode, wh.mtime, wh.xattrs.len()), (0, 0, 0));
        assert_eq!(
            idx.children(b""),
            [b"a".to_vec(), b"a-b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(idx.children(b"c"), [b".wh.d".to_vec()]);
        assert!(idx.has_below(b"c") && !idx.has_below(b"a"));
    }

    #[test]
    fn round_trips_odd_names_and_refuses_another_layer() {
        let mut b = IndexBuilder::default();
        let mut l = entry("bin/sh", IndexKind::Symlink);
        l.link = b"/bin/b\xffsh".to_vec();
        b.push(l);
        let mut f = entry("", IndexKind::File);
        f.path = b"b64:odd\xfe".to_vec();
        f.xattrs = vec![(b"security.capability".to_vec(), vec![0, 1, 2, 255])];
        b.push(f);
        let idx = b.finish().unwrap();
        let d = Digest::of(b"layer");
        let bytes = idx.to_bytes(&d);
        assert_eq!(bytes, idx.to_bytes(&d), "deterministic");
        assert_eq!(LayerIndex::decode(&bytes[..], &d).unwrap(), idx);
        let e = LayerIndex::decode(&bytes[..], &Digest::of(b"other")).unwrap_err();
        assert!(e.to_string().contains("not of"), "{e}");
    }

    #[test]
    fn a_layer_of_too_many_paths_has_no_index_but_replacements_do_not_count() {
        let mut b = IndexBuilder::default();
        b.push(entry("d", IndexKind::Dir));
        for i in 0..MAX_INDEX_ENTRIES - 1 {
            b.push(entry(&format!("d/f{i}"), IndexKind::File));
        }
        // The same paths again replace their entries: still within the limit.
        b.push(entry("d/f0", IndexKind::File));
        b.push(entry("d/f1", IndexKind::Symlink));
        b.push(entry("d", IndexKind::Dir));
        let idx = b.finish().expect("at the limit, an index");
        assert_eq!(idx.entries().len(), MAX_INDEX_ENTRIES);
        assert_eq!(idx.get(b"d/f1").unwrap().kind, IndexKind::Symlink);
        assert_eq!(idx.get(b"d/f2").unwrap().path, b"d/f2");

        let mut over = IndexBuilder::default();
        for i in 0..=MAX_INDEX_ENTRIES {
            over.push(entry(&format!("f{i}"), IndexKind::File));
        }
        assert!(over.entries.is_empty(), "the entries are dropped at once");
        over.push(entry("late", IndexKind::File));
        assert_eq!(over.finish(), None);
    }
}
