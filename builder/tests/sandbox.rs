//! The sandbox for real (as root): a busybox root in an overlay lower directory, processes run
//! in it, and what they see and leave behind in the upper directory.

use kiln_testkit::need_root;
use kiln_testkit::privilege;

use kiln::sandbox::{
    self, BindMount, ExitKind, Isolation, Network, RootFs, RunOutcome, RunSpec, SandboxError,
};
use privilege::BUSYBOX;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Fills `dir` with a busybox root: /bin applets, /etc/passwd and /etc/group (user `app`
/// 1000:1000 in `somegroup` 2000), /data with a file and a directory to delete. No /proc,
/// /dev, /sys, resolv.conf or hosts, so the tests see that none of them lands in a layer.
fn busybox_root(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    for d in ["etc", "root", "tmp", "home/app", "data/dir"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nsomegroup:x:2000:app\n",
    )
    .unwrap();
    fs::write(dir.join("data/old.txt"), "old").unwrap();
    fs::write(dir.join("data/dir/a"), "a").unwrap();
    fs::write(dir.join("data/dir/b"), "b").unwrap();
}

/// A test's directories: a busybox lower layer, an empty upper and work directory.
struct Root {
    tmp: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let tmp = tempfile::tempdir().unwrap();
        busybox_root(&tmp.path().join("lower"));
        for d in ["upper", "work"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
        }
        Root { tmp }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn spec(&self, script: &str) -> RunSpec {
        spec_for(
            RootFs::Overlay {
                lower: vec![self.path("lower")],
                upper: self.path("upper"),
                work: self.path("work"),
            },
            &["/bin/sh", "-c", script],
        )
    }

    /// Names in the upper directory.
    fn upper(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path("upper"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// `argv` run as root in `rootfs` with the defaults: host network, hostname `kiln-test`.
fn spec_for(rootfs: RootFs, argv: &[&str]) -> RunSpec {
    RunSpec {
        rootfs,
        argv: argv.iter().map(|a| a.to_string()).collect(),
        env: vec![],
        workdir: "/".into(),
        user: String::new(),
        network: Network::Host,
        hostname: "kiln-test".into(),
        mounts: vec![],
        isolation: Isolation::Auto,
        pids_limit: Some(sandbox::DEFAULT_PIDS_LIMIT),
    }
}

/// For a helper run as a separate process: runs `spec` and prints how it ended and its output.
fn print_run(spec: &RunSpec) {
    let mut out = Vec::new();
    match sandbox::run(spec, &mut out) {
        Ok(o) => println!("OUTCOME {:?}", o.exit),
        Err(e) => println!("ERROR {e}"),
    }
    println!("OUTPUT<{}>", String::from_utf8_lossy(&out));
}

fn run(spec: &RunSpec) -> (RunOutcome, String) {
    let mut out = Vec::new();
    let outcome = sandbox::run(spec, &mut out).unwrap_or_else(|e| panic!("run failed: {e}"));
    (outcome, String::from_utf8_lossy(&out).into_owned())
}

fn sh(root: &Root, script: &str) -> String {
    let (o, out) = run(&root.spec(script));
    assert_eq!(o.exit, ExitKind::Code(0), "{script}: {out}");
    out
}

#[test]
fn exit_codes_and_signals_propagate() {
    need_root!();
    let r = Root::new();
    assert_eq!(run(&r.spec("exit 7")).0.exit, ExitKind::Code(7));
    assert_eq!(run(&r.spec("true")).0.exit, ExitKind::Code(0));
    // PID 1 ignores signals it has no handler for, except those the kernel forces: the CPU
    // time hard limit kills it with SIGKILL.
    let (o, _) = run(&r.spec("ulimit -t 1; while :; do :; done"));
    assert_eq!(o.exit, ExitKind::Signal(9));
}

#[test]
fn process_is_pid_one_with_default_path_and_home() {
    need_root!();
    let r = Root::new();
    let out = sh(&r, "echo $$; echo $PATH; echo $HOME; pwd");
    assert_eq!(
        out,
        format!("1\n{}\n/root\n/\n", sandbox::DEFAULT_PATH),
        "{out}"
    );
    let mut spec = r.spec("echo $HOME; echo $PATH");
    spec.user = "app".into();
    spec.env = vec![("PATH".into(), "/bin".into())];
    assert_eq!(run(&spec).1, "/home/app\n/bin\n");
    spec.env.push(("HOME".into(), "/elsewhere".into()));
    assert_eq!(run(&spec).1, "/elsewhere\n/bin\n");
    assert!(r.upper().is_empty(), "{:?}", r.upper());
}

#[test]
fn user_forms_give_the_ids_docker_gives() {
    need_root!();
    let r = Root::new();
    let id = |user: &str| {
        let mut spec = r.spec("id");
        spec.argv = vec!["id".into()];
        spec.user = user.into();
        let (o, out) = run(&spec);
        assert_eq!(o.exit, ExitKind::Code(0), "{out}");
        out.trim().to_string()
    };
    assert_eq!(
        id("app"),
        "uid=1000(app) gid=1000(app) groups=1000(app),2000(somegroup)"
    );
    assert_eq!(id("1000"), "uid=1000(app) gid=1000(app) groups=1000(app)");
    assert_eq!(
        id("app:somegroup"),
        "uid=1000(app) gid=2000(somegroup) groups=2000(somegroup)"
    );
    assert_eq!(id("0:0"), "uid=0(root) gid=0(root) groups=0(root)");
    assert_eq!(id(""), "uid=0(root) gid=0(root) groups=0(root)");
    let mut spec = r.spec("id");
    spec.user = "nobody-here".into();
    let err = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("nobody-here"), "{err}");
}

#[test]
fn changes_land_in_upper_with_overlay_whiteouts() {
    need_root!();
    let r = Root::new();
    sh(
        &r,
        "echo hi > /new.txt && chmod 640 /new.txt && chown 1000:2000 /new.txt \
         && rm /data/old.txt && rm -rf /data/dir && mkdir /data/dir && touch /data/dir/fresh",
    );
    assert_eq!(r.upper(), ["data", "new.txt"]);
    let m = fs::symlink_metadata(r.path("upper/new.txt")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 1000, 2000));
    assert_eq!(fs::read(r.path("upper/new.txt")).unwrap(), b"hi\n");
    let wh = fs::symlink_metadata(r.path("upper/data/old.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let opaque = xattr(&r.path("upper/data/dir"), "trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    let mut inside: Vec<_> = fs::read_dir(r.path("upper/data/dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    inside.sort();
    assert_eq!(inside, ["fresh"]);
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn proc_dev_sys_and_host_files_are_there_and_not_in_upper() {
    need_root!();
    let r = Root::new();
    let out = sh(
        &r,
        "test -e /proc/self/exe && echo proc; \
         touch /sys/kernel/x 2>/dev/null || echo sys-ro; \
         echo data > /dev/null && head -c 4 /dev/zero | wc -c; \
         test -c /dev/urandom && test -d /dev/pts && test -d /dev/shm && echo dev; \
         grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
         hostname; cat /etc/hostname",
    );
    assert_eq!(
        out, "proc\nsys-ro\n4\ndev\nro\nkiln-test\nkiln-test\n",
        "{out}"
    );
    let resolv = sh(&r, "cat /etc/resolv.conf");
    assert_eq!(resolv, fs::read_to_string("/etc/resolv.conf").unwrap());
    let hosts = sh(&r, "cat /etc/hosts");
    assert_eq!(hosts, fs::read_to_string("/etc/hosts").unwrap());
    assert!(sh(&r, "echo x >> /etc/resolv.conf 2>&1 || echo refused").contains("refused"));
    assert!(r.upper().is_empty(), "{:?}", r.upper());
}

/// What Docker hides from a container is hidden from a step, in every confined mode: host
/// memory and keys read as nothing, kernel settings cannot be written even by root.
#[test]
fn kernel_interfaces_are_masked_and_read_only() {
    need_root!();
    let script = "wc -c < /proc/keys; wc -c < /proc/timer_list; wc -c < /proc/interrupts; \
         ls -A /sys/firmware | wc -l; \
         grep -c '' /proc/sys/kernel/hostname; \
         (echo 1 > /proc/sys/vm/overcommit_ratio) 2>/dev/null || echo sys-refused; \
         grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1";
    // The host has all of these, with content: else the test could not see them hidden.
    for p in ["/proc/keys", "/proc/timer_list", "/proc/interrupts"] {
        assert!(
            !fs::read(p).unwrap().is_empty(),
            "{p} empty or missing here"
        );
    }
    assert!(
        fs::read_dir("/sys/firmware").unwrap().next().is_some(),
        "/sys/firmware empty here"
    );
    for isolation in [Isolation::Auto, Isolation::Rootless] {
        let r = Root::new();
        let mut spec = r.spec(script);
        spec.isolation = isolation;
        let (o, out) = run(&spec);
        assert_eq!(o.exit, ExitKind::Code(0), "{isolation:?}: {out}");
        assert_eq!(out, "0\n0\n0\n0\n1\nsys-refused\nro\n", "{isolation:?}");
        assert!(r.upper().is_empty(), "{:?}", r.upper());
    }
}

#[test]
fn bind_mounts_are_visible_and_not_in_upper() {
    need_root!();
    let r = Root::new();
    let ro = r.path("ro-src");
    let rw = r.path("rw-src");
    fs::create_dir_all(&ro).unwrap();
    fs::create_dir_all(&rw).unwrap();
    fs::write(ro.join("a.txt"), "from host").unwrap();
    let secret = r.path("secret");
    fs::write(&secret, "s3cret").unwrap();
    let mut spec = r.spec(
        "cat /mnt/ro/a.txt; echo; touch /mnt/ro/x 2>/dev/null || echo ro-refused; \
         echo w > /cache/w.txt; cat /run/secrets/token",
    );
    spec.mounts = vec![
        BindMount {
            source: ro,
            target: "/mnt/ro".into(),
            readonly: true,
        },
        BindMount {
            source: rw.clone(),
            target: "/cache".into(),
            readonly: false,
        },
        BindMount {
            source: secret,
            target: "/run/secrets/token".into(),
            readonly: true,
        },
    ];
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    assert_eq!(out, "from host\nro-refused\ns3cret");
    assert_eq!(fs::read_to_string(rw.join("w.txt")).unwrap(), "w\n");
    assert!(r.upper().is_empty(), "{:?}", r.upper());
}

#[test]
fn network_none_has_only_loopback_up() {
    need_root!();
    let r = Root::new();
    let mut spec = r.spec("ls /sys/class/net; cat /sys/class/net/lo/flags");
    spec.network = Network::None;
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    // 0x9: IFF_UP | IFF_LOOPBACK.
    assert_eq!(out, "lo\n0x9\n");
}

#[test]
fn a_hundred_lower_dirs_mount() {
    need_root!();
    let r = Root::new();
    let mut lower = Vec::new();
    for i in (1..100).rev() {
        let d = r.path(&format!(
            "layers/a-layer-directory-with-a-rather-long-name-to-pass-the-page-limit-{i:03}"
        ));
        fs::create_dir_all(d.join("layers")).unwrap();
        fs::write(d.join(format!("layers/{i}")), "").unwrap();
        fs::write(d.join("same.txt"), i.to_string()).unwrap();
        lower.push(d);
    }
    lower.push(r.path("lower"));
    let total: usize = lower.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the option string would fit: {total}");
    let mut spec = r.spec(
        "ls /layers | wc -l; cat /same.txt; echo; grep -o 'lowerdir[^,]*' /proc/mounts | head -1",
    );
    spec.rootfs = RootFs::Overlay {
        lower,
        upper: r.path("upper"),
        work: r.path("work"),
    };
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    let legacy = std::env::var("KILN_SANDBOX_LEGACY_MOUNT").as_deref() == Ok("1");
    let expect = if legacy {
        "99\n99\nlowerdir=0:1:2:".to_string()
    } else {
        "99\n99\nlowerdir+=/".to_string()
    };
    assert!(out.starts_with(&expect), "{out}");
}

#[test]
fn a_hundred_lower_dirs_mount_the_legacy_way() {
    need_root!();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_hundred_lower_dirs_mount", "--test-threads=1"])
        .env("KILN_SANDBOX_LEGACY_MOUNT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// Records when each chunk of output arrived.
struct Timed(Vec<(Instant, Vec<u8>)>);

impl std::io::Write for Timed {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.push((Instant::now(), b.to_vec()));
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn output_is_streamed_while_the_process_runs() {
    need_root!();
    let r = Root::new();
    let mut out = Timed(Vec::new());
    let spec = r.spec("echo first; echo err >&2; sleep 2; echo second");
    let o = sandbox::run(&spec, &mut out).unwrap();
    let end = Instant::now();
    assert_eq!(o.exit, ExitKind::Code(0));
    let (first_at, first) = &out.0[0];
    assert!(first.starts_with(b"first\n"), "{:?}", out.0);
    assert!(
        end.duration_since(*first_at) > Duration::from_millis(1500),
        "first bytes came only at the end"
    );
    let all: Vec<u8> = out.0.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(all, b"first\nerr\nsecond\n");
}

#[test]
fn program_not_found_names_the_path() {
    need_root!();
    let r = Root::new();
    let mut spec = r.spec("");
    spec.argv = vec!["no-such-tool".into()];
    match sandbox::run(&spec, &mut Vec::new()) {
        Err(e @ SandboxError::ProgramNotFound { .. }) => {
            assert!(e.to_string().contains("no-such-tool"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    spec.argv = vec!["/usr/bin/missing".into()];
    let e = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("/usr/bin/missing"), "{e}");
}

#[test]
fn workdir_is_created_and_user_can_write_home() {
    need_root!();
    let r = Root::new();
    let mut spec = r.spec("pwd; touch $HOME/x");
    spec.workdir = "/srv/app".into();
    spec.user = "app".into();
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    assert_eq!(out, "/srv/app\n");
    let m = fs::metadata(r.path("upper/srv/app")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 0));
    assert_eq!(
        fs::metadata(r.path("upper/home/app/x")).unwrap().uid(),
        1000
    );
}

#[test]
fn directory_root_leaves_only_the_steps_changes() {
    need_root!();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("root");
    busybox_root(&dir);
    let before = fs::metadata(&dir).unwrap().mtime();
    let etc_before = fs::metadata(dir.join("etc")).unwrap().mtime();
    std::thread::sleep(Duration::from_millis(1100));
    let mut spec = Root::new().spec("echo $$; hostname; cat /etc/hostname; touch /tmp/made");
    spec.rootfs = RootFs::Dir(dir.clone());
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    assert_eq!(out, "1\nkiln-test\nkiln-test\n");
    assert!(dir.join("tmp/made").exists());
    for gone in [
        "proc",
        "dev",
        "sys",
        "etc/resolv.conf",
        "etc/hosts",
        "etc/hostname",
    ] {
        assert!(!dir.join(gone).exists(), "{gone} left behind");
    }
    assert_eq!(fs::metadata(&dir).unwrap().mtime(), before);
    assert_eq!(fs::metadata(dir.join("etc")).unwrap().mtime(), etc_before);
}

#[test]
fn rootless_mode_as_root_maps_every_id() {
    need_root!();
    let r = Root::new();
    let mut spec = r.spec("id; echo $$; echo x > /f");
    spec.isolation = Isolation::Rootless;
    spec.user = "app".into();
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(1), "{out}");
    assert!(
        out.starts_with("uid=1000(app) gid=1000(app) groups=1000(app),2000(somegroup)\n1\n"),
        "{out}"
    );
    spec.user = String::new();
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    assert_eq!(fs::metadata(r.path("upper/f")).unwrap().uid(), 0);
    // The refused write as app left nothing; root's landed, owned by root.
    assert_eq!(r.upper(), ["f"]);
}

#[test]
fn unconfined_runs_on_the_given_directory() {
    need_root!();
    let r = Root::new();
    let dir = r.path("lower");
    let mut spec = r.spec("echo $$; touch /unconfined");
    spec.rootfs = RootFs::Dir(dir.clone());
    spec.isolation = Isolation::Unconfined;
    let inside = Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if !inside {
        let e = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, SandboxError::UnconfinedRefused), "{e}");
        return;
    }
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    assert_ne!(out, "1\n");
    assert!(dir.join("unconfined").exists());
    assert!(!dir.join("proc").exists());
}

/// The unprivileged half of [`rootless_as_an_unprivileged_user`]: does nothing unless that
/// test started this binary with the directories to use.
#[test]
fn rootless_helper() {
    let Ok(base) = std::env::var("KILN_SANDBOX_HELPER_DIR") else {
        return;
    };
    let base = PathBuf::from(base);
    let script = std::env::var("KILN_SANDBOX_HELPER_SCRIPT").unwrap_or_else(|_| {
        "echo pid=$$ uid=$(id -u); echo made > /made; cat /etc/passwd | head -1; \
         cat /sys/class/net/lo/flags; ls /proc/self/fd > /dev/null && echo proc; \
         rm -rf /data/dir && mkdir /data/dir && rm /data/old.txt"
            .into()
    });
    let mut spec = spec_for(
        RootFs::Overlay {
            lower: vec![base.join("lower")],
            upper: base.join("upper"),
            work: base.join("work"),
        },
        &["sh", "-c", &script],
    );
    spec.user = std::env::var("KILN_SANDBOX_HELPER_USER").unwrap_or_default();
    spec.network = Network::None;
    spec.hostname = "rootless".into();
    print_run(&spec);
    spec.user = "app".into();
    match sandbox::run(&spec, &mut Vec::new()) {
        Err(SandboxError::UserNamespace(m)) => println!("UNMAPPED {m}"),
        other => println!("UNEXPECTED {other:?}"),
    }
}

#[test]
fn rootless_as_an_unprivileged_user() {
    need_root!();
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        privilege::skip("needs setpriv (util-linux)", privilege::Demand::Tool);
        return;
    }
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    busybox_root(&t.path().join("lower"));
    // Rootless layers are the user's own files (extracted by it); root's would be unmapped.
    for d in [
        "data",
        "data/dir",
        "data/dir/a",
        "data/dir/b",
        "data/old.txt",
    ] {
        std::os::unix::fs::lchown(t.path().join("lower").join(d), Some(65534), Some(65534))
            .unwrap();
    }
    for d in ["upper", "work"] {
        fs::create_dir(t.path().join(d)).unwrap();
        std::os::unix::fs::chown(t.path().join(d), Some(65534), Some(65534)).unwrap();
    }
    // The test binary may sit where nobody cannot read it: run a copy.
    let exe = t.path().join("helper");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "rootless_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_SANDBOX_HELPER_DIR", t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("creating the sandbox's namespaces") {
        eprintln!(
            "skipped: user namespaces are not available to unprivileged users here: {stdout}"
        );
        return;
    }
    assert!(stdout.contains("OUTCOME Code(0)"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("OUTPUT<pid=1 uid=0\nroot:x:0:0:root:/root:/bin/sh\n0x9\nproc\n>"),
        "{stdout}"
    );
    assert!(stdout.contains("UNMAPPED user 1000:1000"), "{stdout}");
    let made = fs::metadata(t.path().join("upper/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (65534, 65534));
    let mut upper: Vec<_> = fs::read_dir(t.path().join("upper"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    upper.sort();
    assert_eq!(upper, ["data", "made"]);
    // Rootless overlay marks with user.* xattrs.
    let opaque = xattr(&t.path().join("upper/data/dir"), "user.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    let wh = fs::symlink_metadata(t.path().join("upper/data/old.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
}

#[test]
#[ignore = "benchmark: prints the sandbox's fixed cost (bench numbers, not a check)"]
fn fixed_cost_of_one_run() {
    need_root!();
    let r = Root::new();
    let mut spec = r.spec("");
    spec.argv = vec!["/bin/true".into()];
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let (o, _) = run(&spec);
        times.push(start.elapsed());
        assert_eq!(o.exit, ExitKind::Code(0));
    }
    times.sort();
    println!(
        "sandbox: one run of /bin/true: median {:?} (min {:?}, max {:?}) over 20",
        times[10], times[0], times[19]
    );
}

/// Undoes the test's changes to the host's user database.
struct SubidUser {
    saved: Vec<(&'static str, Option<Vec<u8>>)>,
}

impl Drop for SubidUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(SUBID_USER)
            .output();
        for (file, content) in &self.saved {
            match content {
                Some(c) => fs::write(file, c).unwrap(),
                None => {
                    let _ = fs::remove_file(file);
                }
            }
        }
    }
}

const SUBID_USER: &str = "kiln-subid-test";
const SUBID_START: u32 = 400_000;

/// Rootless with subordinate ids from a real `/etc/subuid` and `/etc/subgid` (through the
/// setuid `newuidmap`/`newgidmap`): users other than root inside the step become the
/// subordinate ids on the host, so `chown` and `USER app` work without privileges.
#[test]
fn rootless_with_subordinate_ids_maps_other_users() {
    need_root!();
    for tool in ["newuidmap", "newgidmap", "useradd", "setpriv"] {
        assert!(
            ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).exists()),
            "{tool} missing (apt-get install uidmap passwd util-linux)"
        );
    }
    let mut guard = SubidUser { saved: Vec::new() };
    for file in ["/etc/subuid", "/etc/subgid"] {
        guard.saved.push((file, fs::read(file).ok()));
    }
    let _ = std::process::Command::new("userdel")
        .arg(SUBID_USER)
        .output();
    let o = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/bin/sh",
            SUBID_USER,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "useradd: {o:?}");
    for file in ["/etc/subuid", "/etc/subgid"] {
        let mut text = fs::read_to_string(file).unwrap_or_default();
        text.push_str(&format!("{SUBID_USER}:{SUBID_START}:65536\n"));
        fs::write(file, text).unwrap();
    }
    let id = |flag: &str| -> u32 {
        let o = std::process::Command::new("id")
            .args([flag, SUBID_USER])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    let (uid, gid) = (id("-u"), id("-g"));

    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let lower = t.path().join("lower");
    busybox_root(&lower);
    // The layer as the user extracts it: root's files are the user's, app's the subordinate's.
    for e in walkdir(&lower) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid)).unwrap();
    }
    let sub = |inner: u32| SUBID_START + inner - 1;
    std::os::unix::fs::chown(lower.join("home/app"), Some(sub(1000)), Some(sub(1000))).unwrap();
    for d in ["upper", "work"] {
        fs::create_dir(t.path().join(d)).unwrap();
        std::os::unix::fs::chown(t.path().join(d), Some(uid), Some(gid)).unwrap();
    }
    let exe = t.path().join("helper");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let helper = |user: &str, script: &str| {
        let out = std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
            ])
            .arg(&exe)
            .args(["--exact", "rootless_helper", "--nocapture"])
            .args(["--test-threads=1"])
            .env("KILN_SANDBOX_HELPER_DIR", t.path())
            .env("KILN_SANDBOX_HELPER_USER", user)
            .env("KILN_SANDBOX_HELPER_SCRIPT", script)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = helper("", "echo x > /made && chown 1000:2000 /made && id -u");
    assert!(out.contains("OUTCOME Code(0)"), "{out}");
    assert!(out.contains("OUTPUT<0\n>"), "{out}");
    let made = fs::metadata(t.path().join("upper/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (sub(1000), sub(2000)));
    let out = helper("app", "id && echo a > /home/app/f");
    assert!(out.contains("OUTCOME Code(0)"), "{out}");
    assert!(
        out.contains("OUTPUT<uid=1000(app) gid=1000(app) groups=1000(app),2000(somegroup)\n>"),
        "{out}"
    );
    let f = fs::metadata(t.path().join("upper/home/app/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (sub(1000), sub(1000)));
    drop(guard);
}

/// Every path under `dir`, `dir` included.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    all
}

/// The kiln half of [`process_dies_with_kiln`]: runs a long sleep with its output on stdout.
#[test]
fn death_helper() {
    let Ok(base) = std::env::var("KILN_SANDBOX_DEATH_DIR") else {
        return;
    };
    let base = PathBuf::from(base);
    let mut spec = spec_for(
        RootFs::Overlay {
            lower: vec![base.join("lower")],
            upper: base.join("upper"),
            work: base.join("work"),
        },
        &["sh", "-c", "echo started; sleep 987654"],
    );
    spec.user = "app".into();
    spec.hostname = "death".into();
    let _ = sandbox::run(&spec, &mut std::io::stdout());
}

fn sleepers() -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.windows(6).any(|w| w == b"987654"))
        .count()
}

#[test]
fn process_dies_with_kiln() {
    need_root!();
    use std::io::BufRead;
    let r = Root::new();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "death_helper", "--nocapture", "--test-threads=1"])
        .env("KILN_SANDBOX_DEATH_DIR", r.tmp.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("started")));
    assert_eq!(sleepers(), 1, "the sandboxed sleep runs");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleepers() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sleepers(), 0, "the sandboxed process outlived kiln");
}

// What a step gets besides namespaces, as `docker build` gives it: Docker's seccomp profile,
// Docker's capabilities without NET_RAW, and no device nodes but kiln's own.

/// The namespaced modes a step runs in as root.
const CONFINED: [Isolation; 2] = [Isolation::Chroot, Isolation::Rootless];

/// Copies this test binary and the libraries it loads into `root` as `/probe`, so a step can
/// make system calls busybox has no applet for (see [`syscall_probe`]).
fn add_probe(root: &Path) {
    let exe = std::env::current_exe().unwrap();
    fs::copy(&exe, root.join("probe")).unwrap();
    let ldd = std::process::Command::new("ldd")
        .arg(&exe)
        .output()
        .unwrap();
    let libs = String::from_utf8(ldd.stdout).unwrap();
    for lib in libs.split_whitespace().filter(|w| w.starts_with('/')) {
        let to = root.join(lib.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(lib, &to).unwrap();
    }
}

/// A spec running the probe in `r` with `what` to probe.
fn probe_spec(r: &Root, program: &str, what: &str) -> RunSpec {
    let mut spec = r.spec("");
    spec.argv = [program, "--exact", "syscall_probe", "--nocapture", "-q"]
        .map(String::from)
        .to_vec();
    spec.argv.push("--test-threads=1".into());
    spec.env = vec![("KILN_SYSCALL_PROBE".into(), what.into())];
    spec
}

fn errno_name(r: libc::c_long) -> String {
    if r >= 0 {
        return "ok".into();
    }
    match std::io::Error::last_os_error().raw_os_error().unwrap() {
        libc::EPERM => "EPERM".into(),
        libc::ENOSYS => "ENOSYS".into(),
        e => format!("errno {e}"),
    }
}

/// Run inside a step by the tests below (does nothing elsewhere): makes the system calls a
/// step must not get and prints `name=ok` or `name=<errno>` for each.
#[test]
#[allow(unsafe_code)]
fn syscall_probe() {
    let Ok(what) = std::env::var("KILN_SYSCALL_PROBE") else {
        return;
    };
    if what == "euid" {
        println!("euid={}", rustix::process::geteuid().as_raw());
        return;
    }
    let params = [0u8; 120];
    // SAFETY: each call takes integers, or pointers to live NUL-terminated strings and a
    // zeroed io_uring_params of the kernel's size on the stack; none keeps a pointer.
    let calls: Vec<(&str, String)> = unsafe {
        vec![
            (
                "keyctl",
                errno_name(libc::syscall(libc::SYS_keyctl, 0, -4, 0)),
            ),
            (
                "add_key",
                errno_name(libc::syscall(
                    libc::SYS_add_key,
                    c"user".as_ptr(),
                    c"kiln".as_ptr(),
                    c"x".as_ptr(),
                    1,
                    -2,
                )),
            ),
            #[cfg(target_arch = "x86_64")]
            (
                "keyctl_x32",
                errno_name(libc::syscall(libc::SYS_keyctl | 0x4000_0000, 0, -4, 0)),
            ),
            (
                "personality",
                errno_name(libc::syscall(libc::SYS_personality, 0x0040000)),
            ),
            (
                "io_uring",
                errno_name(libc::syscall(libc::SYS_io_uring_setup, 1, params.as_ptr())),
            ),
            (
                "userfaultfd",
                errno_name(libc::syscall(libc::SYS_userfaultfd, 1)),
            ),
            (
                "vsock",
                errno_name(libc::syscall(
                    libc::SYS_socket,
                    libc::AF_VSOCK,
                    libc::SOCK_STREAM,
                    0,
                )),
            ),
            (
                "raw_socket",
                errno_name(libc::syscall(
                    libc::SYS_socket,
                    libc::AF_INET,
                    libc::SOCK_RAW,
                    libc::IPPROTO_ICMP,
                )),
            ),
            ("clone3", errno_name(libc::syscall(libc::SYS_clone3, 0, 0))),
        ]
    };
    for (name, result) in calls {
        println!("{name}={result}");
    }
    // SAFETY: clone without a stack acts as fork; a child (0) exits at once.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_NEWUSER | libc::SIGCHLD,
            0,
            0,
            0,
            0,
        )
    };
    if r == 0 {
        // SAFETY: _exit ends the forked copy without running the parent's handlers.
        unsafe { libc::_exit(0) };
    }
    println!("clone_newuser={}", errno_name(r));
    if r > 0 {
        let _ = rustix::process::waitpid(None, rustix::process::WaitOptions::empty());
    }
    // SAFETY: unshare takes flags only.
    let r = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) };
    println!("unshare_user={}", errno_name(r));
    // Threads still start: glibc falls back from clone3 to clone.
    let thread = std::thread::spawn(|| 7).join().unwrap();
    println!("thread={thread}");
}

