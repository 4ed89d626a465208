//! Every isolation mode in the environment it is for (issue 12): corpus cases built by kiln
//! `--isolation auto` inside containers of a real Docker daemon that stand for real pods, each
//! image compared (files and config, `kiln_tests::image_tree`) with the one kiln builds as root
//! on this machine:
//! - `none`: kiln as root with Docker's default capabilities and seccomp profile, not
//!   privileged (kaniko's pod). `auto` must choose `none` there; `RUN --mount` and
//!   `--network none` cases are left out (no namespaces to give them), and one of them must be
//!   refused before any step runs.
//! - `rootless`: kiln as uid 1000 with an `/etc/subuid` range (BuildKit-rootless's pod), with
//!   [`ROOTLESS_SECURITY_OPTS`]. `auto` must choose `rootless` and the overlay probe must pass.
//!   Without `systempaths=unconfined` (Docker's masked `/proc`) and with Docker's seccomp
//!   profile, kiln must refuse at the start, naming what the pod needs.
//! - `chroot`: the reference builds here, kiln as root on the host (`auto` must choose it);
//!   `tests/equivalence.rs` compares those with buildah's.
//!
//! The container image is made here: kiln and the shared libraries `ldd` lists, busybox,
//! util-linux's `unshare` and `mount` (the overlay probe), `newuidmap`/`newgidmap` (with file
//! capabilities, see [`file_capability`]),
//! `/etc/passwd` with uid 1000 and `/etc/subuid`/`/etc/subgid` ranges, imported with
//! `docker import`. kiln's `--cache-dir` is a volume, as a pod's emptyDir would be (a
//! container's overlayfs root cannot be an overlay upper). The containers use the host's
//! network to reach the test registry on 127.0.0.1.
//!
//! Needs root, dockerd, buildah (for the corpus's base image), docker-registry and
//! busybox-static, as `tests/equivalence.rs`: skipped without them, failed in CI.
//! `KILN_CORPUS_CASES` filters the cases as there.

use kiln_testkit::dockerd;
use kiln_testkit::registry as registry_server;

use dockerd::Dockerd;
use kiln_tests::bins::kiln_bin;
use kiln_tests::corpus::{
    buildah_store, case_filter, compare, corpus_dir, load_cases, load_cases_in, missing_as_root,
    push_base, read_normalised, run, tail, tools_here, Case,
};
use registry_server::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const IMAGE: &str = "kiln-isolation-env:test";

/// What a uid-1000 container needs for rootless RUN steps: user namespaces (Docker's seccomp
/// profile refuses them), and an unmasked `/proc` (a user namespace may mount a new `/proc`
/// only where no path of the container's own is hidden under a mount).
const ROOTLESS_SECURITY_OPTS: [&str; 4] = [
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "systempaths=unconfined",
];

/// The cases whose features `none` lacks: `RUN --mount` (and `--network none`, which no case
/// uses on its own).
fn needs_namespaces(case: &Case) -> bool {
    let text = std::fs::read_to_string(&case.dockerfile).unwrap();
    text.contains("--mount") || text.contains("--network=none") || text.contains("--network none")
}

/// The kiln binary, looked up (and built if need be) once.
fn has_run(case: &Case) -> bool {
    let text = std::fs::read_to_string(&case.dockerfile).unwrap();
    text.lines().any(|l| l.trim_start().starts_with("RUN"))
}

fn missing_tools() -> Option<String> {
    missing_as_root(
        &[
            "/usr/bin/buildah",
            registry_server::REGISTRY_BIN,
            "/usr/bin/busybox",
            dockerd::DOCKERD_BIN,
            "/usr/bin/unshare",
            "/usr/bin/mount",
            "/usr/bin/newuidmap",
            "/usr/bin/newgidmap",
        ],
        "buildah docker-registry busybox-static docker.io uidmap",
    )
}

/// The binaries put in the container image, at the same paths.
const BINARIES: [&str; 4] = [
    "/usr/bin/unshare",
    "/usr/bin/mount",
    "/usr/bin/newuidmap",
    "/usr/bin/newgidmap",
];

