//! A real overlay mount (as root): changes made in the merged view become a layer from the
//! upper directory with OCI whiteouts, GNU tar reads that layer as expected, and lower + layer
//! extracted (either applying whiteouts, or keeping them as overlay whiteouts under a second
//! overlay mount) reproduces the merged view.

use kiln_testkit::overlay;
use kiln_testkit::tree;

use overlay::{write, Mount};

use kiln::blob::BlobStore;
use kiln::layer::{self, Compression, ExtractOptions, LayerOptions};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    merged_listing: Vec<String>,
}

/// Lower content, then a step's changes made through a real overlay mount.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (lower, upper, work, merged) = (
        root.join("lower"),
        root.join("upper"),
        root.join("work"),
        root.join("merged"),
    );
    for d in [&lower, &upper, &work] {
        fs::create_dir_all(d).unwrap();
    }
    write(&lower.join("etc/os-release"), "ID=kiln\n");
    write(&lower.join("gone.txt"), "delete me\n");
    write(&lower.join("data/a"), "a\n");
    write(&lower.join("data/sub/c"), "c\n");
    write(&lower.join("keep/x"), "x\n");
    write(&lower.join("bin/sh"), "#!shell\n");
    fs::set_permissions(lower.join("bin/sh"), fs::Permissions::from_mode(0o4755)).unwrap();
    let merged_listing = {
        let _m = Mount::overlay(
            &format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ),
            &merged,
        );
        fs::remove_file(merged.join("gone.txt")).unwrap();
        fs::remove_dir_all(merged.join("data")).unwrap();
        write(&merged.join("data/new"), "replaced\n");
        write(&merged.join("keep/added"), "added\n");
        fs::hard_link(merged.join("keep/added"), merged.join("keep/added2")).unwrap();
        fs::set_permissions(merged.join("keep/x"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("../etc/os-release", merged.join("keep/rel")).unwrap();
        std::os::unix::fs::lchown(merged.join("keep/added"), Some(1000), Some(100)).unwrap();
        tree::listing(&merged, false)
    };
    Fixture {
        _tmp: tmp,
        root,
        lower,
        upper,
        merged_listing,
    }
}

fn overlay_opts(c: Compression) -> LayerOptions {
    LayerOptions {
        compression: c,
        overlay_whiteouts: true,
        ..LayerOptions::default()
    }
}