#[test]
fn seccomp_refuses_what_docker_refuses() {
    need_root!();
    for isolation in CONFINED {
        let r = Root::new();
        add_probe(&r.path("lower"));
        let mut spec = probe_spec(&r, "/probe", "calls");
        spec.isolation = isolation;
        let (o, out) = run(&spec);
        assert_eq!(o.exit, ExitKind::Code(0), "{isolation:?}: {out}");
        let got: Vec<&str> = out.lines().filter(|l| l.contains('=')).collect();
        let mut want = vec!["keyctl=EPERM", "add_key=EPERM"];
        if cfg!(target_arch = "x86_64") {
            want.push("keyctl_x32=EPERM");
        }
        want.extend([
            "personality=EPERM",
            "io_uring=EPERM",
            "userfaultfd=EPERM",
            "vsock=EPERM",
            "raw_socket=EPERM",
            "clone3=ENOSYS",
            "clone_newuser=EPERM",
            "unshare_user=EPERM",
            "thread=7",
        ]);
        assert_eq!(got, want, "{isolation:?}: {out}");
    }
}

/// Runs `f` with inheritable and ambient CAP_SYS_ADMIN and NET_RAW on this thread (the one the
/// sandbox clones), as a kiln started with them would have them.
fn with_inherited_caps<T>(f: impl FnOnce() -> T) -> T {
    use rustix::thread::CapabilitySet;
    let before = rustix::thread::capabilities(None).unwrap();
    let mut raised = before;
    raised.inheritable |= CapabilitySet::SYS_ADMIN | CapabilitySet::NET_RAW;
    rustix::thread::set_capabilities(None, raised).unwrap();
    for cap in [CapabilitySet::SYS_ADMIN, CapabilitySet::NET_RAW] {
        rustix::thread::configure_capability_in_ambient_set(cap, true).unwrap();
    }
    let result = f();
    rustix::thread::clear_ambient_capability_set().unwrap();
    rustix::thread::set_capabilities(None, before).unwrap();
    result
}