/// The shared libraries (and loader) `ldd` lists for `bin`.
fn libraries(bin: &Path) -> Vec<PathBuf> {
    let out = run(Command::new("ldd").arg(bin)).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

/// The file capability newuidmap and newgidmap get (a `security.capability` xattr, revision 2,
/// effective): CAP_SETUID and CAP_SETGID. Debian installs them setuid root, and root without
/// CAP_SYS_ADMIN (Docker's default capabilities) may not write another user's id maps; with
/// file capabilities they run as the user, who owns the namespace (BuildKit's rootless image
/// does the same).
fn file_capability(path: &str) -> Option<[u8; 20]> {
    let bit: u32 = match path {
        "usr/bin/newuidmap" => 7,
        "usr/bin/newgidmap" => 6,
        _ => return None,
    };
    let mut v = [0u8; 20];
    v[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    v[4..8].copy_from_slice(&(1u32 << bit).to_le_bytes());
    Some(v)
}

/// Makes the container image: a tarball of a small root, `docker import`ed as [`IMAGE`].
fn make_image(docker: &Dockerd, work: &Path) {
    let mut files: Vec<(String, PathBuf, u32)> = vec![
        ("usr/local/bin/kiln".into(), kiln_bin(), 0o755),
        ("bin/busybox".into(), "/usr/bin/busybox".into(), 0o755),
    ];
    for b in BINARIES {
        files.push((b.trim_start_matches('/').into(), b.into(), 0o755));
    }
    let mut libs: Vec<PathBuf> = std::iter::once(kiln_bin())
        .chain(BINARIES.iter().map(PathBuf::from))
        .flat_map(|b| libraries(&b))
        .collect();
    libs.sort();
    libs.dedup();
    for l in libs {
        let name = l.to_string_lossy().trim_start_matches('/').to_string();
        files.push((name, l, 0o755));
    }
    let text: [(&str, &str); 5] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nkiln:x:1000:1000:kiln:/home/kiln:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\nkiln:x:1000:\n"),
        ("etc/subuid", "kiln:100000:65536\n"),
        ("etc/subgid", "kiln:100000:65536\n"),
        ("etc/hosts", "127.0.0.1 localhost\n"),
    ];
    let tarball = work.join("env-image.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    let mut dirs: Vec<(String, u32, u32)> = vec![
        ("tmp".into(), 0o1777, 0),
        ("root".into(), 0o700, 0),
        ("home".into(), 0o755, 0),
        ("home/kiln".into(), 0o755, 1000),
        ("proc".into(), 0o755, 0),
        ("sys".into(), 0o755, 0),
        ("dev".into(), 0o755, 0),
    ];
    for (path, _, _) in &files {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push((d.to_string_lossy().into_owned(), 0o755, 0));
            p = d.parent();
        }
    }
    dirs.extend(text.iter().map(|_| ("etc".to_string(), 0o755, 0)));
    dirs.sort();
    dirs.dedup_by(|a, b| a.0 == b.0);
    let header = |path: &str, kind: tar::EntryType, mode: u32, owner: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.into());
        h.set_gid(owner.into());
        h.set_size(size);
        h.set_mtime(0);
        h.set_cksum();
        h
    };
    for (d, mode, owner) in &dirs {
        b.append(
            &header(
                &format!("{d}/"),
                tar::EntryType::Directory,
                *mode,
                *owner,
                0,
            ),
            &[][..],
        )
        .unwrap();
    }
    for (path, src, mode) in &files {
        let data = std::fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        if let Some(cap) = file_capability(path) {
            b.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])
                .unwrap();
        }
        b.append(
            &header(path, tar::EntryType::Regular, *mode, 0, data.len() as u64),
            &data[..],
        )
        .unwrap();
    }
    for (path, content) in text {
        b.append(
            &header(
                path,
                tar::EntryType::Regular,
                0o644,
                0,
                content.len() as u64,
            ),
            content.as_bytes(),
        )
        .unwrap();
    }
    let mut h = header("bin/sh", tar::EntryType::Symlink, 0o777, 0, 0);
    h.set_link_name("busybox").unwrap();
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    b.into_inner().unwrap();
    run(docker.docker().arg("import").arg(&tarball).arg(IMAGE))
        .unwrap_or_else(|e| panic!("docker import: {e}"));
}

/// One container environment.
struct Env {
    name: &'static str,
    /// Cases left out, each with the reason (a known difference of the mode, in the README).
    known: &'static [(&'static str, &'static str)],
    /// `docker run` flags besides the volumes and the network.
    flags: Vec<&'static str>,
    /// What `auto` must choose there.
    isolation: &'static str,
    /// uid that owns the cache volume (kiln's user).
    owner: u32,
}

