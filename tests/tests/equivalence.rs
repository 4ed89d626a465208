//! Equivalence with peers (issue 4, "Evidence"; issue 17): every case of `tests/corpus/` is
//! built by `kiln build` and by its peers, `buildah bud --isolation chroot` and docker's BuildKit
//! (the one inside docker.io 20.10's `dockerd`, given the case through the Engine API's
//! `POST /build?version=2`), as the case's `peers` file says (both when it has none). kiln's
//! image must hold the same files as each peer's (path, type, mode, uid/gid, size, content
//! digest, link target, hard-link group) and the same config (Env, Cmd, Entrypoint, WorkingDir,
//! User, ExposedPorts, Volumes, Labels, StopSignal, Healthcheck, Shell, OnBuild). Where a case
//! has an `expect` file, running each image must print exactly that on stdout: kiln's and
//! BuildKit's with `docker run --rm --network none` in a real `dockerd` (started once for the
//! test; kiln's loaded from its `--tar-path` tarball), buildah's with `buildah run` of its
//! Entrypoint + Cmd (which applies the image's User, WorkingDir and Env as `docker run` does).
//!
//! Always run (needs root, buildah, docker-registry, busybox-static, docker.io; skipped with a
//! reason when one is absent, failed instead under CI's `KILN_REQUIRE_REGISTRY`):
//! - the peers' half: each case builds, its `expect` holds, and a second buildah build of the
//!   case in a fresh storage compares equal to the first (the comparison is deterministic);
//! - `mutations_are_detected`: a layout changed by a mode, a whiteout, an opaque directory, a new
//!   hard link or a config field compares unequal, and `docker run` of an image whose case has a
//!   wrong `expect` is reported.
//!
//! A case kiln cannot build FAILS; nothing is skipped. kiln's binary
//! is `$KILN_BIN`, else `kiln` in the target directory this test runs from (`target/debug/kiln`
//! for `cargo test`): this crate cannot use `CARGO_BIN_EXE_kiln` (that is only set for
//! kiln-builder's own tests), so build it first:
//! `cargo build -p kiln-builder --bin kiln && cargo test -p kiln-tests --test equivalence`.
//!
//! Other knobs: `KILN_CORPUS_CASES=sub1,sub2` runs only cases whose name contains one of them;
//! `KILN_CORPUS_KEEP=1` keeps the work directory (images, and a `.txt` listing of each);
//! `KILN_CORPUS_JOBS=N` builds N cases at once (default 2); `KILN_EQUIVALENCE_STORAGE_DRIVER`
//! picks buildah's storage driver (default `overlay`: its layers are overlay upper directories,
//! as kiln's, BuildKit's and Docker's are; with `vfs` buildah diffs trees and breaks a hard link
//! made in a later step to a file of an earlier one differently, see 17-hardlinks).
//!
//! Corpus conventions (see tests/corpus/README.md): `FROM ${BASE}` with `ARG BASE` on top, BASE
//! passed as a build argument naming the busybox image this test pushes to its own registry.

use kiln_testkit::dockerd;
use kiln_testkit::registry as registry_server;

use dockerd::Dockerd;
use kiln_tests::corpus::{
    case_filter, compare, corpus_dir, load_cases, load_cases_in, push_base, read_normalised, run,
    tail, tools_here, Case,
};
use kiln_tests::image_tree::{self, ImageTree};
use registry_server::Registry;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why this machine cannot run the buildah half, if it cannot.
fn missing_tools() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if uid.stdout != b"0\n" {
        return Some("not root: buildah --isolation chroot needs root".into());
    }
    for tool in [
        "/usr/bin/buildah",
        registry_server::REGISTRY_BIN,
        "/usr/bin/busybox",
        dockerd::DOCKERD_BIN,
        // Talks to dockerd's build endpoint for the BuildKit references.
        "/usr/bin/curl",
    ] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "{tool} missing (apt-get install -y buildah docker-registry busybox-static docker.io curl)"
            ));
        }
    }
    let cli = Command::new("docker").arg("--version").output();
    if !cli.is_ok_and(|o| o.status.success()) {
        return Some("the docker CLI is missing (apt-get install -y docker.io)".into());
    }
    None
}