/// Docker's default capability set 0xa80425fb without NET_RAW (bit 13).
const STEP_CAPS: &str = "00000000a80405fb";

/// Prints a step's capability sets, `no_new_privs` and seccomp mode.
const STATUS: &str = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status \
                      | tr -d '\\t'";

/// What [`STATUS`] prints for a step holding `held` (permitted and effective).
fn status(held: &str, no_new_privs: u8) -> String {
    format!(
        "CapInh:0000000000000000\nCapPrm:{held}\nCapEff:{held}\nCapBnd:{STEP_CAPS}\n\
         CapAmb:0000000000000000\nNoNewPrivs:{no_new_privs}\nSeccomp:2\n"
    )
}

#[test]
fn status_shows_the_filter_and_dockers_capabilities_without_net_raw() {
    need_root!();
    for isolation in CONFINED {
        for (user, held) in [("", STEP_CAPS), ("app", "0000000000000000")] {
            let r = Root::new();
            let mut spec = r.spec(STATUS);
            spec.isolation = isolation;
            spec.user = user.into();
            let (o, out) = with_inherited_caps(|| run(&spec));
            assert_eq!(o.exit, ExitKind::Code(0), "{isolation:?} {user}: {out}");
            assert_eq!(out, status(held, 0), "{isolation:?} {user:?}");
        }
    }
}

