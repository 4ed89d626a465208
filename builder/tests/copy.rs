//! COPY/ADD semantics on temp trees: a context directory (through `ContextView`), a parent
//! tree (a `DirView`) and an empty upper directory that is inspected afterwards. Runs as root
//! (owners, device nodes, `security.capability`).

use kiln_testkit::privilege;
use kiln_testkit::tree;

use kiln::copy::{copy, inputs_digest, mkdir_workdir, ContextView, CopyError, CopyRequest};
use kiln::fsview::DirView;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

struct Env {
    _t: tempfile::TempDir,
    ctx: PathBuf,
    parent: PathBuf,
    upper: PathBuf,
}

fn env() -> Env {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    let parent = t.path().join("parent");
    let upper = t.path().join("upper");
    for d in [&ctx, &parent, &upper] {
        fs::create_dir(d).unwrap();
    }
    Env {
        _t: t,
        ctx,
        parent,
        upper,
    }
}

fn write(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, t: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn req(sources: &[&str], dest: &str) -> CopyRequest {
    CopyRequest {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        workdir: "/".into(),
        is_context: true,
        ..Default::default()
    }
}

fn run(e: &Env, r: &CopyRequest) -> Result<kiln::copy::CopyStats, CopyError> {
    let src = ContextView::open(&e.ctx).unwrap();
    copy(r, &src, &DirView::new(&e.parent), &e.upper)
}

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    meta(p).mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = meta(p);
    (m.uid(), m.gid())
}

#[test]
fn file_to_slash_dest_keeps_its_name_and_creates_the_dest_0755_root() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    chmod(&e.ctx.join("a.txt"), 0o640);
    set_mtime(&e.ctx.join("a.txt"), 1_000_000);
    std::os::unix::fs::chown(e.ctx.join("a.txt"), Some(1234), Some(5678)).unwrap();
    run(&e, &req(&["a.txt"], "/dst/")).unwrap();
    let f = e.upper.join("dst/a.txt");
    assert_eq!(fs::read_to_string(&f).unwrap(), "A");
    assert_eq!(mode(&f), 0o640);
    assert_eq!(meta(&f).mtime(), 1_000_000, "mtime kept from the source");
    assert_eq!(owner(&f), (0, 0), "context files become root's");
    assert_eq!(mode(&e.upper.join("dst")), 0o755);
    assert_eq!(owner(&e.upper.join("dst")), (0, 0));
    assert_eq!(tree::names(&e.upper), ["dst", "dst/a.txt"]);
}

#[test]
fn file_to_a_new_path_takes_that_name_and_relative_dest_joins_workdir() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    run(&e, &req(&["a.txt"], "/x/b.txt")).unwrap();
    assert_eq!(fs::read_to_string(e.upper.join("x/b.txt")).unwrap(), "A");
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    let mut r = req(&["a.txt"], "sub/");
    r.workdir = "/app".into();
    run(&e, &r).unwrap();
    assert!(e.upper.join("app/sub/a.txt").is_file());
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    let mut r = req(&["a.txt"], ".");
    r.workdir = "/app".into();
    run(&e, &r).unwrap();
    assert!(
        e.upper.join("app/a.txt").is_file(),
        "`.` is the workdir as a directory"
    );
}

#[test]
fn directory_source_copies_its_contents_with_their_metadata() {
    let e = env();
    write(&e.ctx.join("dir/x"), "x");
    write(&e.ctx.join("dir/sub/y"), "y");
    chmod(&e.ctx.join("dir/sub"), 0o750);
    set_mtime(&e.ctx.join("dir/sub"), 2_000_000);
    chmod(&e.ctx.join("dir"), 0o700);
    run(&e, &req(&["dir"], "/out")).unwrap();
    assert_eq!(
        tree::names(&e.upper),
        ["out", "out/sub", "out/sub/y", "out/x"]
    );
    assert_eq!(mode(&e.upper.join("out/sub")), 0o750);
    assert_eq!(meta(&e.upper.join("out/sub")).mtime(), 2_000_000);
    // BuildKit creates the missing destination itself (0755), it does not take dir's mode.
    assert_eq!(mode(&e.upper.join("out")), 0o755);
}

