//! `kiln build` and other local users: kiln run as an unprivileged user (COPY, WORKDIR and RUN
//! give the image's owners, overlay is used where it can be mounted), and kiln run as root
//! keeping what it extracts away from other users.

use kiln_testkit::kiln_output;
use kiln_testkit::layout;
use kiln_testkit::need_root;
use kiln_testkit::privilege;
use kiln_testkit::registry as support;
use kiln_testkit::tree;

use kiln_output::{ok, text};
use privilege::BUSYBOX;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The unprivileged user kiln runs as (a uid without `/etc/subuid` ranges is enough).
const USER: u32 = 1000;
/// Another local user, who must not reach kiln's cache.
const NOBODY: u32 = 65534;

/// `setpriv` switching to `uid` (and the same gid) with no supplementary groups. Root's
/// capabilities last until the program it starts is executed.
fn as_user(uid: u32) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
    ]);
    c
}

/// A work directory every user may enter (a temporary directory is private), owned by `uid`,
/// holding a build context with `dockerfile`, the host's busybox and two small files.
fn workspace(uid: u32, dockerfile: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    fs::copy(BUSYBOX, ctx.join("busybox")).unwrap();
    fs::set_permissions(ctx.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["a.txt", "b.txt"] {
        fs::write(ctx.join(f), f).unwrap();
        fs::set_permissions(ctx.join(f), fs::Permissions::from_mode(0o640)).unwrap();
    }
    // The test binary's directory may be closed to other users: they run a copy.
    fs::copy(env!("CARGO_BIN_EXE_kiln"), t.path().join("kiln")).unwrap();
    for p in tree::paths(t.path()) {
        std::os::unix::fs::lchown(t.path().join(p), Some(uid), Some(uid)).unwrap();
    }
    std::os::unix::fs::lchown(t.path(), Some(uid), Some(uid)).unwrap();
    t
}

/// `kiln build` of the workspace's context by `uid` (as the test, root, when `None`), with its
/// cache at `cache`, the image written as an OCI layout to `<work>/layout`, and `extra` flags.
fn build(work: &Path, uid: Option<u32>, cache: &Path, extra: &[&str]) -> Output {
    let kiln = work.join("kiln");
    let mut c = match uid {
        Some(uid) => {
            let mut c = as_user(uid);
            c.arg(&kiln);
            c
        }
        None => Command::new(&kiln),
    };
    c.arg("build")
        .arg("--context")
        .arg(work.join("ctx"))
        .arg("--cache-dir")
        .arg(cache)
        .arg("--oci-layout-path")
        .arg(work.join("layout"))
        .args(["--progress", "plain"])
        .args(extra)
        .env("HOME", work)
        .env_remove("DOCKER_CONFIG")
        .env_remove("KILN_CACHE_DIR");
    // The copy of kiln was just written: a process another test thread forked while its
    // write descriptor was open holds it until that child execs, and exec then fails with
    // ETXTBSY. The descriptor is gone within moments; try again, as cargo does.
    // Through setpriv the same failure is setpriv's own message and exit code.
    let busy = |r: &std::io::Result<Output>| match r {
        Err(e) => e.kind() == std::io::ErrorKind::ExecutableFileBusy,
        Ok(o) => String::from_utf8_lossy(&o.stderr).contains("Text file busy"),
    };
    for _ in 0..50 {
        let r = c.output();
        if !busy(&r) {
            return r.expect("run kiln");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.output().expect("run kiln")
}

/// The layout's image extracted (as root, so owners are the layers' own) into `<work>/rootfs`.
fn rootfs(work: &Path) -> PathBuf {
    let root = work.join("rootfs");
    layout::unpack_layout(&work.join("layout"), &root);
    root
}

/// COPY, WORKDIR and RUN by an unprivileged kiln: files root owns in the image come out root's
/// (not the user's), `--chown` gives its owner, modes stay, and no bookkeeping of kiln's
/// leaks into a layer.
const UNPRIVILEGED_DOCKERFILE: &str = "FROM scratch\nCOPY busybox /bin/busybox\n\
     WORKDIR /app\nCOPY a.txt ./\nCOPY --chown=2000:3000 b.txt sub/\n\
     RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo ran > /app/run.txt\"]\n";

#[test]
fn an_unprivileged_build_copies_with_the_images_owners() {
    need_root!();
    let t = workspace(USER, UNPRIVILEGED_DOCKERFILE);
    let o = build(
        t.path(),
        Some(USER),
        &t.path().join("cache"),
        &["--no-push"],
    );
    if text(&o.stderr).contains("creating the sandbox's namespaces") {
        eprintln!("skipped: user namespaces are not available to unprivileged users here");
        return;
    }
    ok(&o);
    let root = rootfs(t.path());
    let owner_mode = |p: &str| {
        let m = fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner_mode("bin/busybox"), (0, 0, 0o755));
    assert_eq!(owner_mode("app"), (0, 0, 0o755), "WORKDIR");
    assert_eq!(owner_mode("app/a.txt"), (0, 0, 0o640));
    assert_eq!(
        owner_mode("app/sub"),
        (2000, 3000, 0o755),
        "--chown's new dir"
    );
    assert_eq!(owner_mode("app/sub/b.txt"), (2000, 3000, 0o640), "--chown");
    assert_eq!(owner_mode("app/run.txt").0, 0, "RUN's file is root's");
    assert_eq!(
        fs::read_to_string(root.join("app/run.txt")).unwrap(),
        "ran\n"
    );
    for p in tree::paths(&root) {
        let x = tree::xattrs(&root.join(&p));
        assert!(x.is_empty(), "{}: {x:?}", p.display());
    }
    // Read in the layers themselves: extraction drops kiln's owner record, so only the tar
    // shows whether one leaked.
    let keys = layout::pax_keys(&t.path().join("layout"));
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(kiln::layer::owners::OWNER_XATTR)),
        "{keys:?}"
    );
}

/// A base image's owners survive an unprivileged build, which cannot give them to the files
/// it extracts: a directory COPY writes into keeps its owner, and so does a file copied from
/// the base.
#[test]
fn an_unprivileged_build_keeps_the_base_images_owners() {
    need_root!();
    let reg = support::Registry::plain();
    let base = format!("{}/base:1", reg.addr);
    let b = workspace(
        0,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY --chown=1000:1001 a.txt /home/app/f\n",
    );
    let flags = ["--insecure-registry", &reg.addr];
    ok(&build(
        b.path(),
        None,
        &b.path().join("cache"),
        &[&flags[..], &["--destination", &base]].concat(),
    ));
    let t = workspace(
        USER,
        &format!(
            "FROM {base} AS base\nFROM {base}\nCOPY b.txt /home/app/\n\
             COPY --from=base /home/app/f /copied\n"
        ),
    );
    let o = build(
        t.path(),
        Some(USER),
        &t.path().join("cache"),
        &[&flags[..], &["--no-push"]].concat(),
    );
    ok(&o);
    let root = rootfs(t.path());
    let owner = |p: &str| {
        let m = fs::symlink_metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        (m.uid(), m.gid())
    };
    assert_eq!(owner("home/app"), (1000, 1001), "the base's directory");
    assert_eq!(owner("home/app/f"), (1000, 1001));
    assert_eq!(owner("home/app/b.txt"), (0, 0));
    assert_eq!(owner("copied"), (1000, 1001), "COPY --from keeps the owner");
}

/// Overlay needs no root (a user namespace and `userxattr`): where the kernel allows that
/// mount, an unprivileged build gets overlay, not the tree-diff fallback.
#[test]
fn an_unprivileged_build_uses_overlay() {
    need_root!();
    let t = workspace(USER, UNPRIVILEGED_DOCKERFILE);
    let d = t.path().join("probe");
    for sub in ["l", "u", "w", "m"] {
        fs::create_dir_all(d.join(sub)).unwrap();
        std::os::unix::fs::chown(d.join(sub), Some(USER), Some(USER)).unwrap();
    }
    let p = |s: &str| d.join(s).display().to_string();
    let mounts = as_user(USER)
        .args(["unshare", "--user", "--map-root-user", "--mount", "--"])
        .args(["mount", "-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            p("l"),
            p("u"),
            p("w")
        ))
        .arg(p("m"))
        .output()
        .unwrap();
    if !mounts.status.success() {
        eprintln!(
            "skipped: this kernel refuses unprivileged overlay: {}",
            text(&mounts.stderr)
        );
        return;
    }
    let o = build(
        t.path(),
        Some(USER),
        &t.path().join("cache"),
        &["--no-push"],
    );
    ok(&o);
    let err = text(&o.stderr);
    assert!(
        !err.contains("overlay cannot be mounted here"),
        "fell back to the tree diff:\n{err}"
    );
}

/// A setuid-root program a RUN step leaves in kiln's cache (extracted layers, adopted upper
/// directories) must not run as root for another local user: the cache directory is 0700,
/// created so or tightened from a looser mode with a note in the log.
#[test]
fn another_user_cannot_run_a_setuid_file_from_the_cache() {
    need_root!();
    let t = workspace(
        0,
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cp /bin/busybox /x && \
         /bin/busybox chmod 4755 /x\"]\n",
    );
    let cache = t.path().join("cache");
    fs::create_dir(&cache).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).unwrap();
    let o = build(t.path(), None, &cache, &["--no-push"]);
    ok(&o);
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "cache directory {} was mode 0755, now 0700",
            cache.display()
        )),
        "the log says the cache was tightened:\n{err}"
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&cache), 0o700);
    let planted: Vec<PathBuf> = tree::paths(&cache)
        .into_iter()
        .map(|p| cache.join(p))
        .filter(|p| p.file_name().is_some_and(|n| n == "x"))
        .collect();
    assert!(!planted.is_empty(), "the RUN step's layer is in the cache");
    for x in &planted {
        let m = fs::symlink_metadata(x).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o4755), "{}", x.display());
        // Through a shell: setpriv keeps root's capabilities until its own exec, so it would
        // reach any path.
        let run = as_user(NOBODY)
            .args(["/bin/sh", "-c", "exec \"$0\" id -u"])
            .arg(x)
            .output()
            .unwrap();
        assert!(
            !run.status.success() && text(&run.stderr).contains("Permission denied"),
            "{} ran for uid {NOBODY}: {}{}",
            x.display(),
            text(&run.stdout),
            text(&run.stderr)
        );
    }
    let fresh = t.path().join("fresh/cache");
    let o = build(t.path(), None, &fresh, &["--no-push"]);
    ok(&o);
    assert_eq!(mode(&fresh), 0o700, "a new cache directory is private");
    assert!(!text(&o.stderr).contains("was mode"));
}

