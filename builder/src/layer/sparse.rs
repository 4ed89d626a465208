//! File content written with its holes kept: every whole block of zeros is skipped with a seek
//! instead of written, and the length set at the end, so a sparse file (a disk image, a
//! preallocated database file) stays sparse when COPY'd or extracted rather than growing to its
//! full size on disk. A tar stream carries no holes for a plain entry and GNU sparse entries
//! read back as zeros, so zeros are the only sign of them either way.

use std::io::{self, Read, Write};

/// The hole granularity: the page and usual filesystem block size.
const BLOCK: usize = 4096;

/// Where [`copy`] writes: a file that can also skip over bytes and be given its length.
pub(crate) trait SparseOut: Write {
    /// Moves `n` bytes past the current position without writing them.
    fn skip(&mut self, n: u64) -> io::Result<()>;
    /// Sets the file's length (a file that ends in a hole needs it).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl SparseOut for std::fs::File {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        io::Seek::seek(self, io::SeekFrom::Current(n as i64)).map(|_| ())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

/// Reads until `buf` is full or the input ends, so blocks stay aligned with the file.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copies `r` into the empty file `w`, leaving a hole for each whole block of zeros; returns
/// the bytes copied.
pub(crate) fn copy(r: &mut dyn Read, w: &mut dyn SparseOut) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * BLOCK];
    let mut total = 0u64;
    let mut ends_in_hole = false;
    loop {
        let n = fill(r, &mut buf)?;
        if n == 0 {
            break;
        }
        let mut start = 0;
        while start < n {
            // A run of data blocks is written at once, a run of zero blocks skipped at once.
            let zero = |i: usize| i + BLOCK <= n && buf[i..i + BLOCK].iter().all(|&b| b == 0);
            let hole = zero(start);
            let mut end = start;
            while end < n && zero(end) == hole {
                end = (end + BLOCK).min(n);
            }
            if hole {
                w.skip((end - start) as u64)?;
            } else {
                w.write_all(&buf[start..end])?;
            }
            ends_in_hole = hole;
            start = end;
        }
        total += n as u64;
        if n < buf.len() {
            break;
        }
    }
    if ends_in_hole {
        w.set_len(total)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn copied(content: &[u8]) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut f = std::fs::File::create(&p).unwrap();
        let n = copy(&mut &content[..], &mut f).unwrap();
        assert_eq!(n, content.len() as u64);
        drop(f);
        let m = std::fs::metadata(&p).unwrap();
        (std::fs::read(&p).unwrap(), m.blocks() * 512)
    }

    #[test]
    fn zero_blocks_become_holes_and_content_is_kept() {
        let mut content = vec![0u8; 8 << 20];
        content[..5].copy_from_slice(b"start");
        let l = content.len();
        content[l / 2] = 7;
        content[l - 3..].copy_from_slice(b"end");
        let (back, on_disk) = copied(&content);
        assert!(back == content);
        // Three data blocks (ext4 and tmpfs allocate 4 KiB at a time), not 8 MiB.
        assert!(on_disk <= 64 * 1024, "{on_disk} bytes allocated");
    }

    #[test]
    fn a_trailing_hole_keeps_the_length_and_odd_tails_are_written() {
        let mut content = vec![0u8; 3 * BLOCK + 100];
        content[0] = 1;
        let (back, _) = copied(&content);
        assert!(back == content);
        let content = vec![0u8; 5 * BLOCK];
        let (back, on_disk) = copied(&content);
        assert!(back == content);
        assert_eq!(on_disk, 0);
        let (back, _) = copied(b"short");
        assert_eq!(back, b"short");
    }
}