#[test]
fn upper_dir_becomes_a_layer_with_oci_whiteouts_read_by_tar_crate_and_gnu_tar() {
    let f = fixture();
    // The upper dir really holds overlay's spelling of the changes.
    let wh = fs::symlink_metadata(f.upper.join("gone.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    let tar_path = f.root.join("layer.tar");
    let (diff_id, file) = layer::write_tar(
        &f.upper,
        &overlay_opts(Compression::None),
        fs::File::create(&tar_path).unwrap(),
    )
    .unwrap();
    drop(file);
    assert_eq!(
        diff_id,
        kiln::blob::Digest::of(&fs::read(&tar_path).unwrap())
    );

    let mut ar = tar::Archive::new(fs::File::open(&tar_path).unwrap());
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let h = e.header().clone();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        let pax: Vec<String> = e
            .pax_extensions()
            .unwrap()
            .map(|p| p.map(|r| r.unwrap().key().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert!(
            pax.iter().all(|k| !k.contains("overlay")),
            "{name} carries {pax:?}"
        );
        assert!(h.username().unwrap().unwrap_or("").is_empty());
        seen.push((
            name,
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.size().unwrap(),
            link,
        ));
    }
    let get = |n: &str| {
        seen.iter()
            .find(|e| e.0 == n)
            .unwrap_or_else(|| panic!("{n} missing from {seen:#?}"))
    };
    assert_eq!(get(".wh.gone.txt").1, tar::EntryType::Regular);
    assert_eq!(get(".wh.gone.txt").5, 0);
    assert_eq!(get("data/").1, tar::EntryType::Directory);
    assert_eq!(get("data/.wh..wh..opq").1, tar::EntryType::Regular);
    assert_eq!(get("data/new").5, 9);
    assert_eq!(get("keep/x").2, 0o600);
    let added = get("keep/added");
    assert_eq!((added.3, added.4), (1000, 100));
    let added2 = get("keep/added2");
    assert_eq!(added2.1, tar::EntryType::Link);
    assert_eq!(added2.6.as_deref(), Some("keep/added"));
    assert_eq!(get("keep/rel").6.as_deref(), Some("../etc/os-release"));
    // Whiteouts before their siblings; nothing from lower that did not change.
    let names: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names[0], ".wh.gone.txt");
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("data/") < pos("data/.wh..wh..opq") && pos("data/.wh..wh..opq") < pos("data/new"));
    assert!(!names
        .iter()
        .any(|n| n.starts_with("bin") || n.starts_with("etc")));

    // GNU tar, a real peer, sees the same names, types, modes, ids and link targets.
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |suffix: &str| {
        text.lines()
            .find(|l| l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no line ending {suffix:?} in\n{text}"))
            .to_string()
    };
    assert!(
        line(" .wh.gone.txt").starts_with("-rw-r--r-- 0/0 "),
        "{text}"
    );
    assert!(line(" data/.wh..wh..opq").starts_with("-rw-r--r-- 0/0 "));
    assert!(line(" data/").starts_with("drwxr-xr-x 0/0 "));
    assert!(line(" keep/x").starts_with("-rw------- 0/0 "));
    assert!(line(" keep/added").starts_with("-rw-r--r-- 1000/100 "));
    assert!(line(" keep/added2 link to keep/added").starts_with("hrw-r--r-- 1000/100 "));
    assert!(line(" keep/rel -> ../etc/os-release").starts_with("lrwxrwxrwx 0/0 "));
    assert_eq!(text.lines().count(), seen.len(), "{text}");

    // And the gzip blob is the same archive to GNU tar.
    let store = BlobStore::open(f.root.join("blobs")).unwrap();
    let info = layer::write_layer(&store, &f.upper, &overlay_opts(Compression::Gzip)).unwrap();
    assert_eq!(info.layer.diff_id, diff_id);
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tzvf"])
        .arg(store.path(&info.layer.digest))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
}

#[test]
fn lower_plus_layer_extracted_reproduces_the_merged_view() {
    let f = fixture();
    let store = BlobStore::open(f.root.join("blobs")).unwrap();
    let base = layer::write_layer(&store, &f.lower, &LayerOptions::default()).unwrap();
    let step = layer::write_layer(&store, &f.upper, &overlay_opts(Compression::Zstd)).unwrap();

    let applied = f.root.join("applied");
    let x = ExtractOptions::default();
    layer::extract(store.read(&base.layer.digest).unwrap(), &applied, &x).unwrap();
    let info = layer::extract(store.read(&step.layer.digest).unwrap(), &applied, &x).unwrap();
    assert_eq!(info.diff_id, step.layer.diff_id);
    assert_eq!(tree::listing(&applied, false), f.merged_listing);
    assert!(!applied.join("gone.txt").exists());
    assert!(!applied.join("data/a").exists() && !applied.join("data/sub").exists());
}

#[test]
fn a_layer_extracted_with_overlay_whiteouts_serves_as_an_overlay_lower() {
    let f = fixture();
    let store = BlobStore::open(f.root.join("blobs")).unwrap();
    let step = layer::write_layer(&store, &f.upper, &overlay_opts(Compression::Gzip)).unwrap();
    let as_lower = f.root.join("step-lower");
    layer::extract(
        store.read(&step.layer.digest).unwrap(),
        &as_lower,
        &ExtractOptions {
            overlay_whiteouts: true,
            ..ExtractOptions::default()
        },
    )
    .unwrap();
    let wh = fs::symlink_metadata(as_lower.join("gone.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let mut v = [0u8; 8];
    let n = rustix::fs::lgetxattr(
        as_lower.join("data").as_path(),
        "trusted.overlay.opaque",
        &mut v[..],
    )
    .unwrap();
    assert_eq!(&v[..n], b"y");

    let view = f.root.join("view");
    let _m = Mount::overlay(
        &format!("lowerdir={}:{}", as_lower.display(), f.lower.display()),
        &view,
    );
    assert_eq!(tree::listing(&view, false), f.merged_listing);
}

#[test]
fn rootless_opaque_xattr_and_the_x_value_and_whiteouts_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path();
    for d in ["rootless", "xwhiteouts"] {
        fs::create_dir(up.join(d)).unwrap();
        write(&up.join(d).join("f"), "f");
    }
    let set = |p: &Path, k: &str, v: &[u8]| {
        rustix::fs::lsetxattr(p, k, v, rustix::fs::XattrFlags::empty()).unwrap()
    };
    set(&up.join("rootless"), "user.overlay.opaque", b"y");
    // Since Linux 6.7 "x" means "holds xattr whiteouts", not opaque.
    set(&up.join("xwhiteouts"), "trusted.overlay.opaque", b"x");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        up.join("wh").as_path(),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    let names = |overlay: bool| -> Vec<(String, tar::EntryType)> {
        let o = LayerOptions {
            overlay_whiteouts: overlay,
            ..LayerOptions::default()
        };
        let (_, bytes) = layer::write_tar(up, &o, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    };
    let on: Vec<String> = names(true).into_iter().map(|e| e.0).collect();
    assert_eq!(
        on,
        [
            ".wh.wh",
            "rootless/",
            "rootless/.wh..wh..opq",
            "rootless/f",
            "xwhiteouts/",
            "xwhiteouts/f"
        ]
    );
    let off = names(false);
    assert!(
        off.contains(&("wh".to_string(), tar::EntryType::Char)),
        "{off:?}"
    );
    assert!(!off.iter().any(|e| e.0.contains(".wh.")), "{off:?}");
}

/// The tree-diff fallback's upper spells deletions as OCI files (`.wh.x`, `.wh..wh..opq`)
/// where overlay has 0:0 devices and opaque xattrs; the same change gives the same layer, byte
/// for byte, either way (deletions first in their directory, with a whiteout's header).
#[test]
fn an_oci_spelled_upper_gives_the_overlay_upper_s_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (ovl, oci) = (dir.path().join("ovl"), dir.path().join("oci"));
    for root in [&ovl, &oci] {
        // Names sorting before `.wh.` (`.a`, `+x`) are where a mis-ordered deletion shows.
        overlay::write(&root.join("etc/.a"), "a\n");
        overlay::write(&root.join("etc/+x"), "x\n");
        overlay::write(&root.join("app/new"), "n\n");
    }
    overlay::whiteout(&ovl.join("etc/gone"));
    overlay::opaque(&ovl.join("app"));
    overlay::write(&oci.join("etc/.wh.gone"), "");
    overlay::write(&oci.join("app/.wh..wh..opq"), "");
    let store = BlobStore::open(dir.path().join("store")).unwrap();
    let opts = LayerOptions {
        reproducible_epoch: Some(0),
        ..LayerOptions::default()
    };
    let from_overlay = layer::write_layer(
        &store,
        &ovl,
        &LayerOptions {
            overlay_whiteouts: true,
            ..opts.clone()
        },
    )
    .unwrap();
    let from_oci = layer::write_layer(
        &store,
        &oci,
        &LayerOptions {
            oci_whiteouts: true,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(from_oci.layer.diff_id, from_overlay.layer.diff_id);
}