fn envs() -> Vec<Env> {
    let mut rootless = vec!["--user", "1000:1000"];
    rootless.extend(ROOTLESS_SECURITY_OPTS);
    vec![
        Env {
            name: "none",
            known: &[(
                "17-hardlinks",
                "the tree diff keeps the hard link a RUN makes to a file of an earlier layer \
                 between all its names, as the step saw them; overlay's copy-up splits them \
                 (as buildah's vfs driver does, see tests/corpus/README.md)",
            )],
            flags: vec![],
            isolation: "none",
            owner: 0,
        },
        Env {
            name: "rootless",
            known: &[],
            flags: rootless,
            isolation: "rootless",
            owner: 1000,
        },
    ]
}

struct Rig {
    registry: Registry,
    base: String,
    docker: Dockerd,
    work: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let registry = Registry::plain();
        let work = tempfile::Builder::new()
            .prefix("kiln-isolation-envs-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = work.path().join("buildah");
        let t = Instant::now();
        let base = push_base(&registry.addr, &buildah_store(&store));
        let _ = std::fs::remove_dir_all(&store);
        eprintln!("base image pushed in {:.1}s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let docker = Dockerd::start();
        eprintln!("dockerd started in {:.1}s", t.elapsed().as_secs_f64());
        make_image(&docker, work.path());
        eprintln!(
            "dockerd and the environment image in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        Rig {
            registry,
            base,
            docker,
            work,
        }
    }

    /// A directory under the work directory that `owner` may write.
    fn dir(&self, rel: &str, owner: u32) -> PathBuf {
        let d = self.work.path().join(rel);
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(owner), Some(owner)).unwrap();
        d
    }
}

/// kiln's arguments for `case`, with the case's directory at `dir` and the layout at `out`.
fn kiln_args(rig: &Rig, case: &Case, dir: &str, out: &str, cache: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "build".into(),
        "--context".into(),
        dir.into(),
        "--dockerfile".into(),
        format!("{dir}/Dockerfile"),
        "--build-arg".into(),
        format!("BASE={}", rig.base),
        "--destination".into(),
        format!("kiln-corpus/{}:env", case.name),
        "--no-push".into(),
        "--oci-layout-path".into(),
        out.into(),
        "--insecure-registry".into(),
        rig.registry.addr.clone(),
        "--cache-dir".into(),
        cache.into(),
        "--isolation".into(),
        "auto".into(),
    ];
    for b in &case.build_args {
        a.push("--build-arg".into());
        a.push(b.clone());
    }
    if let Some(t) = &case.target {
        a.push("--target".into());
        a.push(t.clone());
    }
    for s in &case.secrets {
        let (id, src) = s.split_once(",src=").unwrap();
        let inner = Path::new(src).strip_prefix(&case.dir).unwrap();
        a.push("--secret".into());
        a.push(format!("{id},src={dir}/{}", inner.display()));
    }
    a
}

