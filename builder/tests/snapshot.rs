//! Snapshots for real (as root): layers extracted into the shared cache and read back through
//! the overlay view, the view against a real overlay mount of the same lowers, concurrent and
//! corrupted extraction, a real overlay upper committed and adopted, the overlay probe, the
//! tree-diff fallback on a 50,000-file tree, and the snapshotter's two modes giving one layer.

use kiln::blob::{BlobStore, Digest};
use kiln::cache_dir::CacheDir;
use kiln::fsview::{DirView, FsView, Kind};
use kiln::layer::{self, Compression, LayerInfo, LayerOptions, OverlayView};
use kiln::sandbox::RootFs;
use kiln::snapshot::{
    commit, commit_as, diff, materialise, probe, record, step_dirs, ExtractedLayers, Mode,
    SnapshotError, Snapshotter, Timer, Whiteouts, Work,
};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kiln_testkit::overlay;
use kiln_testkit::privilege;
use overlay::{opaque, whiteout, write, Mount};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! need_root {
    () => {
        if !is_root() {
            privilege::skip(
                "needs root (overlay mounts, whiteout devices, trusted xattrs)",
                privilege::Demand::Root,
            );
            return;
        }
    };
}

/// Overlay mount options for `lowers` (top-most first), with an upper and work dir if given,
/// plus `extra`.
fn overlay_options(lowers: &[PathBuf], upper_work: Option<(&Path, &Path)>, extra: &str) -> String {
    let lowers: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    let mut o = format!("lowerdir={}", lowers.join(":"));
    if let Some((u, w)) = upper_work {
        o.push_str(&format!(
            ",upperdir={},workdir={}",
            u.display(),
            w.display()
        ));
    }
    o.push_str(",redirect_dir=off,metacopy=off");
    o.push_str(extra);
    o
}

/// A tree in overlay form written as a layer blob.
fn layer_of(store: &BlobStore, dir: &Path, c: Compression) -> LayerInfo {
    let opts = LayerOptions {
        compression: c,
        overlay_whiteouts: true,
        ..LayerOptions::default()
    };
    layer::write_layer(store, dir, &opts).unwrap()
}

fn extract(cache: &ExtractedLayers, store: &BlobStore, l: &LayerInfo) -> PathBuf {
    cache
        .extract(
            &l.layer.diff_id,
            &l.layer.media_type,
            store.read(&l.layer.digest).unwrap(),
        )
        .unwrap()
}

/// Everything a process would see in a view: type, mode, owner, mtime, content, link target,
/// xattrs; sorted by path.
fn listing(v: &dyn FsView) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/")];
    while let Some(p) = stack.pop() {
        let e = v.lstat(&p).unwrap().unwrap();
        let what = match e.kind {
            Kind::File => {
                let mut s = Vec::new();
                v.open(&p).unwrap().read_to_end(&mut s).unwrap();
                format!("file {}", Digest::of(&s))
            }
            Kind::Symlink => format!("link->{}", v.read_link(&p).unwrap().display()),
            Kind::Dir => {
                for n in v.read_dir(&p).unwrap().into_iter().rev() {
                    stack.push(p.join(n));
                }
                "dir".into()
            }
            k => format!("{k:?} {}", e.rdev),
        };
        let mode = if e.kind == Kind::Symlink { 0 } else { e.mode };
        out.push(format!(
            "{} {what} {mode:o} {}:{} mtime={} xattrs={:?}",
            p.display(),
            e.uid,
            e.gid,
            e.mtime,
            v.xattrs(&p).unwrap()
        ));
    }
    out.sort();
    out
}

struct ThreeLayers {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: BlobStore,
    dir: CacheDir,
    cache: ExtractedLayers,
    /// Extracted, top-most first.
    lowers: Vec<PathBuf>,
}