/// RUN mounts by an unprivileged kiln: a cache mount and a secret mount are made without the
/// chown only root may do (they are the user's, root inside the step's user namespace).
#[test]
fn an_unprivileged_build_mounts_a_cache_and_a_secret() {
    need_root!();
    let t = workspace(
        USER,
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN --mount=type=cache,target=/cache --mount=type=secret,id=tok \
         [\"/bin/busybox\", \"sh\", \"-c\", \
         \"/bin/busybox cat /run/secrets/tok > /cache/c && /bin/busybox wc -c < /cache/c > /got\"]\n",
    );
    let secret = t.path().join("tok");
    fs::write(&secret, "s3cret").unwrap();
    std::os::unix::fs::lchown(&secret, Some(USER), Some(USER)).unwrap();
    let o = build(
        t.path(),
        Some(USER),
        &t.path().join("cache"),
        &[
            "--no-push",
            "--secret",
            &format!("id=tok,src={}", secret.display()),
        ],
    );
    if text(&o.stderr).contains("creating the sandbox's namespaces") {
        eprintln!("skipped: user namespaces are not available to unprivileged users here");
        return;
    }
    ok(&o);
    let root = rootfs(t.path());
    assert_eq!(fs::read_to_string(root.join("got")).unwrap().trim(), "6");
    assert!(
        !root.join("run/secrets/tok").exists(),
        "the secret is in no layer"
    );
    assert!(
        !root.join("cache/c").exists(),
        "the cache mount is in no layer"
    );
}
