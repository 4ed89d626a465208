//! A deterministic tar writer: ustar headers, with PAX extended headers only where ustar cannot
//! hold a value (long names and links, big ids or sizes, xattrs). Nothing host-specific goes in:
//! no user or group names, no atime or ctime, whole-second mtimes.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// The kinds of entry a layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::Regular => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// One entry's header, as the layer records it.
#[derive(Debug, Clone)]
pub(crate) struct EntryHeader {
    /// Path inside the layer, no leading `/` or `./`, no trailing `/`.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (07777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Bytes of data that follow (regular files only).
    pub size: u64,
    /// Symlink or hard-link target.
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes, written as `SCHILY.xattr.<name>` PAX records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Octal fits in a field of `width` bytes (digits plus a terminating NUL).
fn fits_octal(v: u64, width: usize) -> bool {
    let digits = width - 1;
    digits >= 22 || v < (1u64 << (3 * digits))
}

fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    let s = s.as_bytes();
    // Callers only pass values that fit (others go to PAX, and the field holds 0).
    let start = s.len().saturating_sub(digits);
    field[..digits].copy_from_slice(&s[start..]);
    field[digits] = 0;
}

fn put_bytes(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

/// Appends one PAX record: its length prefix counts the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Writes tar entries to `W`; [`TarWriter::finish`] writes the end-of-archive marker.
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Writes the header (and a PAX header before it when needed). Data, if any, follows with
    /// [`TarWriter::data`].
    pub(crate) fn header(&mut self, h: &EntryHeader) -> io::Result<()> {
        let mut name = h.path.clone();
        if h.kind == Kind::Dir {
            name.push(b'/');
        }
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax.push((b"path".to_vec(), name.clone()));
        }
        if h.link.len() > 100 {
            pax.push((b"linkpath".to_vec(), h.link.clone()));
        }
        if !fits_octal(h.size, 12) {
            pax.push((b"size".to_vec(), h.size.to_string().into_bytes()));
        }
        if !fits_octal(h.uid, 8) {
            pax.push((b"uid".to_vec(), h.uid.to_string().into_bytes()));
        }
        if !fits_octal(h.gid, 8) {
            pax.push((b"gid".to_vec(), h.gid.to_string().into_bytes()));
        }
        let mtime_fits = h.mtime >= 0 && fits_octal(h.mtime as u64, 12);
        if !mtime_fits {
            pax.push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
        }
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            pax.sort();
            let mut body = Vec::new();
            for (k, v) in &pax {
                pax_record(&mut body, k, v);
            }
            let base = name
                .rsplit(|&b| b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"");
            let mut pax_name = b"PaxHeaders.0/".to_vec();
            pax_name.extend_from_slice(&base[..base.len().min(100 - pax_name.len())]);
            let block = ustar_block(
                &pax_name,
                b'x',
                0o644,
                0,
                0,
                0,
                body.len() as u64,
                b"",
                0,
                0,
            );
            self.out.write_all(&block)?;
            self.out.write_all(&body)?;
            self.pad(body.len() as u64)?;
        }
        let size = if h.kind == Kind::Regular { h.size } else { 0 };
        let block = ustar_block(
            &name,
            h.kind.flag(),
            h.mode & 0o7777,
            h.uid,
            h.gid,
            if mtime_fits { h.mtime as u64 } else { 0 },
            size,
            &h.link,
            h.dev_major,
            h.dev_minor,
        );
        self.out.write_all(&block)
    }

    /// Copies exactly `size` bytes of `data` (the size given in the header) and pads the entry.
    /// Returns how many bytes `data` held if it ended early (the caller decides the error).
    pub(crate) fn data(
        &mut self,
        data: &mut dyn Read,
        size: u64,
        buf: &mut [u8],
    ) -> io::Result<u64> {
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("ended after {} of {size} bytes", size - left),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        self.pad(size)?;
        Ok(size)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Writes the two zero blocks that end an archive and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

#[allow(clippy::too_many_arguments)]
fn ustar_block(
    name: &[u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: &[u8],
    major: u32,
    minor: u32,
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put_bytes(&mut b[0..100], name);
    put_octal(&mut b[100..108], u64::from(mode));
    put_octal(&mut b[108..116], if fits_octal(uid, 8) { uid } else { 0 });
    put_octal(&mut b[116..124], if fits_octal(gid, 8) { gid } else { 0 });
    put_octal(
        &mut b[124..136],
        if fits_octal(size, 12) { size } else { 0 },
    );
    put_octal(&mut b[136..148], mtime);
    b[156] = flag;
    put_bytes(&mut b[157..257], link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname and gname stay empty: ids are numeric so the layer is the same on every host.
    put_octal(&mut b[329..337], u64::from(major).min(0o7777777));
    put_octal(&mut b[337..345], u64::from(minor).min(0o7777777));
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    put_octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: Kind) -> EntryHeader {
        EntryHeader {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o4755,
            uid: 1000,
            gid: 1001,
            mtime: 1_700_000_000,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", &[b'a'; 93]);
        // 93 value bytes put the total right at the 2→3 digit boundary of the length prefix.
        let s = String::from_utf8(out.clone()).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), out.len());
    }

    #[test]
    fn the_tar_crate_reads_back_long_names_links_xattrs() {
        let long = format!("{}/{}", "d".repeat(80), "f".repeat(90));
        let mut w = TarWriter::new(Vec::new());
        let mut f = header(&long, Kind::Regular);
        f.size = 5;
        f.xattrs = vec![(b"security.capability".to_vec(), vec![1, 0, 0, 2, 0x20])];
        w.header(&f).unwrap();
        w.data(&mut &b"hello"[..], 5, &mut [0; 16]).unwrap();
        let mut l = header("link", Kind::Symlink);
        l.link = format!("/{}", "t".repeat(150)).into_bytes();
        l.mtime = -5;
        l.uid = 1 << 40;
        w.header(&l).unwrap();
        let bytes = w.finish().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut es = ar.entries().unwrap();
        let mut e = es.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str().unwrap(), long);
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        assert_eq!(e.header().uid().unwrap(), 1000);
        let x: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap().key().unwrap().to_string())
            .collect();
        // Records are sorted by key bytes, so the header is the same whatever the walk order.
        assert_eq!(x, ["SCHILY.xattr.security.capability", "path"]);
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let mut e = es.next().unwrap().unwrap();
        assert_eq!(e.link_name().unwrap().unwrap().to_str().unwrap().len(), 151);
        let keys: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap().value().unwrap().to_string())
            .collect();
        assert!(keys.contains(&"-5".to_string()), "{keys:?}");
        assert!(keys.contains(&(1u64 << 40).to_string()), "{keys:?}");
        assert!(es.next().is_none());
    }
}
