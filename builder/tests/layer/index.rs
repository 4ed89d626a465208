//! Layer indexes: for stacks of layers with whiteouts, opaque directories, symlinks (one in a
//! path's ancestors), hard links, xattrs, setuid bits and a directory replaced by a file, the
//! merged view of the layers' indexes answers every path exactly as the overlay view of the
//! extracted layers does; and the index a written layer records is the one its extraction
//! records.

use kiln_testkit::need_root;

use kiln::blob::{BlobStore, Digest};
use kiln::cache_dir::CacheDir;
use kiln::fsview::{FsView, Kind};
use kiln::layer::{self, LayerOptions, MEDIA_TYPE_TAR};
use kiln::layer::{IndexView, OverlayView};
use kiln::snapshot::ExtractedLayers;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A version 2 file capability granting cap_net_raw (the kernel refuses malformed ones).
const CAP_NET_RAW: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// One tar entry of a test layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a str),
    Owned(&'a str, u32, u64, u64),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Xattr(&'a str, &'a str, &'a [u8]),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
}

/// A tar layer of `entries` (in that order), mtimes varying by entry.
fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (n, e) in entries.iter().enumerate() {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_600_000_000 + n as u64 * 61);
        h.set_uid(0);
        h.set_gid(0);
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (p, b"")
            }
            E::File(p, mode, body) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (p, body.as_bytes())
            }
            E::Owned(p, mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                (p, b"owned")
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                (p, b"")
            }
            E::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_link_name(target).unwrap();
                (p, b"")
            }
            E::Xattr(p, name, value) => {
                let key = format!("SCHILY.xattr.{name}");
                b.append_pax_extensions([(key.as_str(), *value)]).unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                (p, b"with xattr")
            }
            E::Char(p, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                (p, b"")
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o600);
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// The stacks compared, bottom layer first.
fn stacks() -> Vec<Vec<Vec<u8>>> {
    let base = tar_of(&[
        E::Dir("etc", 0o755),
        E::File("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
        E::File("etc/gone", 0o644, "x"),
        E::Dir("usr", 0o755),
        E::Dir("usr/bin", 0o755),
        E::File("usr/bin/su", 0o4755, "setuid"),
        E::Hard("usr/bin/su2", "usr/bin/su"),
        E::Xattr("usr/bin/ping", "security.capability", CAP_NET_RAW),
        E::Xattr("usr/bin/tagged", "user.kind", b"tagged"),
        E::Dir("usr/local", 0o2775),
        E::Dir("usr/local/share", 0o755),
        E::File("usr/local/share/a", 0o600, "a"),
        E::Link("app", "usr/local"),
        E::Link("abs", "/usr/local/share"),
        E::Dir("data", 0o700),
        E::File("data/old", 0o644, "old"),
        E::Dir("data/sub", 0o755),
        E::File("data/sub/deep", 0o644, "deep"),
        E::Dir("turn", 0o755),
        E::File("turn/inside", 0o644, "in"),
        E::Owned("home", 0o640, 1000, 1000),
        E::Char("dev-null", 1, 3),
        E::Fifo("pipe"),
    ]);
    let middle = tar_of(&[
        E::Dir("etc", 0o750),
        E::File("etc/.wh.gone", 0o644, ""),
        E::File("etc/hosts", 0o644, "127.0.0.1 localhost\n"),
        E::Dir("data", 0o755),
        E::File("data/.wh..wh..opq", 0o644, ""),
        E::File("data/new", 0o644, "new"),
        E::File("turn", 0o644, "now a file"),
        E::Dir("usr", 0o755),
        E::Dir("usr/local", 0o775),
        E::Dir("usr/local/share", 0o700),
        E::File("usr/local/share/b", 0o644, "b"),
        E::Dir("home", 0o755),
        E::File("home/user", 0o644, "replaced a file by a directory"),
    ]);
    let top = tar_of(&[
        E::Dir("usr", 0o755),
        E::Dir("usr/bin", 0o755),
        E::File("usr/bin/.wh.tagged", 0o644, ""),
        E::Link("usr/bin/sh", "busybox"),
        E::File(".wh.pipe", 0o644, ""),
        E::Dir("turn", 0o711),
        E::File("turn/again", 0o644, "a directory again"),
        E::Dir("data", 0o755),
        E::Dir("data/sub", 0o700),
        E::File("data/sub/fresh", 0o644, "fresh"),
    ]);
    vec![
        vec![base.clone()],
        vec![base.clone(), middle.clone()],
        vec![base, middle, top],
    ]
}

/// Everything both views can be asked about: every path either view lists, every path any
/// layer names (also those hidden), and some that exist nowhere.
fn paths(views: &[&dyn FsView], layers: &[Arc<layer::LayerIndex>]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for l in layers {
        for e in l.entries() {
            let p = Path::new("/").join(String::from_utf8_lossy(&e.path).as_ref());
            out.insert(p.join("missing"));
            out.insert(p);
        }
    }
    for v in views {
        let mut todo = vec![PathBuf::from("/")];
        while let Some(d) = todo.pop() {
            out.insert(d.clone());
            if let Ok(names) = v.read_dir(&d) {
                for n in names {
                    todo.push(d.join(n));
                }
            }
        }
    }
    out.insert("/nothing/at/all".into());
    out
}

/// The entry fields both views can know: a directory's size and the inode numbers are the
/// host's own.
fn comparable(e: Option<kiln::fsview::Entry>) -> Option<(Kind, u32, u32, u32, u64, i64, u64)> {
    e.map(|e| {
        let size = if e.kind == Kind::Dir { 0 } else { e.size };
        (e.kind, e.mode, e.uid, e.gid, size, e.mtime, e.rdev)
    })
}

/// The index read off a layer's headers (what `kiln warm` records) is the one its extraction
/// records, for every layer of the stacks (whiteouts, opaque markers, hard links, xattrs,
/// setuid files, devices), gzip'd or not.
#[test]
fn a_layers_index_read_without_extracting_is_its_extractions() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let cache = ExtractedLayers::open(&CacheDir::open(t.path()).unwrap()).unwrap();
    let mut n = 0;
    for tar in stacks().into_iter().flatten() {
        let diff_id = Digest::of(&tar);
        cache.extract(&diff_id, MEDIA_TYPE_TAR, &tar[..]).unwrap();
        let extracted = cache.index(&diff_id).expect("extraction records the index");
        let (read_id, read) = layer::read_index(&tar[..], None).unwrap();
        assert_eq!(read_id, diff_id);
        assert_eq!(read.as_ref(), Some(&extracted));
        let (_, gz) =
            layer::compress_stream(&tar[..], Vec::new(), layer::Compression::Gzip, None, 2)
                .unwrap();
        assert_eq!(layer::read_index(&gz[..], None).unwrap(), (diff_id, read));
        n += extracted.entries().len();
    }
    assert!(n > 40, "{n}");
}

