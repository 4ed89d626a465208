//! Extraction refuses hand-built hostile layers (`..`, symlinked parents, symlink chains, hard
//! links out of the tree) naming the entry, writes nothing outside the target, and applies OCI
//! whiteouts to lower content.

use kiln_testkit::need_root;
use kiln_testkit::tree;

use kiln::layer::{self, ExtractOptions, LayerError};
use std::fs;
use std::path::Path;

enum E<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// A tar stream built header by header, so names the `tar` crate's builder would refuse
/// (`..`) can be written.
fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, kind, link, data): (&str, tar::EntryType, &str, &str) = match e {
            E::File(n, d) => (n, tar::EntryType::Regular, "", d),
            E::Dir(n) => (n, tar::EntryType::Directory, "", ""),
            E::Sym(n, l) => (n, tar::EntryType::Symlink, l, ""),
            E::Hard(n, l) => (n, tar::EntryType::Link, l, ""),
        };
        let u = h.as_ustar_mut().unwrap();
        u.name[..name.len()].copy_from_slice(name.as_bytes());
        u.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A target directory and a sentinel directory next to it that must stay untouched.
fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("root/target");
    let sentinel = tmp.path().join("root/sentinel");
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&sentinel).unwrap();
    fs::write(sentinel.join("secret"), "untouched").unwrap();
    (tmp, target, sentinel)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let data = fs::read(&p).unwrap_or_default();
        out.push((p.display().to_string(), data));
    }
    out.sort();
    out
}

fn refused(entries: &[E<'_>], entry: &str, pre: impl Fn(&Path, &Path)) {
    let (tmp, target, sentinel) = dirs();
    pre(&target, &sentinel);
    let before = snapshot(&sentinel);
    let parent_before = snapshot(tmp.path().join("root").as_path());
    let err = layer::extract(&tar_of(entries)[..], &target, &ExtractOptions::default())
        .expect_err("hostile layer accepted");
    let msg = err.to_string();
    assert!(
        matches!(err, LayerError::Unsafe { .. }),
        "{entry}: wrong kind of error: {msg}"
    );
    assert!(
        msg.contains(&format!("{entry:?}")),
        "error does not name {entry:?}: {msg}"
    );
    assert_eq!(snapshot(&sentinel), before, "{entry}: sentinel changed");
    assert_eq!(snapshot(tmp.path().join("root").as_path()), parent_before);
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("root/x").exists());
}

/// The sentinel as a symlink target relative to the target's root.
const SENTINEL_REL: &str = "../sentinel";

#[test]
fn dot_dot_paths_are_refused() {
    refused(&[E::File("../x", "evil")], "../x", |_, _| {});
    refused(
        &[E::Dir("a/"), E::File("a/../../x", "evil")],
        "a/../../x",
        |_, _| {},
    );
    refused(
        &[E::File("./a/./../../../x", "evil")],
        "./a/./../../../x",
        |_, _| {},
    );
}

#[test]
fn writing_through_a_symlink_is_refused_even_one_made_by_the_same_layer() {
    // a -> / then a/etc/passwd
    refused(
        &[
            E::Sym("a", "/"),
            E::File("a/etc/passwd", "root::0:0::/:/bin/sh"),
        ],
        "a/etc/passwd",
        |_, _| {},
    );
    // A relative symlink to the sentinel next door.
    let rel = SENTINEL_REL;
    refused(
        &[E::Sym("s", rel), E::File("s/secret", "overwritten")],
        "s/secret",
        |_, _| {},
    );
    // A directory the extractor has just written into (and keeps open for its next entries)
    // replaced by a symlink: the next entry below it must see the symlink.
    refused(
        &[
            E::Dir("d/"),
            E::File("d/one", "1"),
            E::Sym("d", rel),
            E::File("d/secret", "overwritten"),
        ],
        "d/secret",
        |_, _| {},
    );
    refused(
        &[
            E::Dir("d/"),
            E::Dir("d/e/"),
            E::File("d/e/one", "1"),
            E::Sym("d", rel),
            E::File("d/e/secret", "overwritten"),
        ],
        "d/e/secret",
        |_, _| {},
    );
    // A chain: a -> b -> ../sentinel, and the symlink deeper in the path.
    refused(
        &[
            E::Sym("b", rel),
            E::Sym("a", "b"),
            E::Dir("d/"),
            E::Sym("d/e", "../a"),
            E::File("d/e/secret", "overwritten"),
        ],
        "d/e/secret",
        |_, _| {},
    );
}