/// Run by [`unconfined_steps_get_the_filter_and_capabilities_too`] (does nothing elsewhere):
/// prints [`STATUS`] of an unconfined step on the host's root.
#[test]
fn unconfined_helper() {
    if std::env::var_os("KILN_UNCONFINED_HELPER").is_none() {
        return;
    }
    let mut spec = spec_for(RootFs::Dir("/".into()), &["/bin/sh", "-c", STATUS]);
    spec.isolation = Isolation::Unconfined;
    print_run(&spec);
}

/// Kaniko's way gets the same: with CAP_SYS_ADMIN the filter goes in as in the namespaced
/// modes; without it (a container's default capabilities), with `no_new_privs`.
#[test]
fn unconfined_steps_get_the_filter_and_capabilities_too() {
    need_root!();
    let exe = std::env::current_exe().unwrap();
    for (bounding, no_new_privs) in [("-net_raw", 0), ("-sys_admin", 1)] {
        let out = std::process::Command::new("setpriv")
            .arg(format!("--bounding-set={bounding}"))
            .arg(&exe)
            .args([
                "--exact",
                "unconfined_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KILN_UNCONFINED_HELPER", "1")
            .env("KILN_FORCE_UNCONFINED", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let want = format!(
            "OUTCOME Code(0)\nOUTPUT<{}>",
            status(STEP_CAPS, no_new_privs)
        );
        assert!(stdout.contains(&want), "{bounding}: {stdout}");
    }
}

#[test]
fn hostile_busybox_steps_fail() {
    need_root!();
    for isolation in CONFINED {
        let r = Root::new();
        for (script, what) in [
            ("unshare -U true", "a user namespace"),
            ("unshare -m true", "a mount namespace"),
            ("mkdir -p /mnt && mount -t tmpfs x /mnt", "a mount"),
            ("ping -c1 -W1 127.0.0.1", "a raw socket"),
            ("hostname other", "a hostname"),
        ] {
            let mut spec = r.spec(script);
            spec.isolation = isolation;
            let (o, out) = run(&spec);
            assert_ne!(o.exit, ExitKind::Code(0), "{isolation:?}: {what}: {out}");
        }
    }
}

#[test]
fn device_nodes_open_only_in_kilns_dev() {
    need_root!();
    let script = "cat /imgnull && echo image-node-opened; \
         mknod /x c 1 3 && cat /x && echo made-node-opened; \
         mknod /dev/y c 1 3 && cat /dev/y && echo dev-node-opened; \
         mknod /tmp/kmsg c 1 11 && echo kiln-sandbox-test > /tmp/kmsg && echo kmsg-written; \
         echo x > /dev/null && head -c 3 /dev/zero | wc -c; head -c 3 /dev/urandom | wc -c; \
         head -c 3 /dev/random | wc -c; head -c 3 /dev/full | wc -c; \
         exec 3<>/dev/ptmx && echo pty";
    for isolation in CONFINED {
        let r = Root::new();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.path("lower/imgnull").as_path(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        let mut spec = r.spec(script);
        spec.isolation = isolation;
        let (o, out) = run(&spec);
        assert_eq!(o.exit, ExitKind::Code(0), "{isolation:?}: {out}");
        assert!(!out.contains("opened"), "{isolation:?}: {out}");
        assert!(!out.contains("written"), "{isolation:?}: {out}");
        assert!(out.ends_with("3\n3\n3\n3\npty\n"), "{isolation:?}: {out}");
    }
}

#[test]
fn directory_roots_are_nodev_too() {
    need_root!();
    let r = Root::new();
    let dir = r.path("lower");
    let mut spec = r.spec("mknod /x c 1 3 && cat /x && echo opened; rm -f /x");
    spec.rootfs = RootFs::Dir(dir);
    spec.isolation = Isolation::Chroot;
    let (o, out) = run(&spec);
    assert_eq!(o.exit, ExitKind::Code(0), "{out}");
    assert!(!out.contains("opened"), "{out}");
}

#[test]
fn setuid_programs_keep_working() {
    need_root!();
    for isolation in CONFINED {
        let r = Root::new();
        add_probe(&r.path("lower"));
        let suid = r.path("lower/suid");
        fs::copy(r.path("lower/probe"), &suid).unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        let mut spec = probe_spec(&r, "/suid", "euid");
        spec.isolation = isolation;
        spec.user = "app".into();
        let (o, out) = run(&spec);
        assert_eq!(o.exit, ExitKind::Code(0), "{isolation:?}: {out}");
        assert!(out.contains("euid=0\n"), "{isolation:?}: {out}");
        let mut spec = r.spec("echo ok > /tmp/f && sh -c 'cat /tmp/f' && id -u");
        spec.isolation = isolation;
        spec.user = "app".into();
        let (o, out) = run(&spec);
        assert_eq!((o.exit, out.as_str()), (ExitKind::Code(0), "ok\n1000\n"));
    }
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    need_root!();
    let script = "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo all-started";
    for isolation in CONFINED {
        let r = Root::new();
        let mut spec = r.spec(script);
        spec.isolation = isolation;
        spec.pids_limit = Some(20);
        let (o, out) = run(&spec);
        assert_ne!(o.exit, ExitKind::Code(0), "{isolation:?}: {out}");
        assert!(out.contains("can't fork"), "{isolation:?}: {out}");
        spec.pids_limit = Some(100);
        let (o, out) = run(&spec);
        assert_eq!((o.exit, out.as_str()), (ExitKind::Code(0), "all-started\n"));
    }
}

/// An image whose `/proc`, `/dev` or `/sys` is a symlink (absolute, or leading out with `..`)
/// is refused before anything is mounted: the kernel would follow it on the host side, and
/// /proc's masks would miss. Nothing reaches the host path the link names.
#[test]
fn proc_dev_or_sys_as_a_symlink_is_refused() {
    need_root!();
    for (dir, link) in [
        ("proc", "/etc"),
        ("dev", "../../../../tmp"),
        ("sys", "/root"),
    ] {
        let root = Root::new();
        let lower = root.path("lower");
        let _ = fs::remove_dir_all(lower.join(dir));
        std::os::unix::fs::symlink(link, lower.join(dir)).unwrap();
        let mut out = Vec::new();
        let e = sandbox::run(&root.spec("echo ran"), &mut out)
            .err()
            .unwrap_or_else(|| panic!("/{dir} -> {link} ran: {}", String::from_utf8_lossy(&out)));
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("/{dir}")) && msg.contains("is a symbolic link in the image"),
            "{msg}"
        );
        assert!(!String::from_utf8_lossy(&out).contains("ran"));
    }
}

/// Run by [`auto_chooses_by_what_the_machine_allows`] (does nothing elsewhere): prints what
/// `choose` decides for each requested isolation.
#[test]
fn choose_helper() {
    if std::env::var_os("KILN_CHOOSE_HELPER").is_none() {
        return;
    }
    for requested in [Isolation::Auto, Isolation::Chroot, Isolation::Rootless] {
        match kiln::sandbox::choose(requested) {
            Ok(c) => println!(
                "CHOSE {} {}: {}",
                requested.name(),
                c.isolation.name(),
                c.reason
            ),
            Err(e) => println!("REFUSED {}: {e}", requested.name()),
        }
    }
}

/// `auto` as root picks chroot where namespaces can be made, and `none` (in a container, here
/// forced) where they cannot: without CAP_SYS_ADMIN, as in a container with Docker's default
/// capabilities, where `chroot` is refused before any step with what the pod needs.
#[test]
fn auto_chooses_by_what_the_machine_allows() {
    need_root!();
    let exe = std::env::current_exe().unwrap();
    let helper = |bounding: Option<&str>| {
        let mut c = match bounding {
            Some(b) => {
                let mut c = std::process::Command::new("setpriv");
                c.arg(format!("--bounding-set={b}")).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        };
        let out = c
            .args([
                "--exact",
                "choose_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KILN_CHOOSE_HELPER", "1")
            .env("KILN_FORCE_UNCONFINED", "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = helper(None);
    assert!(
        out.contains("CHOSE auto chroot: auto: kiln is root"),
        "{out}"
    );
    assert!(out.contains("CHOSE chroot chroot"), "{out}");
    let out = helper(Some("-sys_admin"));
    assert!(
        out.contains("CHOSE auto none: auto: namespaces are refused to root without CAP_SYS_ADMIN"),
        "{out}"
    );
    assert!(
        out.contains("REFUSED chroot: isolation \"chroot\" cannot work here")
            && out.contains("CAP_SYS_ADMIN"),
        "{out}"
    );
}