/// `docker run` of kiln in `env` with the corpus, the cache and the output directory mounted;
/// returns its output (stdout then stderr) and whether it succeeded.
fn in_container(rig: &Rig, env: &Env, flags: &[&str], args: &[String]) -> (bool, String) {
    let cache = rig.dir(&format!("{}/cache", env.name), env.owner);
    let out = rig.dir(&format!("{}/out", env.name), env.owner);
    let o = rig
        .docker
        .docker()
        .args(["run", "--rm", "--network", "host"])
        .args(flags)
        .arg("-v")
        .arg(format!("{}:/corpus:ro", corpus_dir().display()))
        .arg("-v")
        .arg(format!("{}:/cache", cache.display()))
        .arg("-v")
        .arg(format!("{}:/out", out.display()))
        .arg(IMAGE)
        .arg("/usr/local/bin/kiln")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// The line kiln prints when it has chosen the isolation.
fn chose(log: &str, isolation: &str) -> bool {
    log.lines()
        .any(|l| l.contains(&format!("isolation: {isolation} (auto:")))
}

/// Builds `case` on the host (the reference) and checks that `auto` chose `chroot`.
fn host_build(rig: &Rig, case: &Case) -> Result<PathBuf, String> {
    let out = rig.work.path().join("host/out").join(&case.name);
    let cache = rig.work.path().join("host/cache");
    let args = kiln_args(
        rig,
        case,
        &case.dir.display().to_string(),
        &out.display().to_string(),
        &cache.display().to_string(),
    );
    let o = run(Command::new(kiln_bin()).args(&args)).map_err(|e| format!("host: {e}"))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if has_run(case) && !chose(&log, "chroot") {
        return Err(format!(
            "host: auto did not choose chroot as root:\n{}",
            tail(log.as_bytes(), 20)
        ));
    }
    Ok(out)
}

/// Builds `case` in `env` and compares the image with the host's.
fn check(rig: &Rig, env: &Env, case: &Case, reference: &Path) -> Result<(), String> {
    let dir = format!("/corpus/{}", case.name);
    let out = format!("/out/{}", case.name);
    let args = kiln_args(rig, case, &dir, &out, "/cache");
    let (ok, log) = in_container(rig, env, &env.flags, &args);
    if !ok {
        return Err(format!("kiln build failed:\n{}", tail(log.as_bytes(), 30)));
    }
    if has_run(case) && !chose(&log, env.isolation) {
        return Err(format!(
            "auto did not choose {}:\n{}",
            env.isolation,
            tail(log.as_bytes(), 30)
        ));
    }
    // Owners the image gives, a step's chown to another id, files a step left unreadable:
    // kiln handles them as root of its own user namespace (see `sandbox/own_namespace.rs`).
    if env.isolation == "rootless"
        && has_run(case)
        && !log.contains("root only in a user namespace")
    {
        return Err(format!(
            "kiln did not enter its own user namespace:\n{}",
            tail(log.as_bytes(), 30)
        ));
    }
    if env.isolation == "rootless" && log.contains("overlay cannot be mounted") {
        return Err(format!(
            "the overlay probe failed:\n{}",
            tail(log.as_bytes(), 30)
        ));
    }
    let host_out = rig.work.path().join(env.name).join("out").join(&case.name);
    let mine = read_normalised(&host_out)?;
    let theirs = read_normalised(reference)?;
    compare(&theirs, &mine, "host chroot", env.name)
}

/// What a RUN step tries in [`hostile_steps_stay_in`]: each prints `ESCAPED` if it works.
const HOSTILE: &str = "unshare -U true 2>/dev/null && echo ESCAPED-userns; \
    unshare -m true 2>/dev/null && echo ESCAPED-mountns; \
    mkdir -p /mnt && mount -t tmpfs x /mnt 2>/dev/null && echo ESCAPED-mount; \
    ping -c1 -W1 127.0.0.1 >/dev/null 2>&1 && echo ESCAPED-rawsocket; \
    mknod /x c 1 3 2>/dev/null && echo ESCAPED-mknod; \
    cat /proc/[0-9]*/comm 2>/dev/null | grep -qx kiln && echo ESCAPED-sees-kiln; \
    grep -E '^(CapEff|Seccomp):' /proc/self/status | tr -d '\\t'";

/// A step of a rootless build runs in kiln's own user namespace, where kiln is root: it must
/// still get what a step of Docker's gets (its own PID namespace, Docker's capabilities
/// without NET_RAW, kiln's seccomp filter) and none of kiln's power.
fn hostile_steps_stay_in(rig: &Rig, env: &Env) {
    let dir = rig.dir(&format!("{}/out/hostile", env.name), env.owner);
    std::fs::write(
        dir.join("Dockerfile"),
        format!("ARG BASE\nFROM ${{BASE}}\nRUN {HOSTILE}\n"),
    )
    .unwrap();
    let case = load_cases_in(dir.parent().unwrap(), &["hostile".into()])
        .pop()
        .unwrap();
    let args = kiln_args(rig, &case, "/out/hostile", "/out/hostile-layout", "/cache");
    let (ok, log) = in_container(rig, env, &env.flags, &args);
    assert!(ok, "{}: the hostile build failed:\n{log}", env.name);
    assert!(
        log.contains("root only in a user namespace"),
        "{}: not in kiln's own namespace:\n{log}",
        env.name
    );
    // The step's output lines, not the RUN line the log echoes.
    assert!(!log.contains("#1 ESCAPED"), "{}:\n{log}", env.name);
    assert!(
        log.contains("#1 CapEff:00000000a80405fb") && log.contains("#1 Seccomp:2"),
        "{}: the step's capabilities or filter:\n{log}",
        env.name
    );
}

/// A build's label (`none/02-run-files`), how long it took and what failed.
type BuildResult = (String, Duration, Result<(), String>);

#[test]
fn each_mode_builds_the_corpus_in_its_environment() {
    if !tools_here(
        "each_mode_builds_the_corpus_in_its_environment",
        missing_tools(),
    ) {
        return;
    }
    let start = Instant::now();
    let rig = Rig::start();
    let cases = load_cases(&case_filter());
    assert!(!cases.is_empty(), "no corpus case selected");
    let envs = envs();

    // Refusals at the start, before any step, naming what the pod needs.
    let refusals: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "uid 1000 under Docker's seccomp profile",
            vec!["--user", "1000:1000"],
            "seccomp=unconfined",
        ),
        (
            "uid 1000 with Docker's masked /proc",
            vec![
                "--user",
                "1000:1000",
                "--security-opt",
                "seccomp=unconfined",
            ],
            "systempaths=unconfined",
        ),
    ];
    let probe_case = cases
        .iter()
        .find(|c| !needs_namespaces(c) && has_run(c))
        .expect("a case with RUN steps and no RUN --mount");
    for (what, flags, needs) in &refusals {
        let dir = format!("/corpus/{}", probe_case.name);
        let args = kiln_args(&rig, probe_case, &dir, "/out/refused", "/cache");
        let (ok, log) = in_container(&rig, &envs[1], flags, &args);
        assert!(!ok, "{what}: kiln built:\n{log}");
        assert!(
            log.contains("cannot work here") && log.contains(needs) && !log.contains("] RUN"),
            "{what}: kiln must refuse at the start naming {needs}:\n{log}"
        );
    }
    if let Some(mounts) = cases.iter().find(|c| needs_namespaces(c)) {
        let args = kiln_args(
            &rig,
            mounts,
            &format!("/corpus/{}", mounts.name),
            "/out/refused",
            "/cache",
        );
        let (ok, log) = in_container(&rig, &envs[0], &[], &args);
        assert!(
            !ok && chose(&log, "none") && log.contains("RUN --mount"),
            "{}: isolation none must refuse RUN --mount at the start:\n{log}",
            mounts.name
        );
    }

    hostile_steps_stay_in(&rig, &envs[1]);

    // Each case on the host first (the reference), then in each environment that supports it.
    let jobs: Vec<(Option<&Env>, &Case)> = cases
        .iter()
        .map(|c| (None, c))
        .chain(envs.iter().flat_map(|e| {
            cases
                .iter()
                .filter(move |c| e.isolation != "none" || !needs_namespaces(c))
                .filter(move |c| !e.known.iter().any(|(name, _)| *name == c.name))
                .map(move |c| (Some(e), c))
        }))
        .collect();
    let references: Mutex<std::collections::HashMap<String, Result<PathBuf, String>>> =
        Mutex::new(Default::default());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<BuildResult>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((env, case)) = jobs.get(i) else {
                    break;
                };
                let t = Instant::now();
                let (label, r) = match env {
                    None => {
                        let r = host_build(&rig, case);
                        let res = r.as_ref().map(|_| ()).map_err(Clone::clone);
                        references.lock().unwrap().insert(case.name.clone(), r);
                        (format!("host/{}", case.name), res)
                    }
                    Some(env) => {
                        // The host's build of the case comes earlier in the queue; wait for it.
                        let reference = loop {
                            if let Some(r) = references.lock().unwrap().get(&case.name) {
                                break r.clone();
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        };
                        let r = match reference {
                            Ok(reference) => check(&rig, env, case, &reference),
                            Err(_) => Err("the host's build failed".into()),
                        };
                        (format!("{}/{}", env.name, case.name), r)
                    }
                };
                let took = t.elapsed();
                eprintln!(
                    "{} {label} ({:.1}s)",
                    if r.is_ok() { "ok  " } else { "FAIL" },
                    took.as_secs_f64()
                );
                results.lock().unwrap().push((label, took, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(n, _, r)| r.as_ref().err().map(|e| format!("=== {n}\n{e}")))
        .collect();
    eprintln!(
        "{} builds in {:.1}s, {} failed",
        results.len(),
        start.elapsed().as_secs_f64(),
        failed.len()
    );
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
}
