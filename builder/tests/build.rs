//! `kiln build` end to end, as a user runs it: a base image built by kiln from the host's static
//! busybox and pushed to a real `docker-registry`, images built on it with RUN, COPY, users and
//! deletions, pushed and read back with skopeo, the lazy-base push, a failing RUN, the layer
//! cache, and the demo.

#[path = "support/registry_server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{Proxy, Registry};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run kiln")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "kiln failed\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn need_tools() -> bool {
    let have = |p: &str| Path::new(p).exists();
    assert!(
        have("/bin/busybox") && have(support::REGISTRY_BIN) && have("/usr/bin/skopeo"),
        "these tests need busybox-static, docker-registry and skopeo (.ci/run installs them)"
    );
    true
}

/// A context with `files` and a Dockerfile.
fn context(dockerfile: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    for (name, bytes) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        if name == &"busybox" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    dir
}

/// Builds and pushes `REGISTRY/base:1`: busybox installed by a RUN step.
fn push_base(registry: &str, cache: &Path) -> String {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let ctx = context(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN mkdir -p /etc && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && \
         echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd && \
         printf 'root:x:0:\\napp:x:1000:\\n' > /etc/group && echo gone > /etc/doomed\n",
        &[("busybox", &busybox)],
    );
    let base = format!("{registry}/base:1");
    ok(&build(
        ctx.path(),
        registry,
        cache,
        &["--destination", &base],
    ));
    base
}

/// `kiln build` of `ctx` with plain HTTP to `registry` and its own `cache` dir, plus `extra`.
fn build(ctx: &Path, registry: &str, cache: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "build",
        "--context",
        ctx.to_str().unwrap(),
        "--insecure-registry",
        registry,
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    kiln(&args)
}

/// A registry, a work dir with a cache, and the busybox base pushed to the registry.
struct Fixture {
    reg: Registry,
    work: tempfile::TempDir,
    cache: PathBuf,
    base: String,
}

fn fixture() -> Fixture {
    need_tools();
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let base = push_base(&reg.addr, &cache);
    Fixture {
        reg,
        work,
        cache,
        base,
    }
}

fn skopeo_digest(image: &str) -> String {
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    kiln::blob::Digest::of(&o.stdout).to_string()
}

/// The image's merged filesystem, extracted through skopeo's OCI copy (a peer's reading).
fn flatten(image: &str, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:x", layout.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy: {}", text(&o.stderr));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let root = work.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let f = std::fs::File::open(blob(l["digest"].as_str().unwrap())).unwrap();
        kiln::layer::extract(f, &root, &kiln::layer::ExtractOptions::default()).unwrap();
    }
    root
}

#[test]
fn builds_runs_steps_and_pushes_what_skopeo_reads_back() {
    let Fixture {
        reg,
        work,
        cache,
        base,
    } = fixture();
    let ctx = context(
        &format!(
            "FROM {base}\nENV GREETING=hi\nWORKDIR /app\nCOPY --chown=app:app hello.txt ./\n\
             RUN echo \"$GREETING $(id -u)\" > /app/run.txt && rm /etc/doomed\n\
             USER app\nRUN test \"$(id -u):$(id -g)\" = 1000:1000 && test \"$HOME\" = /home/app\n\
             CMD [\"cat\", \"/app/run.txt\"]\n"
        ),
        &[("hello.txt", b"hello\n")],
    );
    let dest = format!("{}/app:1", reg.addr);
    let digest_file = work.path().join("digest");
    let o = build(
        ctx.path(),
        &reg.addr,
        &cache,
        &[
            "--destination",
            &dest,
            "--digest-file",
            digest_file.to_str().unwrap(),
        ],
    );
    ok(&o);
    let err = text(&o.stderr);
    assert!(err.contains("RUN echo"), "progress names the steps:\n{err}");
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(
        skopeo_digest(&dest),
        digest,
        "the registry has what kiln says it pushed"
    );
    let root = flatten(&dest, work.path());
    assert_eq!(
        std::fs::read_to_string(root.join("app/run.txt")).unwrap(),
        "hi 0\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app/hello.txt")).unwrap(),
        "hello\n"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root.join("app/hello.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000), "--chown by name");
    assert!(
        !root.join("etc/doomed").exists(),
        "a file deleted by RUN is gone"
    );
    assert!(root.join("etc/passwd").exists());
    assert!(!root.join("proc/self").exists() && !root.join("etc/resolv.conf").exists());
}

