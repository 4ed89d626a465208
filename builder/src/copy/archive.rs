//! ADD of a local tar archive: detected by content (gzip, bzip2, xz, zstd or plain tar, the
//! first header must parse), unpacked into the destination. As in BuildKit, this is not a
//! layer: `.wh.` names are ordinary files; owners come from the archive unless `--chown`
//! is given; `--chmod` does not apply. Paths resolve in the merged tree like any other write
//! (symlinks followed inside the image); an entry climbing above the destination with `..`
//! is refused rather than clamped.

use super::target::{Meta, Target};
use super::CopyError;
use crate::fsview::{FsView, Kind};
use crate::path_io::IoAt;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use tar::EntryType;

/// A reader that undoes whatever compression the stream starts with.
fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(128 * 1024, r);
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Whether the regular file at `path` is a (possibly compressed) tar archive.
pub(crate) fn is_archive(view: &dyn FsView, path: &Path) -> Result<bool, CopyError> {
    let f = view.open(path).at(path)?;
    let Ok(r) = decompress(f) else {
        return Ok(false);
    };
    let mut ar = tar::Archive::new(r);
    let first = match ar.entries() {
        Ok(mut entries) => matches!(entries.next(), Some(Ok(_))),
        Err(_) => false,
    };
    Ok(first)
}

/// Unpacks `archive` into `dest` (already resolved in the merged tree).
pub(crate) fn unpack<R: Read>(
    t: &mut Target<'_>,
    archive: R,
    dest: &Path,
    chown: Option<(u32, u32)>,
    arg: &str,
) -> Result<(), CopyError> {
    let owner = chown.unwrap_or((0, 0));
    t.mkdir_all(dest, owner)?;
    let dest = t.resolve(dest, true)?;
    let bad = |entry: &str, reason: String| CopyError::Archive {
        source_arg: arg.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let stream = |e: io::Error| bad("", e.to_string());
    let mut ar = tar::Archive::new(decompress(archive).map_err(stream)?);
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    for entry in ar.entries().map_err(stream)? {
        let mut e = entry.map_err(stream)?;
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let comps = clean(&raw).ok_or_else(|| bad(&name, "path leaves the destination".into()))?;
        let Some((base, parents)) = comps.split_last() else {
            continue;
        };
        let mut parent = dest.clone();
        parent.extend(parents.iter().map(|c| OsString::from_vec(c.clone())));
        t.mkdir_all(&parent, owner)?;
        let parent = t.resolve(&parent, true)?;
        let p = parent.join(OsString::from_vec(base.clone()));
        let meta = meta_of(&mut e, chown).map_err(|r| bad(&name, r))?;
        match kind {
            EntryType::Directory => {
                t.dir_for_copy(&p)?;
                dirs.push((p, meta));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                t.clear_for_file(&p)?;
                t.write_file(&p, &mut e)?;
                t.apply(&p, &meta)?;
            }
            EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| bad(&name, "symlink without a target".into()))?;
                t.clear_for_file(&p)?;
                t.symlink(Path::new(&OsString::from_vec(target.into_owned())), &p)?;
                t.apply(&p, &Meta { mode: None, ..meta })?;
            }
            EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| bad(&name, "hard link without a target".into()))?;
                let tcomps = clean(&target)
                    .ok_or_else(|| bad(&name, "hard link target leaves the destination".into()))?;
                let mut tp = dest.clone();
                tp.extend(tcomps.iter().map(|c| OsString::from_vec(c.clone())));
                let tp = t.resolve(&tp, false)?;
                match t.lstat(&tp)? {
                    Some((te, true)) if te.kind != Kind::Dir => {}
                    _ => {
                        return Err(bad(
                            &name,
                            format!("hard link target {} is not in the archive", tp.display()),
                        ))
                    }
                }
                t.clear_for_file(&p)?;
                t.hard_link(&tp, &p)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let k = match kind {
                    EntryType::Char => Kind::CharDevice,
                    EntryType::Block => Kind::BlockDevice,
                    _ => Kind::Fifo,
                };
                let major = e.header().device_major().ok().flatten().unwrap_or(0);
                let minor = e.header().device_minor().ok().flatten().unwrap_or(0);
                t.clear_for_file(&p)?;
                t.mknod(&p, k, rustix::fs::makedev(major, minor))?;
                t.apply(&p, &meta)?;
            }
            other => {
                return Err(bad(
                    &name,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        }
    }
    // Directories last, deepest first: filling them changed their mtimes.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, m) in dirs {
        t.apply(&p, &m)?;
    }
    Ok(())
}

/// Components of an entry name (`/` and `.` dropped, `..` allowed while it stays inside).
fn clean(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn meta_of<R: Read>(e: &mut tar::Entry<'_, R>, chown: Option<(u32, u32)>) -> Result<Meta, String> {
    let h = e.header();
    let mut uid = h.uid().map_err(|e| e.to_string())? as u32;
    let mut gid = h.gid().map_err(|e| e.to_string())? as u32;
    let mode = h.mode().map_err(|e| e.to_string())? & 0o7777;
    let mut mtime = h.mtime().map_err(|e| e.to_string())? as i64;
    let mut xattrs = Vec::new();
    if let Some(pax) = e.pax_extensions().map_err(|e| e.to_string())? {
        for rec in pax {
            let rec = rec.map_err(|e| e.to_string())?;
            let num = || {
                std::str::from_utf8(rec.value_bytes())
                    .ok()
                    .and_then(|s| s.split('.').next())
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| "bad numeric pax record".to_owned())
            };
            match rec.key_bytes() {
                b"uid" => uid = num()? as u32,
                b"gid" => gid = num()? as u32,
                b"mtime" => mtime = num()?,
                k => {
                    if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.push((OsString::from_vec(x.to_vec()), rec.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    if let Some((u, g)) = chown {
        uid = u;
        gid = g;
    }
    Ok(Meta {
        uid,
        gid,
        mode: Some(mode),
        mtime,
        xattrs,
    })
}