/// BuildKit (unlike the classic builder and kaniko) accepts several sources, written or matched
/// by a wildcard, to a destination that is not a directory: each is copied onto it in turn and
/// the last one wins (checked with docker's BuildKit: `COPY dir/* dir/a.txt /foo` leaves `/foo`
/// holding a.txt). An existing directory takes them all.
#[test]
fn several_sources_to_a_file_destination_leave_the_last() {
    let e = env();
    write(&e.ctx.join("a"), "a");
    write(&e.ctx.join("b"), "b");
    run(&e, &req(&["a", "b"], "/file")).unwrap();
    assert_eq!(tree::names(&e.upper), ["file"]);
    assert_eq!(fs::read_to_string(e.upper.join("file")).unwrap(), "b");
    let e2 = env();
    write(&e2.ctx.join("a"), "a");
    write(&e2.ctx.join("b"), "b");
    run(&e2, &req(&["*", "a"], "/file")).unwrap();
    assert_eq!(fs::read_to_string(e2.upper.join("file")).unwrap(), "a");
    run(&e2, &req(&["*"], "/other")).unwrap();
    assert_eq!(fs::read_to_string(e2.upper.join("other")).unwrap(), "b");
    fs::create_dir(e2.parent.join("existing")).unwrap();
    run(&e2, &req(&["a", "b"], "/existing")).unwrap();
    assert!(e2.upper.join("existing/a").is_file() && e2.upper.join("existing/b").is_file());
}

#[test]
fn globs_follow_go_filepath_match_and_double_star_is_not_recursive() {
    let e = env();
    for f in [
        "a.txt",
        "b.txt",
        "c.md",
        "ab.txt",
        "d1/x.txt",
        "d2/x.txt",
        "d2/deep/x.txt",
    ] {
        write(&e.ctx.join(f), f);
    }
    run(&e, &req(&["*.txt"], "/star/")).unwrap();
    run(&e, &req(&["?.txt"], "/q/")).unwrap();
    run(&e, &req(&["[a-b].txt"], "/class/")).unwrap();
    run(&e, &req(&["**.txt"], "/dstar/")).unwrap();
    run(&e, &req(&["d*/x.txt"], "/sub/")).unwrap();
    run(&e, &req(&["d?"], "/dirs/")).unwrap();
    let l = tree::names(&e.upper);
    let under = |d: &str| -> Vec<String> {
        l.iter()
            .filter_map(|p| p.strip_prefix(&format!("{d}/")).map(String::from))
            .collect()
    };
    assert_eq!(under("star"), ["a.txt", "ab.txt", "b.txt"]);
    assert_eq!(under("q"), ["a.txt", "b.txt"]);
    assert_eq!(under("class"), ["a.txt", "b.txt"]);
    assert_eq!(under("dstar"), ["a.txt", "ab.txt", "b.txt"], "`**` is `*`");
    // Two files named x.txt land on the same name; the later match wins, as in BuildKit.
    assert_eq!(under("sub"), ["x.txt"]);
    assert_eq!(
        fs::read_to_string(e.upper.join("sub/x.txt")).unwrap(),
        "d2/x.txt"
    );
    // A matched directory copies its contents.
    assert_eq!(under("dirs"), ["deep", "deep/x.txt", "x.txt"]);
}

#[test]
fn empty_wildcard_copies_nothing_but_a_missing_path_is_an_error() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    run(&e, &req(&["*.nothing"], "/dst/")).unwrap();
    assert_eq!(
        tree::names(&e.upper),
        ["dst"],
        "the destination is still created"
    );
    let err = run(&e, &req(&["missing.txt"], "/dst/")).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }));
    let msg = err.to_string();
    assert!(msg.contains("\"/missing.txt\": not found"), "{msg}");
    assert!(msg.contains("COPY missing.txt"), "{msg}");
    let err = run(&e, &req(&["nodir/*.txt"], "/dst/")).unwrap_err();
    assert!(err.to_string().contains("\"/nodir\": not found"), "{err}");
}

#[test]
fn existing_parent_dirs_are_copied_up_with_the_parents_metadata() {
    let e = env();
    write(&e.ctx.join("tool"), "#!/bin/sh\n");
    chmod(&e.ctx.join("tool"), 0o755);
    fs::create_dir_all(e.parent.join("usr/local/bin")).unwrap();
    write(&e.parent.join("usr/local/bin/other"), "o");
    chmod(&e.parent.join("usr/local"), 0o2775);
    std::os::unix::fs::chown(e.parent.join("usr/local"), Some(0), Some(50)).unwrap();
    set_mtime(&e.parent.join("usr/local/bin"), 3_000_000);
    set_mtime(&e.parent.join("usr/local"), 3_000_001);
    set_mtime(&e.parent.join("usr"), 3_000_002);
    run(&e, &req(&["tool"], "/usr/local/bin")).unwrap();
    assert_eq!(
        tree::names(&e.upper),
        ["usr", "usr/local", "usr/local/bin", "usr/local/bin/tool"],
        "an existing directory destination receives the file; the parent's other files stay below"
    );
    assert_eq!(mode(&e.upper.join("usr/local")), 0o2775);
    assert_eq!(owner(&e.upper.join("usr/local")), (0, 50));
    assert_eq!(meta(&e.upper.join("usr/local/bin")).mtime(), 3_000_000);
    assert_eq!(meta(&e.upper.join("usr/local")).mtime(), 3_000_001);
    assert_eq!(meta(&e.upper.join("usr")).mtime(), 3_000_002);
    assert_eq!(
        fs::read_dir(&e.parent).unwrap().count(),
        1,
        "parent untouched"
    );
}