/// One buildah storage (root + runroot), so builds can be made on a fresh state.
struct Buildah {
    root: PathBuf,
    runroot: PathBuf,
    driver: String,
}

impl Buildah {
    fn new(dir: &Path) -> Buildah {
        Buildah {
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            driver: std::env::var("KILN_EQUIVALENCE_STORAGE_DRIVER").unwrap_or("overlay".into()),
        }
    }

    fn global(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.root.display().to_string(),
            "--runroot".into(),
            self.runroot.display().to_string(),
            "--storage-driver".into(),
            self.driver.clone(),
        ]
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("/usr/bin/buildah");
        c.args(self.global());
        // Keep the machine's containers.conf/registries.conf from changing what is compared.
        c.env("BUILDAH_ISOLATION", "chroot");
        c
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "--all"]).output();
        if self.driver == "overlay" {
            // containers/storage bind-mounts its overlay home onto itself; it is ours to undo.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.root.join("overlay"))
                .output();
        }
    }
}

/// A registry holding the corpus's base image, two buildah storages, and a Docker daemon that
/// runs kiln's images.
struct Rig {
    registry: Registry,
    base: String,
    /// The base image's history entries, which images built on it keep first.
    base_history: Vec<image_tree::HistoryEntry>,
    first: Buildah,
    second: Buildah,
    /// Stopped (SIGTERM, so it unmounts what it mounted) when the rig drops, on a failed
    /// assertion too.
    docker: Dockerd,
    /// Time spent in `docker load` + `docker run` of kiln's images, summed over the cases.
    docker_time: Mutex<Duration>,
    /// Time spent building, saving and running the BuildKit references, summed over the cases.
    buildkit_time: Mutex<Duration>,
    work: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let registry = Registry::plain();
        // buildah names an image pulled from `oci:DIR` after DIR, and image names are lower
        // case: the work directory's random part must be too.
        static RIGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = tempfile::Builder::new()
            .prefix(&format!("kiln-corpus-{}-{n}", std::process::id()))
            .rand_bytes(0)
            .tempdir()
            .unwrap();
        let first = Buildah::new(&work.path().join("buildah-1"));
        let second = Buildah::new(&work.path().join("buildah-2"));
        let t = Instant::now();
        let base = push_base(&registry.addr, &first.global());
        eprintln!("base image pushed in {:.1}s", t.elapsed().as_secs_f64());
        // make-base.sh leaves the image in the first store under this name.
        let base_dir = work.path().join("base");
        run(first
            .cmd()
            .args(["push", "-q", "kiln-corpus-base"])
            .arg(format!("dir:{}", base_dir.display())))
        .unwrap();
        let base_history = read_normalised(&base_dir).unwrap().history;
        let t = Instant::now();
        let docker = Dockerd::start();
        eprintln!("dockerd started in {:.1}s", t.elapsed().as_secs_f64());
        Rig {
            registry,
            base,
            base_history,
            first,
            second,
            docker,
            docker_time: Mutex::new(Duration::ZERO),
            buildkit_time: Mutex::new(Duration::ZERO),
            work,
        }
    }
}

