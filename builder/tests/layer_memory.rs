//! Memory stays bounded: a 300 MiB file (96 MiB in debug builds) goes through the writer (and back through extraction)
//! without the process's peak RSS growing by more than 64 MiB. Alone in its test binary so no
//! other test's allocations count.

use kiln::blob::BlobStore;
use kiln::layer::{self, Compression, ExtractOptions, LayerOptions};
use std::fs;

fn status_kib(field: &str) -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

/// Resets the peak (Linux ≥ 4.0) and returns the current RSS in KiB.
fn reset_peak() -> u64 {
    fs::write("/proc/self/clear_refs", "5").unwrap();
    status_kib("VmRSS:")
}

const LIMIT_KIB: u64 = 64 * 1024;

/// 300 MiB in release builds. Unoptimised sha256 runs at ~30 MB/s, so debug builds use 96 MiB:
/// still more than the limit, so a layer (or a file) held in memory fails the test either way.
const BIG: u64 = if cfg!(debug_assertions) {
    96 << 20
} else {
    300 << 20
};

#[test]
fn a_big_file_streams_through_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("big.img")).unwrap();
    f.set_len(BIG).unwrap();
    fs::write(src.join("small"), b"small").unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();

    for c in [Compression::Gzip, Compression::Zstd] {
        let base = reset_peak();
        let info = layer::write_layer(
            &store,
            &src,
            &LayerOptions {
                compression: c,
                ..LayerOptions::default()
            },
        )
        .unwrap();
        let grew = status_kib("VmHWM:").saturating_sub(base);
        eprintln!("{c:?} write: peak RSS grew {} KiB", grew);
        assert!(grew < LIMIT_KIB, "{c:?}: peak RSS grew {grew} KiB writing");

        let dst = tmp.path().join(format!("dst-{c:?}"));
        let base = reset_peak();
        let x = layer::extract(
            store.read(&info.layer.digest).unwrap(),
            &dst,
            &ExtractOptions::default(),
        )
        .unwrap();
        let grew = status_kib("VmHWM:").saturating_sub(base);
        eprintln!("{c:?} extract: peak RSS grew {} KiB", grew);
        assert!(
            grew < LIMIT_KIB,
            "{c:?}: peak RSS grew {grew} KiB extracting"
        );
        assert_eq!(x.diff_id, info.layer.diff_id);
        assert_eq!(fs::metadata(dst.join("big.img")).unwrap().len(), BIG);
        fs::remove_dir_all(&dst).unwrap();
    }
}