#[test]
fn a_failing_run_names_the_step_its_exit_code_and_output() {
    let f = fixture();
    let ctx = context(
        &format!("FROM {}\n\nRUN echo about to fail && exit 3\n", f.base),
        &[],
    );
    let o = build(ctx.path(), &f.reg.addr, &f.cache, &["--no-push"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    let last = err.lines().rfind(|l| l.starts_with("kiln: ")).unwrap_or("");
    assert!(last.contains("Dockerfile:3:"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("about to fail"), "{err}");
}

#[test]
fn a_rebuild_hits_the_cache_and_gives_the_same_image() {
    let Fixture {
        reg,
        work,
        cache,
        base,
    } = fixture();
    let ctx = context(
        &format!("FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n"),
        &[("a.txt", b"A\n")],
    );
    let build = |digest: &Path| {
        let flags = ["--no-push", "--cache", "--reproducible", "--digest-file"];
        let mut extra = flags.to_vec();
        extra.push(digest.to_str().unwrap());
        build(ctx.path(), &reg.addr, &cache, &extra)
    };
    let (d1, d2, d3) = (
        work.path().join("d1"),
        work.path().join("d2"),
        work.path().join("d3"),
    );
    let o = build(&d1);
    ok(&o);
    let o = build(&d2);
    ok(&o);
    let err = text(&o.stderr);
    assert!(err.contains("0 steps run, 2 cached"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&d1).unwrap(),
        std::fs::read_to_string(&d2).unwrap()
    );
    // Content, not mtimes, keys COPY: a touched file is still a hit; a changed one is not.
    std::fs::write(ctx.path().join("a.txt"), "A\n").unwrap();
    let o = build(&d3);
    ok(&o);
    assert!(text(&o.stderr).contains("0 steps run, 2 cached"));
    std::fs::write(ctx.path().join("a.txt"), "changed\n").unwrap();
    let o = build(&d3);
    ok(&o);
    assert!(
        text(&o.stderr).contains("2 steps run, 0 cached"),
        "{}",
        text(&o.stderr)
    );
    assert_ne!(
        std::fs::read_to_string(&d1).unwrap(),
        std::fs::read_to_string(&d3).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_only_image_is_pushed_without_downloading_the_base() {
    need_tools();
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let base = push_base(&proxy.addr, &cache);
    // A fresh cache: nothing of the base is local.
    let cache2 = work.path().join("cache2");
    let ctx = context(
        &format!(
            "FROM {base}\nCOPY --link app.conf /etc/app.conf\nENV MODE=prod\nLABEL a=b\nCMD [\"sh\"]\n"
        ),
        &[("app.conf", b"x=1\n")],
    );
    proxy.clear();
    let dest = format!("{}/lazy:1", proxy.addr);
    let (ctx_dir, addr) = (ctx.path().to_path_buf(), proxy.addr.clone());
    let d = dest.clone();
    let o = tokio::task::spawn_blocking(move || {
        build(&ctx_dir, &addr, &cache2, &["--destination", &d])
    })
    .await
    .unwrap();
    ok(&o);
    let blob_gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/"))
        .collect();
    // The config is the one blob read: layers are found by HEAD or mounted.
    assert!(blob_gets.len() <= 1, "base blobs downloaded: {blob_gets:?}");
    assert!(
        text(&o.stderr).contains("0 B downloaded"),
        "{}",
        text(&o.stderr)
    );
    let root = flatten(&dest, work.path());
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/app.conf")).unwrap(),
        "x=1\n"
    );
}

/// kaniko's CI shape: every job starts empty and shares only the cache repository. A rebuild
/// with no change runs no step, downloads no layer, and pushes the same image by mounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_cache_repository_on_fresh_state_downloads_no_layer() {
    need_tools();
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let work = tempfile::tempdir().unwrap();
    let base = push_base(&proxy.addr, &work.path().join("cache-base"));
    let ctx = context(
        &format!(
            "FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt /a.txt > /b.txt\nENV X=1\nRUN rm /etc/doomed\n"
        ),
        &[("a.txt", b"A\n")],
    );
    let cache_repo = format!("--cache-repo={}/cache", proxy.addr);
    let run = |n: u32| {
        let (ctx, addr, cache_repo) = (
            ctx.path().to_path_buf(),
            proxy.addr.clone(),
            cache_repo.clone(),
        );
        let cache = work.path().join(format!("cache{n}"));
        let dest = format!("{}/app:{n}", proxy.addr);
        let digest = work.path().join(format!("digest{n}"));
        async move {
            let d = dest.clone();
            let o = tokio::task::spawn_blocking(move || {
                let extra = [
                    "--destination",
                    &d,
                    "--cache",
                    &cache_repo,
                    "--reproducible",
                ];
                let mut extra = extra.to_vec();
                let digest = digest.to_str().unwrap().to_string();
                extra.extend(["--digest-file", &digest]);
                let o = build(&ctx, &addr, &cache, &extra);
                (o, std::fs::read_to_string(&digest).unwrap_or_default())
            })
            .await
            .unwrap();
            (o, dest)
        }
    };
    let ((o1, d1), _) = run(1).await;
    ok(&o1);
    assert!(
        text(&o1.stderr).contains("3 steps run, 0 cached"),
        "{}",
        text(&o1.stderr)
    );
    proxy.clear();
    let ((o2, d2), dest2) = run(2).await;
    ok(&o2);
    let err = text(&o2.stderr);
    assert!(err.contains("0 steps run, 3 cached"), "{err}");
    assert!(err.contains("0 B downloaded"), "{err}");
    assert_eq!(d1, d2, "the cached rebuild gives another image");
    // No layer blob crossed the wire: neither the base's nor the cached steps'.
    let manifest: serde_json::Value = serde_json::from_slice(
        &Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{dest2}"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers.len(),
        3 + 3,
        "base layers and three steps: {manifest}"
    );
    for l in &layers {
        let gets = proxy.count("GET", &format!("/blobs/{l}"));
        assert_eq!(gets, 0, "layer {l} downloaded by the cached rebuild");
    }
    let root = flatten(&dest2, work.path());
    assert_eq!(
        std::fs::read_to_string(root.join("b.txt")).unwrap(),
        "A\nA\n"
    );
    assert!(!root.join("etc/doomed").exists());
}

#[test]
fn the_demo_builds_its_embedded_dockerfile() {
    need_tools();
    let work = tempfile::tempdir().unwrap();
    let o = kiln(&[
        "demo",
        "--dir",
        work.path().to_str().unwrap(),
        "--cache-dir",
        work.path().join("cache").to_str().unwrap(),
    ]);
    ok(&o);
    let err = text(&o.stderr);
    assert!(
        !err.contains("[\"test\""),
        "the test stage is not built:\n{err}"
    );
    assert!(work.path().join("image.tar").is_file());
    let layout = work.path().join("image-oci");
    let o = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}", layout.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "kiln demo");
}