/// `tar` as a one-layer OCI layout at `dir`, tagged `x`.
fn oci_layout(dir: &Path, tar: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        serde_json::json!({"digest": d.to_string(), "size": bytes.len()})
    };
    let layer = put(tar);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }))
    .unwrap();
    let config = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config["digest"], "size": config["size"]},
        "layers": [{"mediaType": MEDIA_TYPE_TAR, "digest": layer["digest"], "size": layer["size"]}],
    }))
    .unwrap();
    let manifest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest["digest"], "size": manifest["size"],
        "annotations": {"org.opencontainers.image.ref.name": "x"},
    }]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// The one layer of the OCI layout at `dir`: its descriptor and its bytes.
fn layout_layer(dir: &Path) -> (serde_json::Value, Vec<u8>) {
    let blob = |d: &serde_json::Value| {
        let d: Digest = d.as_str().unwrap().parse().unwrap();
        std::fs::read(dir.join("blobs/sha256").join(d.hex())).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
    let layer = manifest["layers"][0].clone();
    let bytes = blob(&layer["digest"]);
    (layer, bytes)
}

/// The table of contents skopeo writes into a zstd:chunked layer gives the index extraction
/// records for the same layer, for every layer of the stacks (whiteouts, an opaque marker,
/// hard links, xattrs, setuid files, a device, a fifo, owners), read from the bytes the
/// annotations point at.
#[test]
fn a_zstd_chunked_layers_table_of_contents_gives_its_extractions_index() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let cache = ExtractedLayers::open(&CacheDir::open(t.path().join("cache")).unwrap()).unwrap();
    let mut n = 0;
    for (i, tar) in stacks().pop().unwrap().into_iter().enumerate() {
        let diff_id = Digest::of(&tar);
        cache.extract(&diff_id, MEDIA_TYPE_TAR, &tar[..]).unwrap();
        let extracted = cache.index(&diff_id).expect("extraction records the index");
        let (src, dst) = (
            t.path().join(format!("src{i}")),
            t.path().join(format!("dst{i}")),
        );
        oci_layout(&src, &tar);
        let o = std::process::Command::new("skopeo")
            .args(["copy", "-q", "--dest-compress-format", "zstd:chunked"])
            .arg(format!("oci:{}:x", src.display()))
            .arg(format!("oci:{}:x", dst.display()))
            .output()
            .expect("skopeo (apt-get install skopeo)");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (desc, blob) = layout_layer(&dst);
        assert_eq!(desc["mediaType"], layer::MEDIA_TYPE_TAR_ZSTD, "{desc}");
        let annotations = serde_json::from_value(desc["annotations"].clone()).unwrap();
        let pos = layer::toc::TocPosition::from_annotations(&annotations).expect("a table");
        let at = usize::try_from(pos.offset).unwrap();
        let stored = &blob[at..at + usize::try_from(pos.length).unwrap()];
        let from_toc = layer::toc::index_from_toc(stored, &pos).unwrap();
        assert_eq!(from_toc.as_ref(), Some(&extracted), "layer {i}");
        // A table whose bytes are not the annotated ones is refused.
        let mut damaged = stored.to_vec();
        damaged[0] ^= 1;
        assert!(layer::toc::index_from_toc(&damaged, &pos).is_err());
        n += extracted.entries().len();
    }
    assert!(n > 30, "{n}");
}