#[test]
fn destination_resolves_symlinks_in_the_parent() {
    let e = env();
    write(&e.ctx.join("a.txt"), "A");
    fs::create_dir(e.parent.join("opt")).unwrap();
    std::os::unix::fs::symlink("/opt", e.parent.join("link")).unwrap();
    std::os::unix::fs::symlink("../../opt", e.parent.join("rel")).unwrap();
    run(&e, &req(&["a.txt"], "/link/")).unwrap();
    run(&e, &req(&["a.txt"], "/rel/sub/b.txt")).unwrap();
    assert_eq!(
        tree::names(&e.upper),
        ["opt", "opt/a.txt", "opt/sub", "opt/sub/b.txt"]
    );
}

#[test]
fn chown_applies_to_everything_copied_and_to_created_dirs() {
    let e = env();
    write(&e.ctx.join("dir/f"), "f");
    write(&e.ctx.join("dir/sub/g"), "g");
    std::os::unix::fs::symlink("f", e.ctx.join("dir/l")).unwrap();
    let mut r = req(&["dir"], "/a/b/");
    r.chown = Some((1000, 1001));
    run(&e, &r).unwrap();
    for p in ["a", "a/b", "a/b/f", "a/b/sub", "a/b/sub/g", "a/b/l"] {
        assert_eq!(owner(&e.upper.join(p)), (1000, 1001), "{p}");
    }
    assert_eq!(mode(&e.upper.join("a")), 0o755);
}

#[test]
fn chmod_octal_and_symbolic_apply_to_files_and_dirs() {
    let e = env();
    write(&e.ctx.join("dir/f"), "f");
    chmod(&e.ctx.join("dir/f"), 0o600);
    fs::create_dir(e.ctx.join("dir/sub")).unwrap();
    std::os::unix::fs::symlink("f", e.ctx.join("dir/l")).unwrap();
    let mut r = req(&["dir"], "/oct/");
    r.chmod = Some("0751".into());
    run(&e, &r).unwrap();
    assert_eq!(mode(&e.upper.join("oct/f")), 0o751);
    assert_eq!(mode(&e.upper.join("oct/sub")), 0o751);
    assert_eq!(
        mode(&e.upper.join("oct")),
        0o755,
        "the created dest keeps 0755"
    );
    let mut r = req(&["dir"], "/sym/");
    r.chmod = Some("go+rX".into());
    run(&e, &r).unwrap();
    assert_eq!(mode(&e.upper.join("sym/f")), 0o644);
    assert_eq!(mode(&e.upper.join("sym/sub")), 0o755);
    assert!(meta(&e.upper.join("sym/l")).file_type().is_symlink());
    let mut r = req(&["dir"], "/bad/");
    r.chmod = Some("99".into());
    assert!(matches!(run(&e, &r), Err(CopyError::BadChmod { .. })));
}