#[test]
fn a_symlink_left_by_a_lower_layer_is_not_followed() {
    refused(
        &[E::File("lib/secret", "overwritten")],
        "lib/secret",
        |t, s| {
            std::os::unix::fs::symlink(s, t.join("lib")).unwrap();
        },
    );
    // Replacing the symlink itself is fine: the symlink goes, its target stays.
    let (_tmp, target, sentinel) = dirs();
    std::os::unix::fs::symlink(sentinel.join("secret"), target.join("f")).unwrap();
    layer::extract(
        &tar_of(&[E::File("f", "new")])[..],
        &target,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "new");
    assert!(!fs::symlink_metadata(target.join("f")).unwrap().is_symlink());
    assert_eq!(
        fs::read_to_string(sentinel.join("secret")).unwrap(),
        "untouched"
    );
}

#[test]
fn hard_links_out_of_the_tree_are_refused() {
    refused(&[E::Hard("h", "../sentinel/secret")], "h", |_, _| {});
    refused(
        &[E::Sym("s", "../sentinel"), E::Hard("h", "s/secret")],
        "h",
        |_, _| {},
    );
    // An absolute target names a path inside the tree (as in Docker); missing there, so an error,
    // and never the host's /etc/passwd.
    let (_tmp, target, _s) = dirs();
    let err = layer::extract(
        &tar_of(&[E::Hard("h", "/etc/passwd")])[..],
        &target,
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"h\""), "{err}");
    assert!(!target.join("h").exists());
}

#[test]
fn absolute_paths_land_inside_the_target() {
    let (_tmp, target, _s) = dirs();
    layer::extract(
        &tar_of(&[E::File("/abs/file", "inside")])[..],
        &target,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(target.join("abs/file")).unwrap(),
        "inside"
    );
}

#[test]
fn whiteouts_remove_lower_content_but_not_the_layer_own() {
    let (_tmp, target, _s) = dirs();
    let lower = tar_of(&[
        E::File("gone", "lower"),
        E::Dir("dir/"),
        E::File("dir/old", "lower"),
        E::Dir("dir/sub/"),
        E::File("dir/sub/deep", "lower"),
        E::Dir("tree/"),
        E::File("tree/x", "lower"),
        E::File("kept", "lower"),
    ]);
    layer::extract(&lower[..], &target, &ExtractOptions::default()).unwrap();
    let upper = tar_of(&[
        E::File(".wh.gone", ""),
        E::File(".wh.tree", ""),
        E::Dir("dir/"),
        // Out of the recommended order on purpose: the layer's own entry before the marker.
        E::File("dir/-first", "mine"),
        E::File("dir/.wh..wh..opq", ""),
        E::File("dir/new", "mine"),
    ]);
    layer::extract(&upper[..], &target, &ExtractOptions::default()).unwrap();
    let mut names: Vec<String> = Vec::new();
    for e in tree::names(&target) {
        names.push(e);
    }
    assert_eq!(names, ["dir", "dir/-first", "dir/new", "kept"]);
}