#[test]
fn index_view_answers_as_the_overlay_view_of_the_extracted_layers() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let cache = ExtractedLayers::open(&CacheDir::open(t.path()).unwrap()).unwrap();
    for stack in stacks() {
        let mut dirs = Vec::new();
        let mut indexes = Vec::new();
        for tar in stack.iter().rev() {
            let diff_id = Digest::of(tar);
            dirs.push(cache.extract(&diff_id, MEDIA_TYPE_TAR, &tar[..]).unwrap());
            indexes.push(Arc::new(
                cache.index(&diff_id).expect("extraction records the index"),
            ));
        }
        let overlay = OverlayView::new(dirs);
        let index = IndexView::new(indexes.clone());
        let all = paths(&[&overlay, &index], &indexes);
        assert!(all.len() > 40, "{}", all.len());
        for p in &all {
            let o = overlay.lstat(p).unwrap();
            let i = index.lstat(p).unwrap();
            if p == Path::new("/") {
                // The root is the extraction directory's own, never a layer's (no step copies
                // it up): only its kind is the same.
                assert_eq!(i.map(|e| e.kind), o.as_ref().map(|e| e.kind));
            } else {
                assert_eq!(comparable(i), comparable(o.clone()), "lstat {p:?}");
            }
            let Some(o) = o else { continue };
            match o.kind {
                Kind::Dir => assert_eq!(
                    index.read_dir(p).unwrap(),
                    overlay.read_dir(p).unwrap(),
                    "read_dir {p:?}"
                ),
                Kind::Symlink => assert_eq!(
                    index.read_link(p).unwrap(),
                    overlay.read_link(p).unwrap(),
                    "read_link {p:?}"
                ),
                _ => {}
            }
            if o.kind != Kind::Symlink {
                assert_eq!(
                    index.xattrs(p).unwrap(),
                    overlay.xattrs(p).unwrap(),
                    "xattrs {p:?}"
                );
            }
            if o.kind == Kind::File {
                let e = index.open(p).unwrap_err();
                assert!(e.to_string().contains("no file content"), "{e}");
            }
        }
        // Resolution through the symlinked ancestor lands where the overlay's does.
        for p in ["/app/share/b", "/abs/a", "/app/../etc/hosts"] {
            assert_eq!(
                kiln::fsview::resolve(&index, Path::new(p), true).unwrap(),
                kiln::fsview::resolve(&overlay, Path::new(p), true).unwrap(),
                "{p}"
            );
        }
    }
}

#[test]
fn a_written_layer_records_the_index_its_extraction_records() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let cache = ExtractedLayers::open(&CacheDir::open(t.path().join("cache")).unwrap()).unwrap();
    let store = BlobStore::open(t.path().join("blobs")).unwrap();
    let tar = stacks().remove(0).remove(0);
    let diff_id = Digest::of(&tar);
    let dir = cache.extract(&diff_id, MEDIA_TYPE_TAR, &tar[..]).unwrap();
    let extracted = cache.index(&diff_id).unwrap();
    // Written again from the extracted tree: the same entries, so the same index.
    let info = layer::write_layer(&store, &dir, &LayerOptions::default()).unwrap();
    let again = ExtractedLayers::open(&CacheDir::open(t.path().join("again")).unwrap()).unwrap();
    let blob = std::fs::File::open(store.path(&info.layer.digest)).unwrap();
    again
        .extract(
            &info.layer.diff_id,
            &info.layer.media_type,
            std::io::BufReader::new(blob),
        )
        .unwrap();
    let index = info.index.expect("a written layer's index");
    assert_eq!(again.index(&info.layer.diff_id).unwrap(), index);
    let names = |i: &layer::LayerIndex| {
        i.entries()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&index), names(&extracted));
    let su = index.get(b"usr/bin/su").unwrap();
    assert_eq!(su.mode, 0o4755);
    let ping = index.get(b"usr/bin/ping").unwrap();
    assert_eq!(
        ping.xattrs,
        [(b"security.capability".to_vec(), CAP_NET_RAW.to_vec())]
    );
    assert_eq!(index.get(b"usr/bin/su2").unwrap().link, b"usr/bin/su");
}