#[test]
fn from_copies_keep_owners_and_everything_else() {
    let e = env();
    // The stage's tree is the source here.
    let s = &e.ctx;
    write(&s.join("app/bin/tool"), "tool");
    std::os::unix::fs::chown(s.join("app/bin/tool"), Some(7), Some(8)).unwrap();
    chmod(&s.join("app/bin/tool"), 0o4755);
    fs::hard_link(s.join("app/bin/tool"), s.join("app/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("tool", s.join("app/bin/ln")).unwrap();
    std::os::unix::fs::lchown(s.join("app/bin/ln"), Some(9), Some(9)).unwrap();
    write(&s.join("app/cap"), "cap");
    // A v2 file capability (cap_net_bind_service, permitted).
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let cap_ok = rustix::fs::lsetxattr(
        s.join("app/cap"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();
    set_mtime(&s.join("app/bin/ln"), 4_000_000);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        s.join("app/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let mut r = req(&["/app"], "/dst");
    r.is_context = false;
    let src = DirView::new(s);
    copy(&r, &src, &DirView::new(&e.parent), &e.upper).unwrap();
    let u = &e.upper;
    assert_eq!(owner(&u.join("dst/bin/tool")), (7, 8));
    assert_eq!(
        mode(&u.join("dst/bin/tool")),
        0o4755,
        "setuid kept after chown"
    );
    assert_eq!(
        meta(&u.join("dst/bin/tool")).ino(),
        meta(&u.join("dst/bin/tool2")).ino(),
        "hard links stay hard links"
    );
    assert_eq!(
        fs::read_link(u.join("dst/bin/ln")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(owner(&u.join("dst/bin/ln")), (9, 9));
    assert_eq!(meta(&u.join("dst/bin/ln")).mtime(), 4_000_000);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &meta(&u.join("dst/fifo")).file_type()
    ));
    if cap_ok {
        let mut buf = [0u8; 64];
        let n = rustix::fs::lgetxattr(u.join("dst/cap"), "security.capability", &mut buf).unwrap();
        assert_eq!(&buf[..n], &cap);
    } else {
        eprintln!("skipping the capability check: this filesystem refused security.capability");
    }
}

#[test]
fn a_source_symlink_is_followed_inside_the_context_children_are_not() {
    let e = env();
    write(&e.ctx.join("real.txt"), "R");
    std::os::unix::fs::symlink("real.txt", e.ctx.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", e.ctx.join("escape")).unwrap();
    run(&e, &req(&["link.txt"], "/d/")).unwrap();
    let p = e.upper.join("d/link.txt");
    assert!(meta(&p).is_file());
    assert_eq!(fs::read_to_string(p).unwrap(), "R");
    // An absolute link resolves inside the context, where /etc/passwd does not exist.
    let err = run(&e, &req(&["escape"], "/d/")).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }), "{err}");
}

#[test]
fn parents_keeps_the_path_below_the_root_or_the_pivot() {
    let e = env();
    write(&e.ctx.join("a/b/c.txt"), "c");
    write(&e.ctx.join("a/b/d.txt"), "d");
    write(&e.ctx.join("x/b/c.txt"), "xc");
    chmod(&e.ctx.join("a/b"), 0o750);
    let mut r = req(&["a/b/c.txt"], "/dst/");
    r.parents = true;
    run(&e, &r).unwrap();
    assert!(e.upper.join("dst/a/b/c.txt").is_file());
    assert_eq!(
        mode(&e.upper.join("dst/a/b")),
        0o750,
        "parent dirs copied from the source"
    );
    let mut r = req(&["a/./b/d.txt"], "/piv/");
    r.parents = true;
    run(&e, &r).unwrap();
    assert!(e.upper.join("piv/b/d.txt").is_file());
    let mut r = req(&["*/b/c.txt"], "/glob/");
    r.parents = true;
    run(&e, &r).unwrap();
    assert_eq!(
        fs::read_to_string(e.upper.join("glob/x/b/c.txt")).unwrap(),
        "xc"
    );
    assert!(e.upper.join("glob/a/b/c.txt").is_file());
}

#[test]
fn exclude_patterns_drop_entries_and_wildcard_matches() {
    let e = env();
    for f in [
        "dir/a.txt",
        "dir/b.log",
        "dir/sub/c.log",
        "dir/sub/d.txt",
        "top.log",
        "top.txt",
    ] {
        write(&e.ctx.join(f), f);
    }
    let mut r = req(&["dir"], "/out/");
    r.excludes = vec!["*.log".into(), "sub/c*".into()];
    run(&e, &r).unwrap();
    let mut r = req(&["top.*"], "/top/");
    r.excludes = vec!["*.log".into()];
    run(&e, &r).unwrap();
    assert_eq!(
        tree::names(&e.upper),
        [
            "out",
            "out/a.txt",
            "out/sub",
            "out/sub/d.txt",
            "top",
            "top/top.txt"
        ]
    );
}

#[test]
fn dockerignored_files_are_invisible_even_through_globs() {
    let e = env();
    write(
        &e.ctx.join(".dockerignore"),
        "secret*\nlogs/\n!logs/keep.log\n",
    );
    write(&e.ctx.join("secret.key"), "k");
    write(&e.ctx.join("public.txt"), "p");
    write(&e.ctx.join("logs/a.log"), "a");
    write(&e.ctx.join("logs/keep.log"), "keep");
    run(&e, &req(&["*"], "/all/")).unwrap();
    let l = tree::names(&e.upper);
    assert!(l.contains(&"all/public.txt".to_string()));
    assert!(
        l.contains(&"all/keep.log".to_string()),
        "a re-included file of an ignored directory is visible: {l:?}"
    );
    assert!(!l.iter().any(|p| p.contains("secret")), "{l:?}");
    assert!(!l.iter().any(|p| p.ends_with("a.log")), "{l:?}");
    let err = run(&e, &req(&["secret.key"], "/x/")).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }), "{err}");
}

#[test]
fn a_context_source_may_not_leave_the_context() {
    let e = env();
    let err = run(&e, &req(&["../x"], "/d/")).unwrap_err();
    assert!(matches!(err, CopyError::OutsideContext { .. }));
    assert_eq!(
        err.to_string(),
        "COPY ../x: forbidden path outside the build context"
    );
    // `..` that stays inside is fine.
    write(&e.ctx.join("a"), "a");
    run(&e, &req(&["sub/../a"], "/d/")).unwrap();
    assert!(e.upper.join("d/a").is_file());
}