/// Builds `case` with buildah into `store` and writes it to `out` as a `dir:` image.
///
/// `--format docker` and `dir:` rather than `oci:`: buildah drops HEALTHCHECK from OCI-format
/// images (and converting on `push oci:` drops it too), and Healthcheck is compared. `dir:`
/// keeps the Docker config as built; the reader takes either layout.
fn buildah_build(rig: &Rig, store: &Buildah, case: &Case, out: &Path) -> Result<String, String> {
    let tag = format!(
        "localhost/corpus/{}-{}",
        case.name,
        store
            .root
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let mut c = store.cmd();
    c.args([
        "bud",
        "--isolation",
        "chroot",
        "--layers",
        "--format",
        "docker",
    ])
    .arg("--tls-verify=false")
    .arg("--build-arg")
    .arg(format!("BASE={}", rig.base))
    .args(case.flags());
    c.arg("-f")
        .arg(&case.peer_dockerfile)
        .arg("-t")
        .arg(&tag)
        .arg(&case.dir);
    run(&mut c).map_err(|e| format!("buildah bud: {e}"))?;
    run(store
        .cmd()
        .args(["push", "-q", &tag])
        .arg(format!("dir:{}", out.display())))
    .map_err(|e| format!("buildah push: {e}"))?;
    Ok(tag)
}

/// The name kiln tags `case`'s image with in its `--tar-path` tarball.
fn kiln_tag(case: &Case) -> String {
    format!("kiln-corpus/{}:kiln", case.name)
}

/// Builds `case` with kiln (kaniko's flag names) into the OCI layout `out` and the `docker load`
/// tarball `tar`, tagged [`kiln_tag`] as `--destination` with `--no-push` does.
fn kiln_build(rig: &Rig, case: &Case, out: &Path, tar: &Path) -> Result<(), String> {
    let mut c = case.kiln_build(&rig.base);
    c.arg("--destination")
        .arg(kiln_tag(case))
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(out)
        .arg("--tar-path")
        .arg(tar)
        .arg("--insecure-registry")
        .arg(&rig.registry.addr)
        .arg("--cache-dir")
        .arg(rig.work.path().join("kiln-cache"));
    run(&mut c)
        .map(|_| ())
        .map_err(|e| format!("kiln build: {e}"))
}

/// Runs the image's Entrypoint + Cmd in a buildah container of `image` and checks its stdout
/// against the case's `expect`.
fn check_expect(store: &Buildah, case: &Case, image: &str, tree: &ImageTree) -> Result<(), String> {
    let Some(expect) = &case.expect else {
        return Ok(());
    };
    let strings = |f: &str| -> Vec<String> {
        tree.config
            .get(f)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut argv = strings("Entrypoint");
    argv.extend(strings("Cmd"));
    let ctr = run(store.cmd().args(["from", "-q", "--pull-never", image]))
        .map_err(|e| format!("buildah from {image}: {e}"))?;
    let ctr = String::from_utf8_lossy(&ctr.stdout).trim().to_string();
    // buildah 1.28's chroot isolation now and then loses all of a short command's stdout on a
    // loaded machine (exit 0, nothing printed: seen once in six suite runs here). That is the
    // peer's fault, not the image's, so such a run is tried again; any other outcome counts.
    let mut tries = 0;
    let res = loop {
        tries += 1;
        let res = store
            .cmd()
            .args(["run", "--isolation", "chroot", &ctr, "--"])
            .args(&argv)
            .stdin(Stdio::null())
            .output();
        match &res {
            Ok(o)
                if o.status.success() && o.stdout.is_empty() && !expect.is_empty() && tries < 3 =>
            {
                eprintln!("{}: buildah run printed nothing; trying again", case.name);
            }
            _ => break res,
        }
    };
    let _ = store.cmd().args(["rm", &ctr]).output();
    let out = res.map_err(|e| format!("buildah run: {e}"))?;
    compare_output(case, expect, &format!("buildah run of {argv:?}"), &out)
}

/// Whether a run of `case`'s image succeeded and printed exactly `expect` on stdout; the error
/// names the case, how it was run, and both outputs.
fn compare_output(case: &Case, expect: &str, how: &str, out: &Output) -> Result<(), String> {
    let got = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && got == expect {
        return Ok(());
    }
    Err(format!(
        "{}: {how} ({}) printed:\n{got}--- but expect says:\n{expect}--- stderr:\n{}",
        case.name,
        out.status,
        tail(&out.stderr, 10)
    ))
}

/// Loads kiln's tarball `tar` of `case` into the rig's `dockerd` and checks that
/// `docker run --rm --network none` of it prints the case's `expect`.
///
/// `docker load` of `--tar-path` rather than a push and `docker pull`: it is kaniko's documented
/// way to hand an image to a local daemon, it checks kiln's docker-tar exporter (layout, tag)
/// against the real consumer, and pushing is covered by the registry and dind tests already.
fn docker_check(rig: &Rig, case: &Case, tar: &Path) -> Result<(), String> {
    let Some(expect) = &case.expect else {
        return Ok(());
    };
    let t = Instant::now();
    let res = docker_load_run(&rig.docker, case, expect, tar);
    *rig.docker_time.lock().unwrap() += t.elapsed();
    res
}

fn docker_load_run(docker: &Dockerd, case: &Case, expect: &str, tar: &Path) -> Result<(), String> {
    let tag = kiln_tag(case);
    let loaded = run(docker.docker().arg("load").arg("-i").arg(tar))
        .map_err(|e| format!("{}: docker load of kiln's tarball: {e}", case.name))?;
    let loaded = String::from_utf8_lossy(&loaded.stdout);
    // Docker names what it loaded by the tarball's RepoTags: the tag kiln was given.
    if !loaded
        .lines()
        .any(|l| l.strip_prefix("Loaded image: ") == Some(tag.as_str()))
    {
        return Err(format!(
            "{}: docker load did not load {tag}; it said:\n{loaded}",
            case.name
        ));
    }
    let out = docker
        .docker()
        .args(["run", "--rm", "--network", "none", &tag])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: docker run: {e}", case.name))?;
    compare_output(case, expect, &format!("docker run of {tag}"), &out)
}

/// Percent-encodes `s` for a URL query (everything but RFC 3986's unreserved characters).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The name `case`'s BuildKit reference is tagged with in the rig's `dockerd`.
fn buildkit_tag(case: &Case) -> String {
    format!("kiln-corpus/{}:buildkit", case.name)
}

/// Builds `case` with the BuildKit inside the rig's `dockerd` and unpacks `docker save` of the
/// result into `out`.
///
/// The Engine API's `POST /build?version=2` rather than `DOCKER_BUILDKIT=1 docker build`: the
/// docker CLI installed beside docker.io 20.10's daemon is a newer one that only reaches
/// BuildKit through the buildx plugin, which Debian 12 does not package. Given the context as
/// the request body, the daemon serves it to BuildKit's Dockerfile frontend as a remote tarball
/// context, so no client session is needed; the price is that the frontend then reads no
/// `.dockerignore` and no secret can be passed (the cases that need either leave `buildkit` out
/// of their `peers`). The network is the host's, as this `dockerd` has no bridge. The base image
/// comes from the test's plain-HTTP registry on 127.0.0.1, which BuildKit's resolver reaches
/// over plain HTTP as any loopback registry.
fn buildkit_build(rig: &Rig, case: &Case, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).unwrap();
    let context = out.with_extension("context.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&case.dir)
        .arg("-cf")
        .arg(&context)
        .arg("."))?;
    let mut args = serde_json::Map::new();
    args.insert("BASE".into(), rig.base.clone().into());
    for a in &case.build_args {
        let (k, v) = a.split_once('=').unwrap_or((a, ""));
        args.insert(k.into(), v.into());
    }
    let dockerfile = case.peer_dockerfile.file_name().unwrap().to_string_lossy();
    let tag = buildkit_tag(case);
    let mut url = format!(
        "http://docker/v1.41/build?version=2&networkmode=host&t={}&dockerfile={}&buildargs={}",
        query_escape(&tag),
        query_escape(&dockerfile),
        query_escape(&serde_json::Value::Object(args).to_string())
    );
    if let Some(t) = &case.target {
        url.push_str(&format!("&target={}", query_escape(t)));
    }
    let res = run(Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(rig.docker.socket())
        .args(["-X", "POST", "-H", "Content-Type: application/x-tar"])
        .arg("--data-binary")
        .arg(format!("@{}", context.display()))
        .arg(&url))
    .map_err(|e| format!("BuildKit build: {e}"))?;
    // The build's outcome is in the JSON stream, the HTTP status is 200 either way.
    for line in String::from_utf8_lossy(&res.stdout).lines() {
        let msg: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(e) = msg.get("error") {
            return Err(format!("BuildKit build failed: {e}"));
        }
    }
    let saved = out.with_extension("tar");
    run(rig
        .docker
        .docker()
        .args(["save", "-o"])
        .arg(&saved)
        .arg(&tag))
    .map_err(|e| format!("docker save of BuildKit's image: {e}"))?;
    run(Command::new("tar")
        .arg("-C")
        .arg(out)
        .arg("-xf")
        .arg(&saved))?;
    Ok(())
}

/// Builds, reads and (with an `expect`) runs `case`'s BuildKit reference.
fn buildkit_reference(rig: &Rig, case: &Case, out: &Path) -> Result<ImageTree, String> {
    let t = Instant::now();
    let res = buildkit_build(rig, case, out).and_then(|_| {
        let tree = read_normalised(out)?;
        if let Some(expect) = &case.expect {
            let tag = buildkit_tag(case);
            let res = rig
                .docker
                .docker()
                .args(["run", "--rm", "--network", "none", &tag])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("{}: docker run: {e}", case.name))?;
            compare_output(case, expect, &format!("docker run of {tag}"), &res)?;
        }
        Ok(tree)
    });
    *rig.buildkit_time.lock().unwrap() += t.elapsed();
    res
}