/// Three layers with whiteouts, an opaque directory, a file replaced by a directory, links,
/// a setuid file and a hard link, extracted into the cache.
fn three_layers(compressions: [Compression; 3]) -> ThreeLayers {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let store = BlobStore::open(root.join("blobs")).unwrap();
    let dir = CacheDir::open(root.join("cache")).unwrap();
    let cache = ExtractedLayers::open(&dir).unwrap();
    let (l1, l2, l3) = (root.join("src1"), root.join("src2"), root.join("src3"));

    write(&l1.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&l1.join("a/x"), "x1\n");
    write(&l1.join("a/y"), "y1\n");
    write(&l1.join("b/keep"), "keep\n");
    write(&l1.join("b/gone"), "gone\n");
    write(&l1.join("c/sub/deep"), "deep\n");
    write(&l1.join("c/old"), "old\n");
    write(&l1.join("d"), "file d\n");
    write(&l1.join("bin/su"), "#!setuid\n");
    fs::set_permissions(l1.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(l1.join("bin/su"), l1.join("bin/su2")).unwrap();
    std::os::unix::fs::symlink("a/x", l1.join("link")).unwrap();
    std::os::unix::fs::lchown(l1.join("b/keep"), Some(1000), Some(1000)).unwrap();

    write(&l2.join("a/x"), "x2\n");
    whiteout(&l2.join("b/gone"));
    opaque(&l2.join("c"));
    write(&l2.join("c/new"), "new in 2\n");
    write(&l2.join("d/inner"), "d is a dir now\n");
    write(&l2.join("e/e1"), "e1\n");
    rustix::fs::setxattr(
        l2.join("a/x").as_path(),
        "user.kiln",
        b"v2",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    write(&l3.join("a/x"), "x3\n");
    whiteout(&l3.join("e"));
    whiteout(&l3.join("link"));
    write(&l3.join("b/added"), "added in 3\n");
    write(&l3.join("c/sub/x"), "sub again\n");
    fs::set_permissions(l3.join("c"), fs::Permissions::from_mode(0o750)).unwrap();

    let infos: Vec<LayerInfo> = [&l1, &l2, &l3]
        .iter()
        .zip(compressions)
        .map(|(d, c)| layer_of(&store, d, c))
        .collect();
    let mut lowers: Vec<PathBuf> = infos.iter().map(|i| extract(&cache, &store, i)).collect();
    lowers.reverse();
    ThreeLayers {
        _tmp: tmp,
        root,
        store,
        dir,
        cache,
        lowers,
    }
}

#[test]
fn gzip_and_zstd_layers_extract_into_the_cache_and_read_back_through_the_view() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let cache_dir = CacheDir::open(tmp.path().join("cache")).unwrap();
    let cache = ExtractedLayers::open(&cache_dir).unwrap();
    let src = tmp.path().join("src");
    write(&src.join("etc/os-release"), "ID=kiln\n");
    write(&src.join("usr/bin/tool"), "#!tool\n");
    fs::set_permissions(src.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../etc/os-release", src.join("usr/os")).unwrap();
    let want = listing(&DirView::new(&src));
    for c in [Compression::Gzip, Compression::Zstd] {
        let info = layer_of(&store, &src, c);
        assert_eq!(
            cache.get(&info.layer.diff_id).is_none(),
            c == Compression::Gzip
        );
        let dir = extract(&cache, &store, &info);
        assert_eq!(cache.get(&info.layer.diff_id), Some(dir.clone()));
        assert_eq!(
            dir,
            cache_dir.extracted_layers().join(info.layer.diff_id.hex())
        );
        let view = OverlayView::new(vec![dir]);
        // The root's own metadata is the cache's (0755, root); everything below is the layer's.
        assert_eq!(listing(&view)[1..], want[1..], "{c:?}");
        assert_eq!(
            kiln::fsview::read_small(&view, Path::new("/usr/os"))
                .unwrap()
                .unwrap(),
            b"ID=kiln\n"
        );
    }
    // Same content, both formats: one diff_id, one directory.
    assert_eq!(
        fs::read_dir(cache_dir.extracted_layers()).unwrap().count(),
        1
    );
}

#[test]
fn merged_view_of_three_layers_equals_a_real_overlay_mount() {
    need_root!();
    let t = three_layers([Compression::Gzip, Compression::Zstd, Compression::Gzip]);
    // The extracted middle layer keeps overlay's spelling.
    let wh = fs::symlink_metadata(t.lowers[1].join("b/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    let view = OverlayView::new(t.lowers.clone());
    let ours = listing(&view);
    let merged = t.root.join("merged");
    let theirs = {
        let _m = Mount::overlay(&overlay_options(&t.lowers, None, ""), &merged);
        listing(&DirView::new(&merged))
    };
    assert_eq!(ours, theirs);

    let has = |p: &str| view.lstat(Path::new(p)).unwrap().is_some();
    assert!(!has("/b/gone") && has("/b/keep") && has("/b/added"));
    assert!(!has("/c/old") && !has("/c/sub/deep") && has("/c/sub/x") && has("/c/new"));
    assert!(!has("/e") && !has("/e/e1") && !has("/link"));
    assert!(has("/d/inner") && has("/a/y"));
    assert_eq!(
        view.read_dir(Path::new("/c")).unwrap(),
        ["new", "sub"].map(std::ffi::OsString::from)
    );
    assert_eq!(view.lstat(Path::new("/c")).unwrap().unwrap().mode, 0o750);
    assert_eq!(
        kiln::fsview::read_small(&view, Path::new("/a/x"))
            .unwrap()
            .unwrap(),
        b"x3\n"
    );
    let su = view.lstat(Path::new("/bin/su")).unwrap().unwrap();
    assert_eq!(su.mode, 0o4755);
    assert_eq!(
        su.id,
        view.lstat(Path::new("/bin/su2")).unwrap().unwrap().id
    );
}

#[test]
fn concurrent_extract_of_one_diff_id_extracts_once() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let src = tmp.path().join("src");
    for i in 0..2000 {
        write(&src.join(format!("d{}/f{i}", i % 20)), &"x".repeat(i));
    }
    let info = layer_of(&store, &src, Compression::Gzip);
    let dir = CacheDir::open(tmp.path().join("cache")).unwrap();
    let cache = Arc::new(ExtractedLayers::open(&dir).unwrap());
    let readers = Arc::new(AtomicUsize::new(0));

    /// Counts the extractions that read the blob at all.
    struct Counted<R>(R, Arc<AtomicUsize>, bool);
    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            if !self.2 {
                self.2 = true;
                self.1.fetch_add(1, Ordering::SeqCst);
            }
            self.0.read(b)
        }
    }

    let barrier = Arc::new(std::sync::Barrier::new(4));
    let paths: Vec<PathBuf> = (0..4)
        .map(|_| {
            let (cache, store, info, readers, barrier) = (
                cache.clone(),
                store.clone(),
                info.clone(),
                readers.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let blob = Counted(store.read(&info.layer.digest).unwrap(), readers, false);
                cache
                    .extract(&info.layer.diff_id, &info.layer.media_type, blob)
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert_eq!(
        readers.load(Ordering::SeqCst),
        1,
        "extracted more than once"
    );
    assert_eq!(
        listing(&OverlayView::new(vec![paths[0].clone()]))[1..],
        listing(&DirView::new(&src))[1..]
    );
    // No leftovers from the waiting threads.
    assert_eq!(fs::read_dir(dir.scratch()).unwrap().count(), 0);
}

#[test]
fn a_blob_with_the_wrong_diff_id_leaves_nothing_in_layers() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let dir = CacheDir::open(tmp.path().join("cache")).unwrap();
    let cache = ExtractedLayers::open(&dir).unwrap();
    let src = tmp.path().join("src");
    write(&src.join("etc/hostname"), "kiln\n");
    let info = layer_of(&store, &src, Compression::Zstd);
    let claimed = Digest::of(b"something else");
    let e = cache
        .extract(
            &claimed,
            &info.layer.media_type,
            store.read(&info.layer.digest).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, SnapshotError::DiffIdMismatch { expected, actual }
            if *expected == claimed && *actual == info.layer.diff_id),
        "{e}"
    );
    // A truncated blob fails too.
    let mut bytes = Vec::new();
    store
        .read(&info.layer.digest)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes.truncate(bytes.len() / 2);
    assert!(cache
        .extract(&info.layer.diff_id, &info.layer.media_type, &bytes[..])
        .is_err());
    assert!(cache.get(&claimed).is_none() && cache.get(&info.layer.diff_id).is_none());
    assert_eq!(fs::read_dir(dir.extracted_layers()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.scratch()).unwrap().count(), 0);
}

/// Names of the entries of a gzip layer blob, and the kind of each.
fn tar_entries(store: &BlobStore, info: &LayerInfo) -> BTreeSet<String> {
    let blob = store.read(&info.layer.digest).unwrap();
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let kind = match e.header().entry_type() {
                tar::EntryType::Directory => "dir",
                tar::EntryType::Regular => "file",
                tar::EntryType::Symlink => "link",
                tar::EntryType::Link => "hardlink",
                _ => "other",
            };
            format!("{} {kind}", e.path().unwrap().display())
        })
        .collect()
}