#[test]
fn whiteouts_under_missing_dirs_create_nothing_and_dir_modes_come_last() {
    let (_tmp, target, _s) = dirs();
    let mut t = tar::Builder::new(Vec::new());
    let new = || {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    let mut h = new();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o555);
    h.set_size(0);
    t.append_data(&mut h, "ro/", &[][..]).unwrap();
    let mut h = new();
    h.set_mode(0o644);
    h.set_size(2);
    t.append_data(&mut h, "ro/f", &b"hi"[..]).unwrap();
    let mut h = new();
    h.set_mode(0o644);
    h.set_size(0);
    t.append_data(&mut h, "nope/.wh.x", &[][..]).unwrap();
    let bytes = t.into_inner().unwrap();
    layer::extract(&bytes[..], &target, &ExtractOptions::default()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(target.join("ro"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o555);
    assert_eq!(fs::read(target.join("ro/f")).unwrap(), b"hi");
    assert!(!target.join("nope").exists());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let (_tmp, target, _s) = dirs();
    for bytes in [
        &b"\x1f\x8b\x08\x00garbage"[..],
        &b"\x28\xb5\x2f\xfdgarbage"[..],
        &[7u8; 1024][..],
    ] {
        assert!(layer::extract(bytes, &target, &ExtractOptions::default()).is_err());
    }
    // A truncated archive too.
    let t = tar_of(&[E::File("f", &"z".repeat(5000))]);
    assert!(layer::extract(&t[..1500], &target, &ExtractOptions::default()).is_err());
}

/// A decompression bomb (a small gzip of many zeros) stops at the limit, naming it; a layer
/// under the limit extracts.
#[test]
fn a_layer_expanding_past_the_limit_is_refused() {
    use std::io::Write;
    let zeros = vec![0u8; 8 << 20];
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(zeros.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "zeros", &zeros[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 << 10, "a bomb: {} bytes", gz.len());
    let opts = |max| ExtractOptions {
        max_bytes: Some(max),
        ..ExtractOptions::default()
    };
    let t = tempfile::tempdir().unwrap();
    let e = layer::extract(&gz[..], t.path(), &opts(1 << 20)).unwrap_err();
    assert!(
        matches!(e, LayerError::TooLarge { limit, what: "uncompressed stream" } if limit == 1 << 20),
        "{e}"
    );
    assert!(e.to_string().contains("limit of 1048576 bytes"), "{e}");
    let t = tempfile::tempdir().unwrap();
    layer::extract(&gz[..], t.path(), &opts(16 << 20)).unwrap();
    assert_eq!(fs::metadata(t.path().join("zeros")).unwrap().len(), 8 << 20);
}

/// A sparse entry carries a few bytes and unpacks to its whole size: what it writes counts
/// against the limit even though the stream stays small. The archive is GNU tar's own.
#[test]
fn a_sparse_entry_counts_what_it_unpacks_to() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("holes")).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let tar = t.path().join("sparse.tar");
    let o = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("holes")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stream = fs::read(&tar).unwrap();
    assert!(
        stream.len() < 1 << 20,
        "GNU tar wrote it sparse: {}",
        stream.len()
    );
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let opts = ExtractOptions {
        max_bytes: Some(8 << 20),
        ..ExtractOptions::default()
    };
    let e = layer::extract(&stream[..], &out, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            LayerError::TooLarge {
                what: "bytes written to files",
                ..
            }
        ),
        "{e}"
    );
}

/// Within the limit, the same entry is extracted with its holes: it takes a few blocks on disk,
/// not its 64 MiB, and reads back as the file it was.
#[test]
fn a_sparse_entry_stays_sparse() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut f = fs::File::create(src.join("holes")).unwrap();
    std::io::Write::write_all(&mut f, b"head").unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let tar = t.path().join("sparse.tar");
    let o = std::process::Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("holes")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    layer::extract(
        &fs::read(&tar).unwrap()[..],
        &out,
        &ExtractOptions::default(),
    )
    .unwrap();
    let m = fs::metadata(out.join("holes")).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(
        m.blocks() * 512 <= 1 << 20,
        "{} bytes allocated",
        m.blocks() * 512
    );
    let back = fs::read(out.join("holes")).unwrap();
    assert!(back.starts_with(b"head") && back[4..].iter().all(|&b| b == 0));
}

/// Files get the layer's owners also where the target already holds a setgid directory, whose
/// new files take its group (extraction skips the chown of a new file only where that cannot
/// happen).
#[test]
fn owners_hold_under_a_setgid_directory() {
    need_root!();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (_tmp, target, _) = dirs();
    let d = target.join("d");
    fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(0), Some(50)).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o2775)).unwrap();
    layer::extract(
        &tar_of(&[E::File("d/f", "x"), E::File("g", "y")])[..],
        &target,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::metadata(d.join("f")).unwrap().gid(), 0);
    assert_eq!(fs::metadata(target.join("g")).unwrap().gid(), 0);
}