#[test]
fn file_over_dir_and_dir_over_file_fail_like_buildkit() {
    let e = env();
    write(&e.ctx.join("dir/x"), "x");
    write(&e.ctx.join("name"), "n");
    fs::create_dir_all(e.parent.join("d/name")).unwrap();
    write(&e.parent.join("file"), "f");
    let err = run(&e, &req(&["name"], "/d/")).unwrap_err();
    assert!(matches!(err, CopyError::ReplaceDir { .. }), "{err}");
    let err = run(&e, &req(&["dir"], "/file")).unwrap_err();
    assert!(matches!(err, CopyError::NotADirectory { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("cannot copy to non-directory: /file"));
}

fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(11);
    h.set_gid(12);
    h.set_mtime(5_000_000);
    h.set_size(0);
    b.append_data(&mut h, "pkg/", &[][..]).unwrap();
    for (name, data, mode) in [("pkg/bin/run", "RUN", 0o755), ("pkg/.wh.gone", "", 0o644)] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_uid(11);
        h.set_gid(12);
        h.set_mtime(5_000_001);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(5_000_002);
    h.set_mode(0o777);
    b.append_link(&mut h, "pkg/ln", "bin/run").unwrap();
    b.into_inner().unwrap()
}

#[test]
fn add_unpacks_local_archives_detected_by_content() {
    let plain = tar_bytes();
    let gz = {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(&plain).unwrap();
        w.finish().unwrap()
    };
    let bz = {
        let mut w = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        w.write_all(&plain).unwrap();
        w.finish().unwrap()
    };
    let xz = {
        let mut w = xz2::write::XzEncoder::new(Vec::new(), 6);
        w.write_all(&plain).unwrap();
        w.finish().unwrap()
    };
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for (name, bytes) in [
        ("p.tar", &plain),
        ("g.bin", &gz),
        ("b.data", &bz),
        ("x", &xz),
        ("z.tzst", &zst),
    ] {
        let e = env();
        fs::write(e.ctx.join(name), bytes).unwrap();
        fs::create_dir(e.parent.join("opt")).unwrap();
        write(&e.parent.join("opt/pkg/old"), "old");
        let mut r = req(&[name], "/opt");
        r.add = true;
        run(&e, &r).unwrap_or_else(|err| panic!("{name}: {err}"));
        let u = &e.upper;
        assert_eq!(
            fs::read_to_string(u.join("opt/pkg/bin/run")).unwrap(),
            "RUN",
            "{name}"
        );
        assert_eq!(mode(&u.join("opt/pkg/bin/run")), 0o755);
        assert_eq!(
            owner(&u.join("opt/pkg/bin/run")),
            (11, 12),
            "owners from the archive"
        );
        assert_eq!(mode(&u.join("opt/pkg")), 0o750);
        assert_eq!(meta(&u.join("opt/pkg")).mtime(), 5_000_000);
        assert!(
            meta(&u.join("opt/pkg/.wh.gone")).is_file(),
            "whiteout names are plain files"
        );
        assert_eq!(
            fs::read_link(u.join("opt/pkg/ln")).unwrap(),
            Path::new("bin/run")
        );
        assert!(!u.join(format!("opt/{name}")).exists());
    }
    // --chown overrides the archive's owners.
    let e = env();
    fs::write(e.ctx.join("a.tar"), &plain).unwrap();
    let mut r = req(&["a.tar"], "/x/");
    r.add = true;
    r.chown = Some((3, 4));
    run(&e, &r).unwrap();
    assert_eq!(owner(&e.upper.join("x/pkg/bin/run")), (3, 4));
    assert_eq!(owner(&e.upper.join("x")), (3, 4));
}

#[test]
fn add_copies_non_archives_and_compressed_non_tars_as_they_are() {
    let e = env();
    let gz = {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(b"just text, not a tar").unwrap();
        w.finish().unwrap()
    };
    fs::write(e.ctx.join("notes.gz"), &gz).unwrap();
    write(&e.ctx.join("plain.tar"), "not really a tar");
    let mut r = req(&["notes.gz", "plain.tar"], "/d/");
    r.add = true;
    run(&e, &r).unwrap();
    assert_eq!(fs::read(e.upper.join("d/notes.gz")).unwrap(), gz);
    assert_eq!(
        fs::read_to_string(e.upper.join("d/plain.tar")).unwrap(),
        "not really a tar"
    );
    // COPY never unpacks.
    let e = env();
    fs::write(e.ctx.join("a.tar"), tar_bytes()).unwrap();
    run(&e, &req(&["a.tar"], "/d/")).unwrap();
    assert!(e.upper.join("d/a.tar").is_file());
}

/// Serves `body` for `/files/data.bin` (with a Last-Modified), 404 for the rest, `count` requests.
fn serve(body: &'static [u8], count: usize) -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        for _ in 0..count {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            if line.starts_with("GET /files/data.bin ") {
                write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                s.write_all(body).unwrap();
            } else {
                s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
            }
        }
    });
    (format!("http://{addr}"), h)
}