#[test]
fn commit_of_a_real_overlay_upper_then_adopt_and_get() {
    need_root!();
    let t = three_layers([Compression::Gzip; 3]);
    let step = step_dirs(&t.dir).unwrap();
    let merged = t.root.join("merged");
    let seen = {
        let _m = Mount::overlay(
            &overlay_options(&t.lowers, Some((&step.upper, &step.work)), ""),
            &merged,
        );
        write(&merged.join("new.txt"), "created\n");
        fs::write(merged.join("etc/passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
        fs::remove_file(merged.join("a/y")).unwrap();
        fs::remove_dir_all(merged.join("d")).unwrap();
        write(&merged.join("d/fresh"), "fresh\n");
        listing(&DirView::new(&merged))
    };
    let opts = LayerOptions {
        overlay_whiteouts: false, // commit sets it
        ..LayerOptions::default()
    };
    let info = commit(&step.upper, &t.store, &opts).unwrap();
    let want: BTreeSet<String> = [
        "a/ dir",
        "a/.wh.y file",
        "d/ dir",
        "d/.wh..wh..opq file",
        "d/fresh file",
        "etc/ dir",
        "etc/passwd file",
        "new.txt file",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(tar_entries(&t.store, &info), want);

    let upper = step.upper.clone();
    let adopted = t.cache.adopt(&info.layer.diff_id, &upper).unwrap();
    assert_eq!(t.cache.get(&info.layer.diff_id), Some(adopted.clone()));
    assert!(!upper.exists(), "the upper was moved, not copied");
    // The adopted upper is a lower like any other: with the parent's layers it reads as the
    // mount did.
    let mut lowers = vec![adopted];
    lowers.extend(t.lowers.iter().cloned());
    assert_eq!(listing(&OverlayView::new(lowers)), seen);
    let base = step.base().to_path_buf();
    drop(step);
    assert!(!base.exists());
    // Re-extracting the same layer finds it adopted.
    assert_eq!(
        extract(&t.cache, &t.store, &info),
        t.cache.get(&info.layer.diff_id).unwrap()
    );
}

#[test]
fn step_dirs_are_removed_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CacheDir::open(tmp.path()).unwrap();
    let s = step_dirs(&dir).unwrap();
    write(&s.upper.join("x/y"), "y");
    fs::create_dir_all(s.work.join("work")).unwrap();
    fs::set_permissions(s.work.join("work"), fs::Permissions::from_mode(0o0)).unwrap();
    assert!(s.upper.is_dir() && s.work.is_dir());
    let base = s.base().to_path_buf();
    drop(s);
    assert!(!base.exists());
}

#[test]
fn probe_says_overlay_here() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = CacheDir::open(tmp.path()).unwrap();
    assert_eq!(probe(&dir), Mode::Overlay);
    // Cached: the same answer without leftovers.
    assert_eq!(probe(&dir), Mode::Overlay);
    assert_eq!(fs::read_dir(dir.scratch()).unwrap().count(), 0);
}

/// The work a snapshotter reported, in order.
#[derive(Default)]
struct Reported(std::sync::Mutex<Vec<Work>>);

impl Timer for Reported {
    fn add(&self, work: Work, _: std::time::Duration, _: Instant, _: Instant) {
        self.0.lock().unwrap().push(work);
    }
}

impl Reported {
    fn take(&self) -> Vec<Work> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// One step's change, made in its root: a file created, one of the parent's modified, one
/// deleted, a directory deleted, a directory replaced by a file, a file replaced by a
/// directory, and a directory removed and made again (overlay makes it opaque).
fn step_change(root: &Path) {
    write(&root.join("new.txt"), "created\n");
    let mut passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd.push_str("kiln:x:1000:1000::/home/kiln:/bin/sh\n");
    fs::write(root.join("etc/passwd"), passwd).unwrap();
    fs::remove_file(root.join("a/y")).unwrap();
    fs::remove_dir_all(root.join("b")).unwrap();
    fs::remove_dir_all(root.join("d")).unwrap();
    write(&root.join("d"), "d is a file again\n");
    fs::remove_file(root.join("a/x")).unwrap();
    write(&root.join("a/x/inside"), "a/x is a directory now\n");
    fs::remove_dir_all(root.join("c")).unwrap();
    write(&root.join("c/sub/z"), "c made again\n");
}

#[test]
fn snapshotter_commits_one_layer_for_one_change_in_either_mode() {
    need_root!();
    let t = three_layers([Compression::Gzip; 3]);
    // Reproducible: the two roots' changes differ in their times, not in what they are.
    let opts = LayerOptions {
        reproducible_epoch: Some(0),
        ..LayerOptions::default()
    };
    let want: BTreeSet<String> = [
        ".wh.b file",
        "a/ dir",
        "a/.wh.y file",
        "a/x/ dir",
        "a/x/inside file",
        // Overlay's opaque c, spelled as the tree diff spells it: what it hid, one by one.
        "c/ dir",
        "c/.wh.new file",
        "c/sub/ dir",
        "c/sub/.wh.x file",
        "c/sub/z file",
        "d file",
        "etc/ dir",
        "etc/passwd file",
        "new.txt file",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let timer = Reported::default();

    let overlay = Snapshotter::new(
        Mode::Overlay,
        t.dir.clone(),
        t.cache.clone(),
        t.store.clone(),
    );
    let scratch = tempfile::tempdir_in(t.dir.scratch()).unwrap();
    let (rootfs, active) = overlay
        .prepare(t.lowers.clone(), scratch.path(), &timer)
        .unwrap();
    let RootFs::Overlay { lower, upper, work } = rootfs else {
        panic!("overlay mode gives an overlay root: {rootfs:?}");
    };
    assert_eq!(lower, t.lowers);
    assert_eq!(upper, active.upper());
    assert!(timer.take().is_empty(), "nothing to extract under overlay");
    {
        let merged = t.root.join("merged");
        let _m = Mount::overlay(
            &overlay_options(&lower, Some((&upper, &work)), ",index=off"),
            &merged,
        );
        step_change(&merged);
    }
    let by_overlay = overlay.commit(active, &opts, &timer).unwrap();
    assert_eq!(timer.take(), [Work::Diff, Work::Compress]);
    assert_eq!(tar_entries(&t.store, &by_overlay), want);
    // The upper is the new layer's extracted form.
    assert_eq!(
        t.cache.get(&by_overlay.layer.diff_id),
        Some(
            t.dir
                .extracted_layers()
                .join(by_overlay.layer.diff_id.hex())
        )
    );
    assert!(!upper.exists());

    let tree = Snapshotter::new(
        Mode::TreeDiff {
            reason: "forced by the test".into(),
        },
        t.dir.clone(),
        t.cache.clone(),
        t.store.clone(),
    );
    let scratch = tempfile::tempdir_in(t.dir.scratch()).unwrap();
    let (rootfs, active) = tree
        .prepare(t.lowers.clone(), scratch.path(), &timer)
        .unwrap();
    let RootFs::Dir(root) = rootfs else {
        panic!("tree-diff mode gives a directory root: {rootfs:?}");
    };
    assert_eq!(timer.take(), [Work::Extract]);
    assert_eq!(
        listing(&DirView::new(&root)),
        listing(&OverlayView::new(t.lowers.clone())),
        "the root is a copy of the parent"
    );
    step_change(&root);
    let by_tree = tree.commit(active, &opts, &timer).unwrap();
    assert_eq!(timer.take(), [Work::Diff, Work::Diff, Work::Compress]);
    assert_eq!(
        by_tree.layer.diff_id, by_overlay.layer.diff_id,
        "both modes give the same layer"
    );
    assert_eq!(tar_entries(&t.store, &by_tree), want);
    assert_eq!(by_tree.layer.digest, by_overlay.layer.digest);
}

/// `n` small files in directories of 100, with mtimes in the past (as extracted layers have).
fn big_tree(root: &Path, n: usize) {
    for i in 0..n {
        let p = root.join(format!("d{:03}/f{i}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        fs::write(&p, format!("file {i}\n")).unwrap();
    }
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn tree_diff_of_50000_files_finds_the_one_change() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    big_tree(&root, 50_000);
    // Past the second the files were written in: their mtimes are trustworthy.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = Instant::now();
    let before = record(&root).unwrap();
    let t_record = t.elapsed();
    assert_eq!(before.len(), 50_000 + 500 + 1);

    fs::write(root.join("d123/f12345"), "changed by a step\n").unwrap();
    let upper = tmp.path().join("upper");
    let t = Instant::now();
    let d = diff(&before, &root, &upper).unwrap();
    let t_diff = t.elapsed();
    eprintln!(
        "50,000 files: record {:.1} ms, diff {:.1} ms",
        t_record.as_secs_f64() * 1e3,
        t_diff.as_secs_f64() * 1e3
    );
    assert_eq!((d.changed, d.deleted, d.hashed), (1, 0, 0));
    assert_eq!(files_under(&upper), [PathBuf::from("d123/f12345")]);
    assert_eq!(
        fs::read(upper.join("d123/f12345")).unwrap(),
        b"changed by a step\n"
    );
}

#[test]
fn tree_diff_writes_changes_and_whiteouts_that_commit_as_a_layer() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let root = tmp.path().join("root");
    write(&root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&root.join("etc/group"), "root:x:0:\n");
    write(&root.join("old/a"), "a\n");
    write(&root.join("old/deeper/b"), "b\n");
    write(&root.join("was-file"), "f\n");
    write(&root.join("was-dir/c"), "c\n");
    write(&root.join("same"), "same\n");
    let before = record(&root).unwrap();
    // `same` was written in the recording's second: its content is all that can tell.
    assert!(before.get(Path::new("same")).unwrap().hash.is_some());

    fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
    fs::remove_file(root.join("etc/group")).unwrap();
    fs::remove_dir_all(root.join("old")).unwrap();
    fs::remove_file(root.join("was-file")).unwrap();
    write(&root.join("was-file/now-dir"), "d\n");
    fs::remove_dir_all(root.join("was-dir")).unwrap();
    write(&root.join("was-dir"), "now a file\n");
    write(&root.join("new/x"), "x\n");
    fs::hard_link(root.join("new/x"), root.join("new/x2")).unwrap();

    let upper = tmp.path().join("upper");
    let d = diff(&before, &root, &upper).unwrap();
    assert_eq!(d.whiteouts, Whiteouts::Overlay);
    assert_eq!(d.deleted, 2, "etc/group and old: {d:?}");
    assert_eq!(d.hashed, 1);
    let wh = fs::symlink_metadata(upper.join("old")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        fs::metadata(upper.join("new/x")).unwrap().ino(),
        fs::metadata(upper.join("new/x2")).unwrap().ino()
    );
    assert!(!upper.join("same").exists());

    let info = commit_as(&upper, d.whiteouts, &store, &LayerOptions::default()).unwrap();
    let want: BTreeSet<String> = [
        "etc/ dir",
        "etc/.wh.group file",
        "etc/passwd file",
        ".wh.old file",
        "new/ dir",
        "new/x file",
        "new/x2 hardlink",
        "was-dir file",
        "was-file/ dir",
        "was-file/now-dir file",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(tar_entries(&store, &info), want);

    // The same change applied by extraction onto a copy of the old tree gives the new tree.
    let base = tmp.path().join("base");
    write(&base.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n");
    write(&base.join("etc/group"), "root:x:0:\n");
    write(&base.join("old/a"), "a\n");
    write(&base.join("was-file"), "f\n");
    write(&base.join("was-dir/c"), "c\n");
    layer::extract(
        store.read(&info.layer.digest).unwrap(),
        &base,
        &Default::default(),
    )
    .unwrap();
    let files = |r: &Path| -> Vec<PathBuf> {
        files_under(r)
            .into_iter()
            .filter(|p| !p.starts_with("same") && !p.starts_with("old"))
            .collect()
    };
    assert_eq!(files(&base), files(&root));
    assert!(!base.join("old").exists() && !base.join("etc/group").exists());
}

#[test]
fn oci_whiteouts_commit_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let upper = tmp.path().join("upper");
    write(&upper.join("etc/.wh.group"), "");
    write(&upper.join("etc/passwd"), "p\n");
    let info = commit_as(&upper, Whiteouts::Oci, &store, &LayerOptions::default()).unwrap();
    let want: BTreeSet<String> = ["etc/ dir", "etc/.wh.group file", "etc/passwd file"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(tar_entries(&store, &info), want);
    // Read as an overlay upper, such a name is refused.
    assert!(commit(&upper, &store, &LayerOptions::default()).is_err());
}

#[test]
fn materialise_keeps_hard_links_setuid_owners_xattrs_and_devices() {
    need_root!();
    let t = three_layers([Compression::Zstd; 3]);
    let l4 = t.root.join("src4");
    fs::create_dir_all(l4.join("dev")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        l4.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    fs::set_permissions(l4.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    write(&l4.join("bin/ping"), "#!ping\n");
    rustix::fs::setxattr(
        l4.join("bin/ping").as_path(),
        "security.capability",
        // VFS_CAP_REVISION_2, cap_net_raw permitted + effective.
        &[
            0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let info = layer_of(&t.store, &l4, Compression::Gzip);
    let mut lowers = vec![extract(&t.cache, &t.store, &info)];
    lowers.extend(t.lowers.iter().cloned());
    let view = OverlayView::new(lowers);

    let dest = t.root.join("rootfs");
    let done = materialise(&view, &dest).unwrap();
    assert!(done.skipped.is_empty(), "{:?}", done.skipped);
    assert_eq!(listing(&DirView::new(&dest)), listing(&view));
    let su = fs::symlink_metadata(dest.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(
        su.ino(),
        fs::symlink_metadata(dest.join("bin/su2")).unwrap().ino()
    );
    assert_eq!(
        fs::symlink_metadata(dest.join("b/keep")).unwrap().uid(),
        1000
    );
    let null = fs::symlink_metadata(dest.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    // No overlay bookkeeping leaks into the copy.
    assert!(kiln::fsview::host_xattrs(&dest.join("c"))
        .unwrap()
        .is_empty());
}

/// A RUN-like change of one file in a 50,000-file lower, committed: overlay upper vs tree diff.
/// `bench/snapshot.sh` runs it.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_one_file_change_in_50000_file_lower() {
    need_root!();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let dir = CacheDir::open(tmp.path().join("cache")).unwrap();
    let cache = ExtractedLayers::open(&dir).unwrap();
    let lower = tmp.path().join("lower");
    big_tree(&lower, 50_000);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Reproducible, so both ways must give the same digest.
    let opts = LayerOptions {
        reproducible_epoch: Some(0),
        ..LayerOptions::default()
    };

    // Overlay: mount, change, unmount, commit the upper. Without `volatile`, unmounting
    // syncs the upper's whole filesystem; the page cache is flushed first so that shows
    // only this step's share.
    rustix::fs::sync();
    let mut lines = Vec::new();
    let mut info = None;
    for extra in ["", ",volatile"] {
        let step = step_dirs(&dir).unwrap();
        let merged = tmp.path().join("merged");
        let t = Instant::now();
        let m = Mount::overlay(
            &overlay_options(
                std::slice::from_ref(&lower),
                Some((&step.upper, &step.work)),
                extra,
            ),
            &merged,
        );
        let mount_ms = ms(t);
        fs::write(merged.join("d123/f12345"), "changed by RUN\n").unwrap();
        let t = Instant::now();
        drop(m);
        let umount_ms = ms(t);
        let t = Instant::now();
        let i = commit(&step.upper, &store, &opts).unwrap();
        let commit_ms = ms(t);
        let t = Instant::now();
        cache.adopt(&i.layer.diff_id, &step.upper).unwrap();
        let adopt_ms = ms(t);
        lines.push(format!(
            "  overlay{extra}: commit {commit_ms:.1} ms (mount {mount_ms:.1} ms, umount \
             {umount_ms:.1} ms, adopt {adopt_ms:.2} ms)"
        ));
        info = Some(i);
    }
    let info = info.unwrap();

    // Tree diff: materialise the parent, record, change, diff, commit.
    let root = tmp.path().join("rootfs");
    let t = Instant::now();
    materialise(&DirView::new(&lower), &root).unwrap();
    let materialise_ms = ms(t);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = Instant::now();
    let before = record(&root).unwrap();
    let record_ms = ms(t);
    fs::write(root.join("d123/f12345"), "changed by RUN\n").unwrap();
    let upper = tmp.path().join("td-upper");
    let t = Instant::now();
    let d = diff(&before, &root, &upper).unwrap();
    let diff_ms = ms(t);
    let t = Instant::now();
    let td = commit_as(&upper, d.whiteouts, &store, &opts).unwrap();
    let td_commit_ms = ms(t);
    assert_eq!(
        td.layer.diff_id, info.layer.diff_id,
        "both ways give the same layer"
    );

    println!("one changed file in a 50,000-file lower (gzip, default level):");
    for l in lines {
        println!("{l}");
    }
    println!(
        "  tree diff: record {record_ms:.1} ms + diff {diff_ms:.1} ms + commit {td_commit_ms:.1} ms \
         = {:.1} ms (materialise {materialise_ms:.1} ms before the step)",
        record_ms + diff_ms + td_commit_ms
    );
}
