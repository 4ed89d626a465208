//! Layer write → extract round trips on real trees (as root): every kind of entry and its
//! metadata survive, the same tree always gives the same digests, and the epoch options set
//! mtimes.

use kiln_testkit::tree;

use kiln::blob::BlobStore;
use kiln::layer::{self, Compression, ExtractOptions, LayerOptions};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// `security.capability` v2 granting cap_net_raw, effective and permitted (what
/// `setcap cap_net_raw+ep` writes).
const CAP_NET_RAW_EP: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn set_mtime(p: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn set_atime(p: &Path, secs: i64) {
    let m = fs::symlink_metadata(p).unwrap();
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: m.mtime(),
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Builds the sample tree; `reverse` creates the same entries in the opposite order so inode
/// numbers and directory order differ.
fn build_tree(root: &Path, reverse: bool) {
    let long_dir = "d".repeat(60);
    let long_file = format!("{long_dir}/{}", "f".repeat(120));
    type Step = Box<dyn Fn(&Path)>;
    let mut steps: Vec<Step> = vec![
        Box::new(|r| fs::write(r.join("plain.txt"), b"hello layer\n").unwrap()),
        Box::new(|r| {
            fs::create_dir_all(r.join("usr/bin")).unwrap();
            fs::write(r.join("usr/bin/tool"), vec![7u8; 70_000]).unwrap();
            fs::set_permissions(r.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755))
                .unwrap();
            rustix::fs::lsetxattr(
                r.join("usr/bin/tool").as_path(),
                "security.capability",
                &CAP_NET_RAW_EP,
                XattrFlags::empty(),
            )
            .unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("shared")).unwrap();
            fs::set_permissions(r.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
            fs::create_dir_all(r.join("tmp")).unwrap();
            fs::set_permissions(r.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        }),
        Box::new(move |r| {
            fs::create_dir_all(r.join(&long_dir)).unwrap();
            fs::write(r.join(&long_file), b"long").unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("links")).unwrap();
            std::os::unix::fs::symlink("../plain.txt", r.join("links/rel")).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", r.join("links/abs")).unwrap();
            std::os::unix::fs::symlink("x".repeat(150), r.join("links/long")).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("hl")).unwrap();
            fs::write(r.join("hl/a"), b"shared inode").unwrap();
            fs::hard_link(r.join("hl/a"), r.join("hl/b")).unwrap();
            fs::hard_link(r.join("hl/a"), r.join("plain-link")).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("dev")).unwrap();
            rustix::fs::mknodat(
                CWD,
                r.join("dev/null").as_path(),
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(1, 3),
            )
            .unwrap();
            rustix::fs::mknodat(
                CWD,
                r.join("dev/loop9").as_path(),
                FileType::BlockDevice,
                Mode::from_raw_mode(0o660),
                rustix::fs::makedev(7, 9),
            )
            .unwrap();
            rustix::fs::mknodat(
                CWD,
                r.join("dev/fifo").as_path(),
                FileType::Fifo,
                Mode::from_raw_mode(0o640),
                0,
            )
            .unwrap();
            fs::set_permissions(r.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
            fs::set_permissions(r.join("dev/loop9"), fs::Permissions::from_mode(0o660)).unwrap();
            fs::set_permissions(r.join("dev/fifo"), fs::Permissions::from_mode(0o640)).unwrap();
        }),
        Box::new(|r| {
            fs::create_dir_all(r.join("home/user")).unwrap();
            fs::write(r.join("home/user/notes"), b"mine").unwrap();
            std::os::unix::fs::lchown(r.join("home/user/notes"), Some(1234), Some(5678)).unwrap();
            std::os::unix::fs::lchown(r.join("home/user"), Some(1234), Some(5678)).unwrap();
            std::os::unix::fs::symlink("notes", r.join("home/user/n")).unwrap();
            std::os::unix::fs::lchown(r.join("home/user/n"), Some(1234), Some(5678)).unwrap();
            rustix::fs::lsetxattr(
                r.join("home/user/notes").as_path(),
                "user.mime_type",
                b"text/plain",
                XattrFlags::empty(),
            )
            .unwrap();
            rustix::fs::lsetxattr(
                r.join("home/user").as_path(),
                "trusted.kiln",
                b"\x00\x01binary",
                XattrFlags::empty(),
            )
            .unwrap();
        }),
    ];
    if reverse {
        steps.reverse();
    }
    for s in &steps {
        s(root);
    }
    // Fixed mtimes everywhere (children before parents, as creating children changes them).
    let mut all = tree::paths(root);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(&root.join(p), 1_600_000_000 + (i as i64 % 7) * 1000);
        if reverse {
            set_atime(&root.join(p), 42);
        }
    }
}

fn opts(c: Compression) -> LayerOptions {
    LayerOptions {
        compression: c,
        ..LayerOptions::default()
    }
}