#[test]
fn add_url_downloads_names_and_verifies() {
    const BODY: &[u8] = b"downloaded content\n";
    let (base, server) = serve(BODY, 4);
    let e = env();
    let url = format!("{base}/files/data.bin");
    let mut r = req(&[&url], "/dl/");
    r.add = true;
    run(&e, &r).unwrap();
    let f = e.upper.join("dl/data.bin");
    assert_eq!(fs::read(&f).unwrap(), BODY);
    assert_eq!(mode(&f), 0o600);
    assert_eq!(meta(&f).mtime(), 784_111_777, "mtime from Last-Modified");
    assert_eq!(owner(&f), (0, 0));

    let good = format!("sha256:{}", kiln::blob::Digest::of(BODY).hex());
    let mut r = req(&[&url], "/ok/renamed");
    r.add = true;
    r.checksum = Some(good);
    run(&e, &r).unwrap();
    assert_eq!(fs::read(e.upper.join("ok/renamed")).unwrap(), BODY);

    let mut r = req(&[&url], "/bad/");
    r.add = true;
    r.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    let err = run(&e, &r).unwrap_err();
    assert!(matches!(err, CopyError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"));
    assert!(!e.upper.join("bad").exists() || tree::names(&e.upper.join("bad")).is_empty());

    let mut r = req(&[&format!("{base}/nope")], "/x/");
    r.add = true;
    let err = run(&e, &r).unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    server.join().unwrap();

    let mut r = req(&[&url], "/c/");
    r.add = false;
    assert!(run(&e, &r)
        .unwrap_err()
        .to_string()
        .contains("can't be a URL for COPY"));
    let mut r = req(&["local"], "/c/");
    r.add = true;
    r.checksum = Some("sha256:00".into());
    assert!(matches!(run(&e, &r), Err(CopyError::Invalid { .. })));
}

#[test]
fn heredoc_copies_make_files_0644() {
    let e = env();
    let mut r = req(&[], "/etc/app/");
    r.heredocs = vec![
        ("conf".into(), "a=1\n".into()),
        ("other".into(), "b\n".into()),
    ];
    run(&e, &r).unwrap();
    let f = e.upper.join("etc/app/conf");
    assert_eq!(fs::read_to_string(&f).unwrap(), "a=1\n");
    assert_eq!(mode(&f), 0o644);
    let mut r = req(&[], "/single");
    r.heredocs = vec![("EOF".into(), "x".into())];
    r.chmod = Some("755".into());
    run(&e, &r).unwrap();
    assert_eq!(fs::read_to_string(e.upper.join("single")).unwrap(), "x");
    assert_eq!(mode(&e.upper.join("single")), 0o755);
}

#[test]
fn inputs_digest_follows_content_and_mode_not_mtime() {
    let e = env();
    write(&e.ctx.join("dir/a"), "a");
    write(&e.ctx.join("dir/b"), "b");
    let r = req(&["dir"], "/d/");
    let d = |e: &Env| inputs_digest(&r, &ContextView::open(&e.ctx).unwrap()).unwrap();
    let first = d(&e);
    set_mtime(&e.ctx.join("dir/a"), 12345);
    assert_eq!(d(&e), first, "mtime does not count");
    std::os::unix::fs::chown(e.ctx.join("dir/a"), Some(42), Some(42)).unwrap();
    assert_eq!(d(&e), first, "context owners do not count");
    chmod(&e.ctx.join("dir/a"), 0o600);
    let moded = d(&e);
    assert_ne!(moded, first, "mode counts");
    write(&e.ctx.join("dir/a"), "A");
    chmod(&e.ctx.join("dir/a"), 0o600);
    assert_ne!(d(&e), moded, "content counts");
    // For --from sources owners count.
    let mut rf = req(&["/dir"], "/d/");
    rf.is_context = false;
    let v = DirView::new(&e.ctx);
    let before = inputs_digest(&rf, &v).unwrap();
    std::os::unix::fs::chown(e.ctx.join("dir/a"), Some(43), Some(43)).unwrap();
    assert_ne!(inputs_digest(&rf, &v).unwrap(), before);
    // Excluded files do not count.
    let mut rx = req(&["dir"], "/d/");
    rx.excludes = vec!["b".into()];
    let x1 = inputs_digest(&rx, &ContextView::open(&e.ctx).unwrap()).unwrap();
    write(&e.ctx.join("dir/b"), "changed");
    let x2 = inputs_digest(&rx, &ContextView::open(&e.ctx).unwrap()).unwrap();
    assert_eq!(x1, x2);
    assert!(matches!(
        inputs_digest(&req(&["nope"], "/"), &ContextView::open(&e.ctx).unwrap()),
        Err(CopyError::NotFound { .. })
    ));
}

#[test]
fn workdir_creates_missing_components_only() {
    let e = env();
    fs::create_dir_all(e.parent.join("srv")).unwrap();
    set_mtime(&e.parent.join("srv"), 6_000_000);
    std::os::unix::fs::symlink("/srv", e.parent.join("app")).unwrap();
    assert!(!mkdir_workdir(&DirView::new(&e.parent), &e.upper, "/srv", (0, 0)).unwrap());
    assert!(tree::names(&e.upper).is_empty());
    assert!(mkdir_workdir(&DirView::new(&e.parent), &e.upper, "/app/x/y", (1000, 1000)).unwrap());
    assert_eq!(tree::names(&e.upper), ["srv", "srv/x", "srv/x/y"]);
    assert_eq!(owner(&e.upper.join("srv/x/y")), (1000, 1000));
    // A created parent is the owner's too, as BuildKit's Mkdir with parents makes it.
    assert_eq!(owner(&e.upper.join("srv/x")), (1000, 1000));
    assert_eq!(mode(&e.upper.join("srv/x")), 0o755);
    assert_eq!(meta(&e.upper.join("srv")).mtime(), 6_000_000);
    write(&e.parent.join("file"), "f");
    assert!(matches!(
        mkdir_workdir(&DirView::new(&e.parent), &e.upper, "/file/x", (0, 0)),
        Err(CopyError::NotADirectory { .. })
    ));
}

/// One `stat` line per path: type, mode, owner, size, and the mtime unless `skip_mtime`.
fn describe(root: &Path, paths: &[&str], skip_mtime: &[&str]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            let m = meta(&root.join(p));
            let t = if m.is_dir() {
                "d"
            } else if m.file_type().is_symlink() {
                "l"
            } else {
                "f"
            };
            let mt = if skip_mtime.contains(p) {
                String::new()
            } else {
                m.mtime().to_string()
            };
            format!(
                "{p} {t} {:o} {}:{} {} {mt}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.len() }
            )
        })
        .collect()
}