/// Builds `case` with buildah twice (in fresh storages) and returns the first image; a second
/// image that differs, or an `expect` the first does not print, is pushed onto `errors`.
fn buildah_reference(
    rig: &Rig,
    case: &Case,
    out: &Path,
    errors: &mut Vec<String>,
) -> Result<ImageTree, String> {
    let peer_dir = out.join("buildah-1");
    let tag = buildah_build(rig, &rig.first, case, &peer_dir)?;
    let peer = read_normalised(&peer_dir)?;
    if let Err(e) = check_expect(&rig.first, case, &tag, &peer) {
        errors.push(format!("buildah image: {e}"));
    }
    let again_dir = out.join("buildah-2");
    match buildah_build(rig, &rig.second, case, &again_dir)
        .and_then(|_| read_normalised(&again_dir))
    {
        Ok(again) => {
            if let Err(e) = compare(&peer, &again, "buildah", "buildah again") {
                errors.push(format!("buildah twice (fresh storage) differs: {e}"));
            }
        }
        Err(e) => errors.push(e),
    }
    Ok(peer)
}

/// Everything checked for one case; the error names every check that failed.
fn check_case(rig: &Rig, case: &Case) -> Result<(), String> {
    let out = rig.work.path().join("images").join(&case.name);
    std::fs::create_dir_all(&out).unwrap();
    let mut errors = Vec::new();
    let mut references = Vec::new();
    if case.buildah {
        match buildah_reference(rig, case, &out, &mut errors) {
            Ok(t) => references.push(("buildah", t)),
            Err(e) => errors.push(e),
        }
    }
    if case.buildkit {
        if !case.secrets.is_empty() {
            errors.push(
                "BuildKit is given no secrets (no client session): leave buildkit out of peers"
                    .into(),
            );
        }
        match buildkit_reference(rig, case, &out.join("buildkit")) {
            Ok(t) => references.push(("BuildKit", t)),
            Err(e) => errors.push(format!("BuildKit reference: {e}")),
        }
    }
    // History texts name the instructions as written: BuildKit's are compared only where it
    // builds the very Dockerfile kiln builds (not a Dockerfile.peer).
    let history = case.buildkit && case.peer_dockerfile == case.dockerfile;
    if !history && !case.buildkit_history.is_empty() {
        errors.push("buildkit-history in a case whose BuildKit history is not compared".into());
    }
    let kiln_dir = out.join("kiln-oci");
    let kiln_tar = out.join("kiln.tar");
    match kiln_build(rig, case, &kiln_dir, &kiln_tar).and_then(|_| read_normalised(&kiln_dir)) {
        Ok(kiln) => {
            for (name, reference) in &references {
                if let Err(e) = compare(reference, &kiln, name, "kiln") {
                    errors.push(format!("kiln differs from {name}: {e}"));
                }
                if *name == "BuildKit" && history {
                    let d = image_tree::history_diff(
                        &reference.history,
                        &kiln.history,
                        &rig.base_history,
                        &case.buildkit_history,
                        name,
                    );
                    if !d.is_empty() {
                        errors.push(format!(
                            "kiln's history differs from {name}'s:\n{}",
                            d.join("\n")
                        ));
                    }
                }
            }
            if let Err(e) = docker_check(rig, case, &kiln_tar) {
                errors.push(format!("kiln image: {e}"));
            }
        }
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// A case's name, how long it took and what failed.
type CaseResult = (String, Duration, Result<(), String>);

#[test]
fn corpus_builds_alike() {
    if !tools_here("corpus_builds_alike", missing_tools()) {
        return;
    }
    let filter = case_filter();
    let cases = load_cases(&filter);
    assert!(
        !cases.is_empty(),
        "no corpus case selected (KILN_CORPUS_CASES filters by name)"
    );
    if filter.is_empty() {
        assert!(
            cases.len() >= 30,
            "the corpus has {} cases, issue 4 asks for 30",
            cases.len()
        );
    }
    let rig = Rig::start();
    let jobs: usize = std::env::var("KILN_CORPUS_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(2);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<CaseResult>> = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let t = Instant::now();
                let r = check_case(&rig, case);
                let took = t.elapsed();
                eprintln!(
                    "{} {} ({:.1}s)",
                    if r.is_ok() { "ok  " } else { "FAIL" },
                    case.name,
                    took.as_secs_f64()
                );
                results.lock().unwrap().push((case.name.clone(), took, r));
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
        "{} cases in {:.1}s with {jobs} jobs (buildah twice + BuildKit + kiln), {} failed; \
         docker load + run of kiln's images took {:.1}s in all, the BuildKit references {:.1}s",
        results.len(),
        start.elapsed().as_secs_f64(),
        failed.len(),
        rig.docker_time.lock().unwrap().as_secs_f64(),
        rig.buildkit_time.lock().unwrap().as_secs_f64()
    );
    if std::env::var_os("KILN_CORPUS_KEEP").is_some() {
        eprintln!("work directory kept: {}", rig.work.keep().display());
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// The comparison itself must see differences.

/// Appends an uncompressed layer made of `entries` to the `dir:` image in `dir`.
fn add_layer(dir: &Path, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let bytes = b.into_inner().unwrap();
    let hex = sha256_hex(&bytes);
    std::fs::write(dir.join(&hex), &bytes).unwrap();
    let mpath = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
        "digest": format!("sha256:{hex}"),
        "size": bytes.len(),
    }));
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_cksum();
    h
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn mutations_are_detected() {
    if !tools_here("mutations_are_detected", missing_tools()) {
        return;
    }
    let rig = Rig::start();
    let case = load_cases_named("17-hardlinks");
    let orig = rig.work.path().join("orig");
    buildah_build(&rig, &rig.first, &case, &orig).unwrap();
    let base = read_normalised(&orig).unwrap();
    assert!(base.files.contains_key("h/a") && base.files.contains_key("bin/busybox"));
    assert!(
        image_tree::diff(&base, &read_normalised(&orig).unwrap(), "a", "b").is_empty(),
        "an image compares equal to itself"
    );

    let mutated = |name: &str, build: &dyn Fn(&mut tar::Builder<Vec<u8>>)| -> Vec<String> {
        let dir = rig.work.path().join(name);
        copy_dir(&orig, &dir);
        add_layer(&dir, build);
        let t = read_normalised(&dir).unwrap();
        let d = image_tree::diff(&base, &t, "orig", name);
        eprintln!("{name}:\n{}", d.join("\n"));
        d
    };

    // A mode changed (setuid added) on a file of the base.
    let d = mutated("mode", &|b| {
        let data = std::fs::read("/usr/bin/busybox").unwrap();
        let h = header(
            "bin/busybox",
            tar::EntryType::Regular,
            0o4755,
            data.len() as u64,
        );
        b.append(&h, &data[..]).unwrap();
    });
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("~ /bin/busybox") && d[0].contains("4755"),
        "{d:?}"
    );

    // A whiteout: the file disappears.
    let d = mutated("whiteout", &|b| {
        b.append(
            &header("h/.wh.c", tar::EntryType::Regular, 0o644, 0),
            &[][..],
        )
        .unwrap();
    });
    assert!(d.iter().any(|l| l.starts_with("- /h/c")), "{d:?}");

    // An opaque directory: everything the lower layers had under /h goes; a new file stays.
    let d = mutated("opaque", &|b| {
        b.append(&header("h/", tar::EntryType::Directory, 0o755, 0), &[][..])
            .unwrap();
        b.append(
            &header("h/.wh..wh..opq", tar::EntryType::Regular, 0o644, 0),
            &[][..],
        )
        .unwrap();
        b.append(
            &header("h/fresh", tar::EntryType::Regular, 0o644, 3),
            &b"new"[..],
        )
        .unwrap();
    });
    let gone: Vec<&String> = base.files.keys().filter(|k| k.starts_with("h/")).collect();
    assert!(!gone.is_empty());
    for k in gone {
        assert!(
            d.iter().any(|l| l.starts_with(&format!("- /{k}:"))),
            "{k}: {d:?}"
        );
    }
    assert!(d.iter().any(|l| l.starts_with("+ /h/fresh")), "{d:?}");

    // A hard link added: both names now list each other.
    let d = mutated("hardlink", &|b| {
        b.append(
            &header("h/extra", tar::EntryType::Regular, 0o644, 2),
            &b"x\n"[..],
        )
        .unwrap();
        let mut h = header("h/extra-link", tar::EntryType::Link, 0o644, 0);
        h.set_link_name("h/extra").unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    });
    assert!(
        d.iter()
            .any(|l| l.starts_with("+ /h/extra-link") && l.contains("links=[\"h/extra\"]")),
        "{d:?}"
    );

    // Content changed, same size.
    let d = mutated("content", &|b| {
        let old = base.files.get("h/a").unwrap();
        let data = vec![b'z'; old.size as usize];
        b.append(
            &header("h/a", tar::EntryType::Regular, old.mode, old.size),
            &data[..],
        )
        .unwrap();
    });
    assert!(
        d.iter()
            .any(|l| l.starts_with("~ /h/a") && l.contains("sha256=")),
        "{d:?}"
    );

    // A config field changed.
    let dir = rig.work.path().join("config");
    copy_dir(&orig, &dir);
    let mpath = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let chex = m["config"]["digest"].as_str().unwrap()[7..].to_string();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&chex)).unwrap()).unwrap();
    cfg["config"]["Cmd"] = serde_json::json!(["echo", "changed"]);
    cfg["config"]["ExposedPorts"] = serde_json::json!({"8080/tcp": {}});
    let bytes = serde_json::to_vec(&cfg).unwrap();
    let nhex = sha256_hex(&bytes);
    std::fs::write(dir.join(&nhex), &bytes).unwrap();
    m["config"]["digest"] = serde_json::json!(format!("sha256:{nhex}"));
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let d = image_tree::diff(&base, &read_normalised(&dir).unwrap(), "orig", "config");
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d[0].contains("config Cmd") && d[1].contains("config ExposedPorts"),
        "{d:?}"
    );

    // A case whose `expect` is wrong, built by kiln and run by docker: the check names the
    // case, what `expect` says and what the image printed; with the right `expect` it passes.
    let cases = rig.work.path().join("cases");
    let dir = cases.join("01-minimal-wrong-expect");
    copy_dir(&corpus_dir().join("01-minimal"), &dir);
    std::fs::write(dir.join("expect"), "not what it prints\n").unwrap();
    let wrong = load_cases_in(&cases, &[]).pop().unwrap();
    assert_eq!(wrong.name, "01-minimal-wrong-expect");
    let tar = rig.work.path().join("wrong-expect.tar");
    kiln_build(
        &rig,
        &wrong,
        &rig.work.path().join("wrong-expect-oci"),
        &tar,
    )
    .unwrap();
    let e = docker_check(&rig, &wrong, &tar).unwrap_err();
    eprintln!("wrong expect:\n{e}");
    assert!(
        e.starts_with("01-minimal-wrong-expect: docker run")
            && e.contains("printed:\nhello from the corpus\n")
            && e.contains("expect says:\nnot what it prints\n"),
        "{e}"
    );
    let right = Case {
        expect: Some("hello from the corpus\n".into()),
        ..wrong
    };
    docker_check(&rig, &right, &tar).unwrap();
}

fn load_cases_named(name: &str) -> Case {
    let mut c = load_cases(&[name.to_string()]);
    let i = c.iter().position(|c| c.name == name).unwrap();
    c.swap_remove(i)
}