#[test]
fn every_kind_of_entry_survives_write_then_extract() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src, false);
    let want = tree::listing(&src, true);
    assert!(
        want.iter().any(|l| l.contains("security.capability")),
        "{want:#?}"
    );
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let info = layer::write_layer(&store, &src, &opts(c)).unwrap();
        assert_eq!(info.layer.media_type, c.media_type());
        assert_eq!(store.size(&info.layer.digest), Some(info.layer.size));
        let dst = tmp.path().join(format!("dst-{c:?}"));
        let got = layer::extract(
            store.read(&info.layer.digest).unwrap(),
            &dst,
            &ExtractOptions::default(),
        )
        .unwrap();
        assert_eq!(got.diff_id, info.layer.diff_id, "{c:?}");
        assert_eq!(tree::listing(&dst, true), want, "{c:?}");
    }
    // A real peer agrees about the file capability.
    if let Ok(out) = std::process::Command::new("getcap")
        .arg(tmp.path().join("dst-Gzip/usr/bin/tool"))
        .output()
    {
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("cap_net_raw=ep"), "getcap says {s:?}");
    }
}

#[test]
fn the_same_tree_gives_the_same_digests_whatever_the_inode_order_or_atimes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    build_tree(&a, false);
    build_tree(&b, true);
    assert_eq!(tree::listing(&a, true), tree::listing(&b, true));
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let one = layer::write_layer(&store, &a, &opts(c)).unwrap();
        let again = layer::write_layer(&store, &a, &opts(c)).unwrap();
        let other = layer::write_layer(&store, &b, &opts(c)).unwrap();
        let single = layer::write_layer(
            &store,
            &b,
            &LayerOptions {
                threads: 1,
                ..opts(c)
            },
        )
        .unwrap();
        assert_eq!(one, again, "{c:?}");
        assert_eq!(one, other, "{c:?}");
        assert_eq!(one, single, "{c:?}: thread count changed the blob");
    }
}

fn tar_entries(dir: &Path, o: &LayerOptions) -> Vec<(String, tar::EntryType, u64, String)> {
    let (_, bytes) = layer::write_tar(dir, o, Vec::new()).unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            (
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
                e.header().mtime().unwrap(),
                link,
            )
        })
        .collect()
}

#[test]
fn epochs_clamp_or_set_mtimes_and_order_is_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src, false);
    let plain = tar_entries(&src, &LayerOptions::default());
    let names: Vec<&str> = plain.iter().map(|e| e.0.as_str()).collect();
    // Depth first, siblings by name bytes: "plain-link" < "plain.txt" ('-' < '.').
    let i = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(i("hl/") < i("hl/a") && i("hl/a") < i("hl/b") && i("hl/b") < i("home/"));
    assert!(i("plain-link") < i("plain.txt"));
    assert!(names
        .iter()
        .all(|n| !n.starts_with('/') && !n.starts_with("./")));
    // Hard links: the first path carries the data, later ones link to it.
    let hl: Vec<_> = plain.iter().filter(|e| e.0.starts_with("hl/")).collect();
    assert_eq!(hl[1].1, tar::EntryType::Regular);
    assert_eq!(hl[2].1, tar::EntryType::Link);
    assert_eq!(hl[2].3, "hl/a");
    let pl = plain.iter().find(|e| e.0 == "plain-link").unwrap();
    assert_eq!((pl.1, pl.3.as_str()), (tar::EntryType::Link, "hl/a"));

    let clamp = 1_600_002_500;
    let clamped = tar_entries(
        &src,
        &LayerOptions {
            clamp_epoch: Some(clamp),
            ..LayerOptions::default()
        },
    );
    assert_eq!(clamped.len(), plain.len());
    let mut saw_clamped = false;
    for (p, c) in plain.iter().zip(&clamped) {
        assert_eq!(c.2, p.2.min(clamp as u64), "{}", p.0);
        saw_clamped |= p.2 > clamp as u64;
    }
    assert!(saw_clamped, "no mtime above the epoch to clamp");

    let fixed = tar_entries(
        &src,
        &LayerOptions {
            reproducible_epoch: Some(0),
            ..LayerOptions::default()
        },
    );
    assert!(fixed.iter().all(|e| e.2 == 0));
}

#[test]
fn excluded_paths_are_left_out_with_their_subtree() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src, false);
    let names: Vec<String> = tar_entries(
        &src,
        &LayerOptions {
            exclude: vec!["/dev".into(), "home/user/notes".into()],
            ..LayerOptions::default()
        },
    )
    .into_iter()
    .map(|e| e.0)
    .collect();
    assert!(names.iter().all(|n| !n.starts_with("dev")), "{names:?}");
    assert!(names.contains(&"home/user/n".to_string()));
    assert!(!names.contains(&"home/user/notes".to_string()));
}

#[test]
fn a_real_file_named_like_a_whiteout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(".wh.sneaky"), b"").unwrap();
    let err = layer::write_tar(tmp.path(), &LayerOptions::default(), Vec::new()).unwrap_err();
    assert!(err.to_string().contains(".wh.sneaky"), "{err}");
}