/// The same COPY steps built by `buildah bud --isolation chroot` (on a one-layer busybox image
/// made with `buildah from scratch` + `buildah copy`) and by kiln give the same files, modes,
/// owners and mtimes. Known differences, documented in `kiln::copy`: a copied-up directory
/// keeps the parent's mtime with kiln (buildah records the time of the copy), and buildah
/// fails a wildcard that matches nothing where BuildKit and kiln copy nothing.
#[test]
fn buildah_peer_agrees_on_copy_results() {
    let buildah = std::process::Command::new("buildah")
        .arg("--version")
        .output();
    if !buildah.is_ok_and(|o| o.status.success()) {
        privilege::skip("buildah is not installed", privilege::Demand::Tool);
        return;
    }
    let e = env();
    let ctx = &e.ctx;
    write(&ctx.join("a.txt"), "A\n");
    chmod(&ctx.join("a.txt"), 0o640);
    write(&ctx.join("dir/x"), "x\n");
    write(&ctx.join("dir/sub/y"), "y\n");
    chmod(&ctx.join("dir/sub"), 0o750);
    std::os::unix::fs::symlink("x", ctx.join("dir/lnk")).unwrap();
    set_mtime(&ctx.join("dir/x"), 1_500_000_000);
    // Whole seconds everywhere: kiln keeps a source's mtime to the second and buildah rounds a
    // fractional one, so "now" with nanoseconds compared unequal about half the time.
    set_mtime(&ctx.join("a.txt"), 1_500_000_002);
    set_mtime(&ctx.join("dir/sub/y"), 1_500_000_003);
    set_mtime(&ctx.join("dir/lnk"), 1_500_000_004);
    set_mtime(&ctx.join("dir/sub"), 1_500_000_001);
    let steps: [(&str, CopyRequest); 4] = [
        ("COPY a.txt /dst/", req(&["a.txt"], "/dst/")),
        ("COPY dir /out", req(&["dir"], "/out")),
        ("COPY --chown=1000:1001 --chmod=751 dir /ch/", {
            let mut r = req(&["dir"], "/ch/");
            r.chown = Some((1000, 1001));
            r.chmod = Some("751".into());
            r
        }),
        ("COPY a.txt /bin/", req(&["a.txt"], "/bin/")),
    ];
    let mut dockerfile = "FROM kiln-copy-peer-base\n".to_owned();
    for (line, _) in &steps {
        dockerfile.push_str(line);
        dockerfile.push('\n');
    }
    write(&e.parent.join("bin/busybox"), "not really busybox");
    chmod(&e.parent.join("bin/busybox"), 0o755);
    let t = e._t.path();
    let b = |args: &[&str]| -> String {
        let out = std::process::Command::new("buildah")
            .arg("--root")
            .arg(t.join("broot"))
            .arg("--runroot")
            .arg(t.join("brun"))
            .args(args)
            .env("STORAGE_DRIVER", "vfs")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let c = b(&["from", "scratch"]);
    let busybox = e.parent.join("bin/busybox");
    b(&["copy", &c, busybox.to_str().unwrap(), "/bin/busybox"]);
    b(&["commit", "-q", &c, "kiln-copy-peer-base"]);
    let df = t.join("Dockerfile");
    fs::write(&df, dockerfile).unwrap();
    b(&[
        "bud",
        "--isolation",
        "chroot",
        "-q",
        "-t",
        "kiln-copy-peer",
        "-f",
        df.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    let c2 = b(&["from", "kiln-copy-peer"]);
    let mnt = PathBuf::from(b(&["mount", &c2]));

    for (_, r) in &steps {
        run(&e, r).unwrap();
    }
    let paths = [
        "dst",
        "dst/a.txt",
        "out",
        "out/x",
        "out/lnk",
        "out/sub",
        "out/sub/y",
        "ch",
        "ch/x",
        "ch/sub",
        "ch/sub/y",
        "ch/lnk",
        "bin/a.txt",
    ];
    // Directories the steps created or filled get the time of the copy in both.
    let now_dirs = ["dst", "out", "ch"];
    let ours = describe(&e.upper, &paths, &now_dirs);
    let theirs = describe(&mnt, &paths, &now_dirs);
    b(&["umount", &c2]);
    b(&["rm", "-a"]);
    b(&["rmi", "-a", "-f"]);
    assert_eq!(ours, theirs);
}

#[test]
fn add_archives_cannot_write_outside_the_image() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_link(&mut h, "esc", "/etc").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_data(&mut h, "esc/kiln-copy-test", &b"bad"[..])
        .unwrap();
    let through_link = b.into_inner().unwrap();
    let e = env();
    fs::write(e.ctx.join("a.tar"), &through_link).unwrap();
    let mut r = req(&["a.tar"], "/x/");
    r.add = true;
    run(&e, &r).unwrap();
    // The link resolves inside the image: the file lands in the image's /etc.
    assert!(e.upper.join("etc/kiln-copy-test").is_file());
    assert!(!Path::new("/etc/kiln-copy-test").exists());

    let mut raw = tar::Header::new_gnu();
    raw.set_size(3);
    raw.set_mode(0o644);
    raw.set_uid(0);
    raw.set_gid(0);
    raw.set_mtime(1);
    // `set_path` refuses `..`, so the name is written into the header directly.
    raw.as_old_mut().name[..13].copy_from_slice(b"../../../evil");
    raw.set_cksum();
    let mut data = raw.as_bytes().to_vec();
    data.extend_from_slice(b"bad");
    data.resize(512 * 2, 0);
    data.extend_from_slice(&[0u8; 1024]);
    let e = env();
    fs::write(e.ctx.join("up.tar"), &data).unwrap();
    let mut r = req(&["up.tar"], "/x/");
    r.add = true;
    let err = run(&e, &r).unwrap_err();
    assert!(matches!(err, CopyError::Archive { .. }), "{err}");
    assert!(err.to_string().contains("leaves the destination"), "{err}");
}

/// A sparse file in the context is copied with its holes (Docker's and BuildKit's copies keep
/// them): 64 MiB long, a few blocks on disk, the same bytes.
#[test]
fn a_sparse_file_stays_sparse() {
    let e = env();
    let mut f = fs::File::create(e.ctx.join("disk.img")).unwrap();
    std::io::Write::write_all(&mut f, b"boot").unwrap();
    f.set_len(64 << 20).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(32 << 20)).unwrap();
    std::io::Write::write_all(&mut f, b"middle").unwrap();
    drop(f);
    run(&e, &req(&["disk.img"], "/disk.img")).unwrap();
    let copied = e.upper.join("disk.img");
    let m = meta(&copied);
    assert_eq!(m.len(), 64 << 20);
    assert!(
        m.blocks() * 512 <= 1 << 20,
        "{} bytes allocated",
        m.blocks() * 512
    );
    assert!(fs::read(&copied).unwrap() == fs::read(e.ctx.join("disk.img")).unwrap());
}
