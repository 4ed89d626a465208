//! The table of contents a zstd:chunked layer carries (containers/storage's format, which
//! `skopeo copy --dest-compress-format zstd:chunked` writes): every entry's
//! metadata, at a position the layer's descriptor annotates. Fetched with one range request, it
//! gives the layer's index without downloading the layer.
//!
//! Only what extraction would record is taken, the way extraction records it (a test holds the
//! two equal over layers skopeo converted): the table's file chunks and access times are not.

use super::error::LayerError;
use super::extract::{entry_as_extracted, kept_xattr, Meta};
use super::index::{IndexBuilder, IndexEntry, IndexKind, LayerIndex};
use super::safe_fs::{clean, rel};
use super::WHITEOUT_PREFIX;
use crate::blob::Digest;
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

/// Where the table is: `offset:length:uncompressed length:type` in the blob.
pub const POSITION_ANNOTATION: &str = "io.containers.zstd-chunked.manifest-position";
/// The sha256 of the table's bytes as stored (compressed).
pub const CHECKSUM_ANNOTATION: &str = "io.containers.zstd-chunked.manifest-checksum";

/// Largest table taken, compressed or not: an index stops at 65,536 paths anyway, and a few
/// hundred bytes describe one.
const MAX_TOC: u64 = 64 << 20;

/// Where a layer's table of contents is, from its descriptor's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocPosition {
    /// First byte of the table in the blob.
    pub offset: u64,
    /// Its length in the blob (zstd-compressed).
    pub length: u64,
    /// Its length uncompressed.
    pub uncompressed: u64,
    /// sha256 of its `length` bytes.
    pub checksum: Digest,
}

impl TocPosition {
    /// The table's position when `annotations` name one kiln reads: type 1 (JSON entries),
    /// within [`MAX_TOC`].
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<TocPosition> {
        let pos = annotations.get(POSITION_ANNOTATION)?;
        let parts: Vec<&str> = pos.split(':').collect();
        let [offset, length, uncompressed, kind] = parts[..] else {
            return None;
        };
        let p = TocPosition {
            offset: offset.parse().ok()?,
            length: length.parse().ok()?,
            uncompressed: uncompressed.parse().ok()?,
            checksum: annotations.get(CHECKSUM_ANNOTATION)?.parse().ok()?,
        };
        (kind == "1" && p.length > 0 && p.length <= MAX_TOC && p.uncompressed <= MAX_TOC)
            .then_some(p)
    }
}

#[derive(Deserialize)]
struct Toc {
    version: u32,
    entries: Vec<TocEntry>,
}

#[derive(Deserialize)]
struct TocEntry {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    mode: u32,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    modtime: Option<String>,
    #[serde(default, rename = "linkName")]
    link_name: String,
    #[serde(default, rename = "devMajor")]
    dev_major: u32,
    #[serde(default, rename = "devMinor")]
    dev_minor: u32,
    /// Values in standard base64.
    #[serde(default)]
    xattrs: BTreeMap<String, String>,
}

fn bad(reason: impl Into<String>) -> LayerError {
    LayerError::Malformed {
        entry: "zstd:chunked table of contents".into(),
        reason: reason.into(),
    }
}

/// The index of the layer whose table of contents is `stored` (the bytes at `pos`); `None`
/// when the layer has more paths than an index holds.
///
/// # Errors
/// A checksum that does not match, a table that is not zstd or not the JSON format, an entry
/// extraction would refuse (a `..` path, an unknown kind).
pub fn index_from_toc(stored: &[u8], pos: &TocPosition) -> Result<Option<LayerIndex>, LayerError> {
    if Digest::of(stored) != pos.checksum {
        return Err(bad(format!("its sha256 is not {}", pos.checksum)));
    }
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(stored)
        .map_err(LayerError::Stream)?
        .take(pos.uncompressed + 1)
        .read_to_end(&mut json)
        .map_err(LayerError::Stream)?;
    if json.len() as u64 != pos.uncompressed {
        return Err(bad(format!(
            "it is {} bytes uncompressed, its annotation says {}",
            json.len(),
            pos.uncompressed
        )));
    }
    let toc: Toc = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    if toc.version != 1 {
        return Err(bad(format!("version {} (kiln reads 1)", toc.version)));
    }
    let mut index = IndexBuilder::default();
    for e in toc.entries {
        if let Some(entry) = entry_of(e)? {
            index.push(entry);
        }
    }
    Ok(index.finish())
}

/// One table entry as extraction would record its tar entry; `None` for file chunks and the
/// root.
fn entry_of(e: TocEntry) -> Result<Option<IndexEntry>, LayerError> {
    let kind = match e.kind.as_str() {
        "chunk" => return Ok(None),
        "reg" => IndexKind::File,
        "dir" => IndexKind::Dir,
        "symlink" => IndexKind::Symlink,
        "hardlink" => IndexKind::HardLink,
        "char" => IndexKind::Char,
        "block" => IndexKind::Block,
        "fifo" => IndexKind::Fifo,
        other => return Err(bad(format!("{}: unknown entry type {other:?}", e.name))),
    };
    let comps = clean(&e.name, e.name.as_bytes())?;
    let Some(base) = comps.last() else {
        return Ok(None);
    };
    let path = rel(&comps);
    if base.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return Ok(Some(IndexEntry::named(path, IndexKind::File)));
    }
    if kind == IndexKind::HardLink {
        // Refused here as extraction refuses it (a `..` target), not recorded empty.
        clean(&e.name, e.link_name.as_bytes())?;
    }
    let mtime = match &e.modtime {
        Some(t) => {
            crate::rfc3339::parse(t).ok_or_else(|| bad(format!("{}: modtime {t:?}", e.name)))?
        }
        None => 0,
    };
    let mut xattrs = Vec::new();
    for (name, value) in e.xattrs {
        if !kept_xattr(name.as_bytes()) {
            continue;
        }
        let value = base64::engine::general_purpose::STANDARD
            .decode(&value)
            .map_err(|_| bad(format!("{}: xattr {name} is not base64", e.name)))?;
        xattrs.push((name.into_bytes(), value));
    }
    let m = Meta {
        mode: e.mode & 0o7777,
        uid: e.uid,
        gid: e.gid,
        mtime,
        xattrs,
    };
    Ok(Some(entry_as_extracted(
        kind,
        &path,
        &m,
        e.size,
        e.link_name.as_bytes(),
        (e.dev_major, e.dev_minor),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_read_only_from_both_annotations_and_type_1() {
        let sum = Digest::of(b"toc").to_string();
        let at = |pos: &str| {
            let a = BTreeMap::from([
                (POSITION_ANNOTATION.to_string(), pos.to_string()),
                (CHECKSUM_ANNOTATION.to_string(), sum.clone()),
            ]);
            TocPosition::from_annotations(&a)
        };
        assert_eq!(
            at("1063167:4235:60020:1"),
            Some(TocPosition {
                offset: 1_063_167,
                length: 4235,
                uncompressed: 60_020,
                checksum: Digest::of(b"toc"),
            })
        );
        assert_eq!(at("1:2:3:2"), None, "another table format");
        assert_eq!(at("1:2:3"), None);
        assert_eq!(at(&format!("0:{}:1:1", MAX_TOC + 1)), None);
        assert_eq!(TocPosition::from_annotations(&BTreeMap::new()), None);
    }
}
