//! `kiln build` end to end, as a user runs it: a base image built by kiln from the host's static
//! busybox and pushed to a real `docker-registry`, images built on it with RUN, COPY, users and
//! deletions, pushed and read back with skopeo, the lazy-base push, a failing RUN, the layer
//! cache, and the demo.

use kiln_testkit::kiln_output;
use kiln_testkit::layout;
use kiln_testkit::overlay;
use kiln_testkit::privilege;
use kiln_testkit::registry as support;
use kiln_testkit::tree;

use kiln::blob::Digest;
use kiln::cache_dir::CacheDir;
use kiln::snapshot::ExtractedLayers;
use kiln_output::{ok, text};
use layout::unpack_layout;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{Proxy, Registry};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run kiln")
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
    build_env(ctx, registry, cache, extra, &[])
}

/// [`build`] with `env` added to kiln's environment.
fn build_env(
    ctx: &Path,
    registry: &str,
    cache: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
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
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .env_remove("DOCKER_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run kiln")
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

/// A registry behind a request-logging proxy, a work dir, and the busybox base pushed through
/// the proxy.
async fn proxied() -> (Registry, Proxy, tempfile::TempDir, String) {
    need_tools();
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let work = tempfile::tempdir().unwrap();
    let base = push_base(&proxy.addr, &work.path().join("cache-base"));
    (reg, proxy, work, base)
}

/// [`build`] on a blocking thread, leaving the test's runtime free to serve the proxy.
async fn build_off_thread(ctx: &Path, registry: &str, cache: &Path, extra: &[&str]) -> Output {
    let (ctx, registry, cache) = (ctx.to_path_buf(), registry.to_string(), cache.to_path_buf());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        build(&ctx, &registry, &cache, &extra)
    })
    .await
    .unwrap()
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
    let root = work.join("rootfs");
    unpack_layout(&layout, &root);
    root
}

/// BuildKit's semantics where kiln once differed: a scratch image's config defaults (PATH,
/// WorkingDir `/`), `root` named in COPY --chown and WORKDIR of a stage without /etc/passwd,
/// the ARGs a stage inherits from the stage it is built on, and an ARG whose name is a
/// variable. No registry: the image is read from an OCI layout.
#[test]
fn scratch_defaults_root_without_passwd_and_inherited_args_reach_the_image() {
    let work = tempfile::tempdir().unwrap();
    let ctx = context(
        "FROM scratch AS base\nARG NAME=base\nUSER root\nWORKDIR /made\n\
         FROM base AS dev\nARG NAME=\"$NAME-dev\"\nENV src=file3\nARG ${src}=a.txt\n\
         COPY --chown=root:root $file3 /copied\nLABEL name=$NAME\n\
         FROM scratch AS bare\nCOPY a.txt /\n",
        &[("a.txt", b"hello\n")],
    );
    let build = |target: &str| {
        let layout = work.path().join(target);
        let o = kiln(&[
            "build",
            "-c",
            ctx.path().to_str().unwrap(),
            "--no-push",
            "--target",
            target,
            "--cache-dir",
            work.path().join("cache").to_str().unwrap(),
            "--oci-layout-path",
            layout.to_str().unwrap(),
        ]);
        ok(&o);
        let root = work.path().join(format!("{target}-root"));
        (unpack_layout(&layout, &root)["config"].clone(), root)
    };
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let (bare, _) = build("bare");
    assert_eq!(bare["Env"], serde_json::json!([path]), "{bare:#}");
    assert_eq!(bare["WorkingDir"], "/", "{bare:#}");

    let (dev, root) = build("dev");
    assert_eq!(
        dev["Env"],
        serde_json::json!([path, "src=file3"]),
        "{dev:#}"
    );
    assert_eq!(dev["WorkingDir"], "/made");
    assert_eq!(dev["User"], "root");
    assert_eq!(dev["Labels"]["name"], "base-dev", "{dev:#}");
    assert_eq!(std::fs::read(root.join("copied")).unwrap(), b"hello\n");
    assert!(root.join("made").is_dir());
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

/// A base image the registry says does not exist is the input's failure (1), named at the line
/// of its FROM as other Dockerfile errors are.
#[test]
fn a_base_image_the_registry_lacks_exits_1_naming_its_from_line() {
    need_tools();
    let reg = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let ctx = context(
        &format!(
            "FROM scratch AS first\nENV A=1\nFROM {}/nothing-here:1\n",
            reg.addr
        ),
        &[],
    );
    let o = build(
        ctx.path(),
        &reg.addr,
        &work.path().join("cache"),
        &["--no-push"],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("kiln: ")).unwrap_or("");
    assert!(
        last.contains(&format!(
            "/Dockerfile:3: base image {0}/nothing-here:1: manifest 1 not found in {0}/nothing-here",
            reg.addr
        )),
        "{err}"
    );
}

/// The history holds BuildKit's entry for each step after the base's (kept first): texts,
/// comment and empty_layer as `docker history` shows BuildKit's, an empty layer for a WORKDIR
/// that exists. A secret is in none of it: a RUN's `|N` prefix lists the values the step's
/// ARGs have, never a secret's, even one given to the step under an ARG's name.
#[test]
fn the_history_is_buildkits_and_holds_no_secret() {
    let f = fixture();
    let ctx = context(
        &format!(
            "FROM {}\nARG TOKEN=from-arg\nARG NOVAL\n\
             RUN --mount=type=secret,id=tok,env=TOKEN --mount=type=secret,id=tok,target=/s \
             test \"${{#TOKEN}}\" = 12 && test \"$(cat /s)\" = \"$TOKEN\"\n\
             WORKDIR /etc\nCOPY --chmod=600 a.txt /a\nCMD [\"sh\"]\n",
            f.base
        ),
        &[("a.txt", b"A\n")],
    );
    let secret = f.work.path().join("tok");
    std::fs::write(&secret, "s3cret-value").unwrap();
    let layout = f.work.path().join("layout");
    let o = build(
        ctx.path(),
        &f.reg.addr,
        &f.cache,
        &[
            "--no-push",
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "--secret",
            &format!("id=tok,src={}", secret.display()),
        ],
    );
    ok(&o);
    let base = raw_json(&f.base, true)["history"].clone();
    let cfg = unpack_layout(&layout, &f.work.path().join("root"));
    let history = cfg["history"].as_array().unwrap();
    let kept = base.as_array().unwrap().len();
    assert_eq!(
        history[..kept],
        base.as_array().unwrap()[..],
        "base entries kept"
    );
    let steps: Vec<(&str, &str, bool)> = history[kept..]
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap(),
                h["comment"].as_str().unwrap(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let bk = "buildkit.dockerfile.v0";
    assert_eq!(
        steps,
        [
            ("ARG TOKEN=from-arg", bk, true),
            ("ARG NOVAL", bk, true),
            (
                "RUN |2 TOKEN=from-arg NOVAL= /bin/sh -c test \"${#TOKEN}\" = 12 \
                 && test \"$(cat /s)\" = \"$TOKEN\" # buildkit",
                bk,
                false
            ),
            ("WORKDIR /etc", bk, false),
            ("COPY --chmod=600 a.txt /a # buildkit", bk, false),
            ("CMD [\"sh\"]", bk, true),
        ]
    );
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    let made = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(layers, made, "one layer per entry that is not empty_layer");
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(
        !text.contains("s3cret"),
        "the secret's value is in the config: {text}"
    );
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

/// A RUN reads what its bind mounts hold: a changed context file or source stage is a miss,
/// as BuildKit keys a mount by its content.
#[test]
fn a_run_with_bind_mounts_misses_when_what_it_binds_changes() {
    let Fixture {
        reg, cache, base, ..
    } = fixture();
    let ctx = context(
        &format!(
            "FROM {base} AS src\nCOPY b.txt /b.txt\n\
             FROM {base}\nRUN --mount=type=bind,target=/ctx --mount=type=bind,from=src,target=/src \
             cat /ctx/a.txt /src/b.txt > /out.txt\n"
        ),
        &[("a.txt", b"A\n"), ("b.txt", b"B\n")],
    );
    let run = || {
        let o = build(ctx.path(), &reg.addr, &cache, &["--no-push", "--cache"]);
        ok(&o);
        text(&o.stderr)
    };
    let first = run();
    assert!(first.contains("2 steps run, 0 cached"), "{first}");
    let again = run();
    assert!(again.contains("0 steps run, 2 cached"), "{again}");
    std::fs::write(ctx.path().join("a.txt"), "A2\n").unwrap();
    let ctx_changed = run();
    assert!(
        ctx_changed.contains("1 steps run, 1 cached"),
        "a changed context file must rerun the RUN that binds it:\n{ctx_changed}"
    );
    std::fs::write(ctx.path().join("b.txt"), "B2\n").unwrap();
    let stage_changed = run();
    assert!(
        stage_changed.contains("2 steps run, 0 cached"),
        "a changed source stage must rerun the RUN that binds it:\n{stage_changed}"
    );
}

/// Builds share one cache directory, as pods share a cache volume, and some of them are
/// killed (SIGKILL) part way: those left, and every later build, still make the image a build
/// on a cache of its own makes (digests compared, `--reproducible`), and once one has
/// finished, a rebuild runs no step.
#[test]
fn builds_sharing_a_cache_directory_survive_others_being_killed() {
    use std::process::Stdio;
    let Fixture {
        reg, work, base, ..
    } = fixture();
    let ctx = context(
        &format!(
            "FROM {base}\nCOPY a.txt /a.txt\n\
             RUN mkdir /many && cd /many && for i in $(seq 1 3000); do echo $i > f$i; done\n\
             RUN cat /a.txt /many/f7 > /out.txt\n"
        ),
        &[("a.txt", b"A\n")],
    );
    let kiln_cmd = |cache: &Path, digest: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.env_remove("DOCKER_CONFIG").args([
            "build",
            "--context",
            ctx.path().to_str().unwrap(),
            "--insecure-registry",
            &reg.addr,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--no-push",
            "--cache",
            "--reproducible",
            "--digest-file",
            digest.to_str().unwrap(),
        ]);
        c
    };
    let digest = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let reference = work.path().join("reference.digest");
    ok(&kiln_cmd(&work.path().join("own-cache"), &reference)
        .output()
        .unwrap());
    let want = digest(&reference);
    assert!(want.starts_with("sha256:"), "{want:?}");

    let shared = work.path().join("shared");
    let mut killed_mid_build = 0;
    for round in 0..3u64 {
        let kids: Vec<_> = (0..4)
            .map(|i| {
                let d = work.path().join(format!("{round}-{i}.digest"));
                let child = kiln_cmd(&shared, &d)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (child, d)
            })
            .collect();
        // Two die at different moments of each round: pulling, extracting, running or
        // committing, whichever it is by then.
        let mut kids = kids.into_iter();
        let (mut first, _) = kids.next().unwrap();
        let (mut second, _) = kids.next().unwrap();
        std::thread::sleep(Duration::from_millis(30 + 150 * round));
        first.kill().unwrap();
        std::thread::sleep(Duration::from_millis(120));
        second.kill().unwrap();
        for killed in [first, second] {
            let log = text(&killed.wait_with_output().unwrap().stderr);
            if log.contains(" #1 ") && !log.contains(" built sha256:") {
                killed_mid_build += 1;
            }
        }
        for (child, d) in kids {
            let o = child.wait_with_output().unwrap();
            ok(&o);
            assert_eq!(digest(&d), want, "round {round}: {}", text(&o.stderr));
        }
    }
    assert!(
        killed_mid_build > 0,
        "every kill came after its build had ended"
    );
    let last = work.path().join("last.digest");
    let o = kiln_cmd(&shared, &last).output().unwrap();
    ok(&o);
    assert_eq!(digest(&last), want);
    assert!(
        text(&o.stderr).contains("0 steps run, 3 cached"),
        "{}",
        text(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_only_image_is_pushed_without_downloading_the_base() {
    let (_reg, proxy, work, base) = proxied().await;
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
    let o = build_off_thread(ctx.path(), &proxy.addr, &cache2, &["--destination", &dest]).await;
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
/// with no change runs no step, downloads no layer, and pushes the same image by mounts. A
/// WORKDIR of a directory the base has makes an empty layer (as BuildKit does) and is a cache
/// hit (running it would read the base to find the directory); a `COPY --from` of a cached
/// stage is keyed by that stage's layers, not by reading their files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_cache_repository_on_fresh_state_downloads_no_layer() {
    let (_reg, proxy, work, base) = proxied().await;
    let ctx = context(
        &format!(
            "FROM {base} AS build\nCOPY a.txt /a.txt\nRUN cat /a.txt /a.txt > /b.txt\n\
             FROM {base}\nCOPY --from=build /b.txt /b.txt\nENV X=1\nWORKDIR /etc\nRUN rm doomed\n"
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
        text(&o1.stderr).contains("5 steps run, 0 cached"),
        "{}",
        text(&o1.stderr)
    );
    proxy.clear();
    let ((o2, d2), dest2) = run(2).await;
    ok(&o2);
    let err = text(&o2.stderr);
    assert!(err.contains("0 steps run, 5 cached"), "{err}");
    assert!(err.contains("0 B downloaded"), "{err}");
    assert_eq!(d1, d2, "the cached rebuild gives another image");
    // No layer blob crossed the wire: neither the base's nor the cached steps'.
    let layers = layer_digests(&dest2);
    assert_eq!(
        layers.len(),
        3 + 3,
        "base layers, COPY --from, WORKDIR (empty) and RUN: {layers:?}"
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

/// The layer digests of `image`'s manifest, read through skopeo.
fn layer_digests(image: &str) -> Vec<String> {
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// A plain COPY and WORKDIR on a zstd:chunked base (as skopeo writes one) on fresh state, with
/// no cache repository: the base's metadata comes from the tables of contents its layers carry
/// (one range request each), no base layer is downloaded or extracted, and the layers are the
/// ones the same build makes by extracting the base.
#[test]
fn a_plain_copy_on_a_zstd_chunked_base_reads_its_tables_of_contents() {
    need_tools();
    let Fixture {
        reg,
        work,
        cache,
        base,
    } = fixture();
    let from = context(
        &format!(
            "FROM {base}\nRUN mkdir -p /srv/data && echo kept > /srv/data/kept && rm /etc/doomed\n"
        ),
        &[],
    );
    let plain = format!("{}/zc:gzip", reg.addr);
    ok(&build(
        from.path(),
        &reg.addr,
        &cache,
        &["--destination", &plain],
    ));
    let layout = work.path().join("zc-layout");
    let chunked = format!("{}/zc:chunked", reg.addr);
    for (src, dst, flags) in [
        (
            format!("docker://{plain}"),
            format!("oci:{}:x", layout.display()),
            vec![
                "--src-tls-verify=false",
                "--dest-compress-format",
                "zstd:chunked",
            ],
        ),
        (
            format!("oci:{}:x", layout.display()),
            format!("docker://{chunked}"),
            vec!["--dest-tls-verify=false"],
        ),
    ] {
        let o = Command::new("skopeo")
            .args(["copy", "-q"])
            .args(flags)
            .args([&src, &dst])
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    }
    let m = raw_json(&chunked, false);
    let layers = m["layers"].as_array().unwrap();
    assert!(layers.len() >= 2, "{m}");
    for l in layers {
        assert_eq!(l["mediaType"], kiln::layer::MEDIA_TYPE_TAR_ZSTD, "{m}");
        assert!(
            l["annotations"][kiln::layer::toc::POSITION_ANNOTATION].is_string(),
            "{m}"
        );
    }
    let diff_ids: Vec<Digest> = raw_json(&chunked, true)["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect();

    // Directories the steps create are clamped to this time; the base's, copied up, keep their
    // own older mtimes, so a wrong mtime from a table of contents would change the layers.
    let epoch = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    std::thread::sleep(Duration::from_secs(2));
    let ctx = context(
        &format!(
            "FROM {chunked}\nCOPY a.txt /srv/data/a.txt\nWORKDIR /srv/data/w\nCOPY b.txt sub/\n"
        ),
        &[("a.txt", b"A\n"), ("b.txt", b"B\n")],
    );
    let mut made = Vec::new();
    for (n, index) in [(1, "on"), (2, "off")] {
        let fresh = work.path().join(format!("zc-cache{n}"));
        let dest = format!("{}/zc-app:{n}", reg.addr);
        let env = [
            ("SOURCE_DATE_EPOCH", epoch.as_str()),
            ("KILN_LAYER_INDEX", index),
        ];
        let o = build_env(
            ctx.path(),
            &reg.addr,
            &fresh,
            &["--destination", &dest],
            &env,
        );
        ok(&o);
        let err = text(&o.stderr);
        let extracted = ExtractedLayers::open(&CacheDir::open(&fresh).unwrap()).unwrap();
        if index == "on" {
            assert!(err.contains("0 B downloaded"), "{err}");
            for d in &diff_ids {
                assert_eq!(extracted.get(d), None, "base layer {d} was extracted");
            }
        } else {
            // Extraction reads the zstd:chunked layers as plain zstd.
            assert!(!err.contains(" 0 B downloaded"), "{err}");
            assert!(extracted.get(&diff_ids[0]).is_some());
        }
        made.push(layer_digests(&dest));
    }
    assert_eq!(
        made[0], made[1],
        "the table-of-contents and extraction builds differ"
    );
}

/// Issue 13: a plain COPY on a base it has not extracted reads the base's metadata from the
/// layer indexes the first build published in the cache repository. The second build, on an
/// empty cache directory and with a changed context file (so the steps run), downloads no
/// base layer and pushes the layers the same build makes by extracting the base.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_copy_on_fresh_state_reads_the_base_from_its_published_index() {
    need_tools();
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let work = tempfile::tempdir().unwrap();
    let base_cache = work.path().join("cache-base");
    let busybox = push_base(&proxy.addr, &base_cache);
    // A base of five layers: a symlinked directory, a deletion, an owned directory.
    let base = format!("{}/base:2", proxy.addr);
    let base_ctx = context(
        &format!(
            "FROM {busybox}\nRUN ln -s /etc /cfg && rm /etc/doomed && mkdir -p /opt/data \
             && chmod 2775 /opt/data\nRUN mkdir -p /home/app && chown 1000:1000 /home/app\n"
        ),
        &[],
    );
    ok(&build(
        base_ctx.path(),
        &proxy.addr,
        &base_cache,
        &["--destination", &base],
    ));
    let base_layers = layer_digests(&base);
    assert_eq!(base_layers.len(), 5);
    // Directories the steps create are clamped to this time; the base's, copied up, are older
    // and keep their own mtimes, so a wrong mtime from the index would change the layers.
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    std::thread::sleep(Duration::from_secs(2));
    let dockerfile = format!(
        "FROM {base}\nCOPY a.txt /cfg/a.txt\nWORKDIR /opt/data/w\nCOPY b.txt sub/\n\
         COPY c.txt /bin/\nCOPY --chown=1000:1000 d.txt /home/app/d/\nENV X=1\n"
    );
    let files = |a: &'static [u8]| -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("a.txt", a),
            ("b.txt", b"B\n"),
            ("c.txt", b"C\n"),
            ("d.txt", b"D\n"),
        ]
    };
    let cache_repo = format!("--cache-repo={}/cache", proxy.addr);
    let run = |ctx: &tempfile::TempDir, n: u32, repo: bool, index: bool| {
        let (ctx, addr, cache_repo) = (
            ctx.path().to_path_buf(),
            proxy.addr.clone(),
            cache_repo.clone(),
        );
        let cache = work.path().join(format!("cache{n}"));
        let dest = format!("{}/app:{n}", proxy.addr);
        let epoch = epoch.to_string();
        async move {
            let d = dest.clone();
            let o = tokio::task::spawn_blocking(move || {
                let mut extra = vec!["--destination", d.as_str()];
                if repo {
                    extra.push(cache_repo.as_str());
                }
                let env = [
                    ("SOURCE_DATE_EPOCH", epoch.as_str()),
                    ("KILN_LAYER_INDEX", if index { "on" } else { "off" }),
                ];
                build_env(&ctx, &addr, &cache, &extra, &env)
            })
            .await
            .unwrap();
            (o, dest)
        }
    };
    let ctx1 = context(&dockerfile, &files(b"A1\n"));
    let (o1, _) = run(&ctx1, 1, true, true).await;
    ok(&o1);
    // The first build extracted the base: it published the index of every base layer and of
    // every layer it made, by tag, after their blobs.
    let puts: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/manifests/kiln-index-"))
        .collect();
    assert_eq!(puts.len(), 5 + 5, "{puts:?}");
    let ctx2 = context(&dockerfile, &files(b"A2\n"));
    proxy.clear();
    let (o2, dest2) = run(&ctx2, 2, true, true).await;
    ok(&o2);
    let err = text(&o2.stderr);
    assert!(err.contains("5 steps run, 0 cached"), "{err}");
    assert!(err.contains("0 B downloaded"), "{err}");
    for l in &base_layers {
        let gets = proxy.count("GET", &format!("/blobs/{l}"));
        assert_eq!(gets, 0, "base layer {l} downloaded: {:?}", proxy.requests());
    }
    assert!(
        proxy.count("GET", "/manifests/kiln-index-") >= 5,
        "{:?}",
        proxy.requests()
    );
    // The same build by extraction makes the same layers.
    let (o3, dest3) = run(&ctx2, 3, false, false).await;
    ok(&o3);
    assert!(!text(&o3.stderr).contains("0 B downloaded"));
    let (l2, l3) = (layer_digests(&dest2), layer_digests(&dest3));
    assert_eq!(l2.len(), 5 + 5);
    assert_eq!(l2, l3, "the index and extraction builds differ");
    let root = flatten(&dest2, work.path());
    assert_eq!(std::fs::read(root.join("etc/a.txt")).unwrap(), b"A2\n");
    assert_eq!(
        std::fs::read(root.join("opt/data/w/sub/b.txt")).unwrap(),
        b"B\n"
    );
    assert!(root.join("bin/c.txt").is_file() && root.join("bin/busybox").is_file());
    assert!(root.join("home/app/d/d.txt").is_file());

    // A warmed cache directory: `kiln warm` records the base layers' indexes as it fetches
    // them, so the same build there (no cache repository) extracts none of the base's layers.
    let warmed = work.path().join("cache5");
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["warm", "--insecure-registry", &proxy.addr, "--image", &base])
        .arg("--cache-dir")
        .arg(&warmed)
        .output()
        .unwrap();
    ok(&o);
    let out = text(&o.stdout);
    assert!(
        out.contains("fetched 6 blobs")
            && out.contains("0 already cached; 5 layer indexes recorded"),
        "{out}"
    );
    let (o5, dest5) = run(&ctx2, 5, false, true).await;
    ok(&o5);
    assert_eq!(
        layer_digests(&dest5),
        l3,
        "the warmed and extraction builds differ"
    );
    let extracted = ExtractedLayers::open(&CacheDir::open(&warmed).unwrap()).unwrap();
    for d in raw_json(&base, true)["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
    {
        let d: Digest = d.as_str().unwrap().parse().unwrap();
        assert_eq!(extracted.get(&d), None, "base layer {d} was extracted");
    }

    // Steps that read the base's files (a WORKDIR under a USER named, --chown by name: both
    // look in /etc/passwd) extract it even where its index is published.
    let named = context(
        &format!("FROM {base}\nUSER app\nWORKDIR /srv/w\nCOPY --chown=app e.txt /srv/e.txt\n"),
        &[("e.txt", b"E\n")],
    );
    let (o4, dest4) = run(&named, 4, true, true).await;
    ok(&o4);
    assert!(
        !text(&o4.stderr).contains(" 0 B downloaded"),
        "{}",
        text(&o4.stderr)
    );
    let w4 = work.path().join("w4");
    std::fs::create_dir_all(&w4).unwrap();
    let root = flatten(&dest4, &w4);
    use std::os::unix::fs::MetadataExt;
    for p in ["srv/w", "srv/e.txt"] {
        let m = std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "{p}");
    }
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

/// kaniko's `--insecure-pull`: the registries of the images a build pulls (its base and a
/// `COPY --from` image) are spoken to over plain HTTP without being listed; without the flag the
/// same build fails on TLS and names the registry.
#[test]
fn insecure_pull_reaches_the_images_the_dockerfile_names_over_plain_http() {
    let f = fixture();
    let ctx = context(
        &format!(
            "FROM {base}\nCOPY a /a\nCOPY --from={base} /etc/passwd /copied\n",
            base = f.base
        ),
        &[("a", b"a\n")],
    );
    let tar = f.work.path().join("image.tar");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--context",
            ctx.path().to_str().unwrap(),
            "--no-push",
            "--tar-path",
            tar.to_str().unwrap(),
            "--cache-dir",
            f.cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kiln(&args)
    };
    let refused = run(&[]);
    assert!(!refused.status.success(), "https to a plain HTTP registry");
    let err = text(&refused.stderr);
    assert!(err.contains(&f.reg.addr), "names the registry: {err}");
    ok(&run(&["--insecure-pull"]));
    assert!(tar.is_file());
}

/// The filesystem of `image` as a listing (type, size, content, mode, owner, mtime, link target,
/// hard-link group), read through skopeo into a fresh directory under `work` named `into`.
fn image_listing(image: &str, work: &Path, into: &str) -> (Vec<String>, PathBuf) {
    let dir = work.join(into);
    std::fs::create_dir(&dir).unwrap();
    let root = flatten(image, &dir);
    (tree::listing(&root, false), root)
}

fn raw_json(image: &str, config: bool) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    cmd.arg(if config { "--config" } else { "--raw" });
    let o = cmd.arg(format!("docker://{image}")).output().unwrap();
    assert!(o.status.success(), "skopeo: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `--single-snapshot` over a chain of two stages: files added, overwritten, deleted from the
/// base, deleted after an earlier step added them, a directory of the base replaced (opaque);
/// the image holds the base's layers and one more, and its filesystem is the per-step image's.
/// A rebuild from the step cache squashes the cached layers into the very same image.
#[test]
fn single_snapshot_appends_one_layer_with_the_same_filesystem() {
    let Fixture {
        reg,
        work,
        cache,
        base,
    } = fixture();
    let ctx = context(
        &format!(
            "FROM {base} AS a\nCOPY one.txt /app/one.txt\n\
             RUN echo added > /app/new && echo v1 > /app/over && mkdir -p /app/dir && \
             echo x > /app/dir/x && echo t > /etc/tmpfile\n\
             ENV STAGE=a\n\
             FROM a\n\
             RUN echo v2 > /app/over && rm /etc/doomed /app/new && rm -r /app/dir && \
             ln -s /app/over /app/link\n\
             RUN mkdir /bb && cp /bin/busybox /bb/ && /bb/busybox rm -rf /bin && \
             /bb/busybox mkdir /bin && /bb/busybox mv /bb/busybox /bin/ && \
             /bin/busybox ln -s busybox /bin/sh && /bin/busybox rmdir /bb\n\
             CMD [\"sh\"]\n"
        ),
        &[("one.txt", b"one\n")],
    );
    let flags = ["--reproducible", "--cache"];
    let layered = format!("{}/squash:layers", reg.addr);
    let single = format!("{}/squash:single", reg.addr);
    let again = format!("{}/squash:again", reg.addr);
    let mut extra = flags.to_vec();
    extra.extend(["--destination", &layered]);
    ok(&build(ctx.path(), &reg.addr, &cache, &extra));
    let fresh = work.path().join("cache-fresh");
    let mut extra = flags.to_vec();
    extra.extend(["--single-snapshot", "--destination", &single]);
    let o = build(ctx.path(), &reg.addr, &fresh, &extra);
    ok(&o);
    let err = text(&o.stderr);
    assert!(err.contains("4 steps run, 0 cached"), "{err}");
    assert!(err.contains("single snapshot: 4 layers"), "{err}");

    let base_manifest = raw_json(&base, false);
    let base_layers = base_manifest["layers"].as_array().unwrap().len();
    let base_history = raw_json(&base, true)["history"].as_array().unwrap().len();
    let m = raw_json(&single, false);
    assert_eq!(
        m["layers"].as_array().unwrap().len(),
        base_layers + 1,
        "the base's layers and one: {m}"
    );
    assert_eq!(
        m["layers"].as_array().unwrap()[..base_layers],
        base_manifest["layers"].as_array().unwrap()[..],
        "the base's layers are untouched"
    );
    let cfg = raw_json(&single, true);
    let history = cfg["history"].as_array().unwrap();
    assert_eq!(history.len(), base_history + 1, "{cfg}");
    let last = &history[base_history];
    assert!(
        last["created_by"].as_str().unwrap().starts_with("CMD"),
        "named after the last instruction, as kaniko does: {last}"
    );
    assert!(last.get("empty_layer").is_none(), "{last}");
    // The merged layer has its index, as every layer kiln writes, read off its own headers.
    let merged: Digest = cfg["rootfs"]["diff_ids"].as_array().unwrap()[base_layers]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let indexes = ExtractedLayers::open(&CacheDir::open(&fresh).unwrap()).unwrap();
    let index = indexes.index(&merged).expect("the merged layer's index");
    assert_eq!(index.get(b"app/over").unwrap().size, 3);
    assert_eq!(index.get(b"app/link").unwrap().link, b"/app/over");
    assert_eq!(
        index.get(b"etc/.wh.doomed").map(|e| e.kind),
        Some(kiln::layer::IndexKind::File)
    );
    assert_eq!(
        cfg["config"]["Env"],
        serde_json::json!([
            format!("PATH={}", kiln::image::config::DEFAULT_PATH),
            "STAGE=a"
        ]),
        "the base (built FROM scratch) has the default PATH: {cfg}"
    );

    let (want, _) = image_listing(&layered, work.path(), "w1");
    let (got, root) = image_listing(&single, work.path(), "w2");
    assert_eq!(got, want, "the merged filesystems differ");
    assert_eq!(
        std::fs::read_to_string(root.join("app/over")).unwrap(),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("app/link")).unwrap(),
        Path::new("/app/over")
    );
    assert!(!root.join("app/new").exists() && !root.join("app/dir").exists());
    let names = |d: &str| {
        let mut v: Vec<_> = std::fs::read_dir(root.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names("etc"),
        ["group", "passwd", "tmpfile"],
        "the base's doomed is gone"
    );
    assert_eq!(
        names("bin"),
        ["busybox", "sh"],
        "the replaced /bin hides the base's"
    );

    // Every step cached: the squash reads the cached layers and gives the same image.
    let mut extra = flags.to_vec();
    extra.extend(["--single-snapshot", "--destination", &again]);
    let o = build(ctx.path(), &reg.addr, &cache, &extra);
    ok(&o);
    assert!(
        text(&o.stderr).contains("0 steps run, 4 cached"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(skopeo_digest(&again), skopeo_digest(&single));
}

/// kaniko-in-a-container's situation for real: the cache directory is on overlayfs, where the
/// kernel refuses an overlay upper directory, so steps are snapshotted by comparing trees. The
/// log says so and why, and the image is the overlay-mode build's, digest for digest.
#[test]
fn without_overlay_the_tree_diff_builds_the_same_image() {
    let Fixture {
        reg,
        work,
        cache,
        base,
    } = fixture();
    if !rustix::process::geteuid().is_root() {
        privilege::skip(
            "mounting the overlayfs that holds the cache needs root",
            privilege::Demand::Root,
        );
        return;
    }
    let ctx = context(
        &format!(
            "FROM {base}\nCOPY conf.txt /etc/app/conf.txt\n\
             RUN echo new > /new.txt && echo changed >> /etc/passwd && rm /etc/doomed && \
             mkdir -p /srv/tmp && echo t > /srv/tmp/t && ln -s /etc/app/conf.txt /conf\n\
             RUN rm -r /srv/tmp /new.txt && echo more >> /etc/app/conf.txt && chmod 600 /conf\n\
             COPY conf.txt /srv/again.txt\n"
        ),
        &[("conf.txt", b"x=1\n")],
    );
    let under = tempfile::tempdir().unwrap();
    let p = |d: &str| under.path().join(d);
    for d in ["l", "u", "w"] {
        std::fs::create_dir(p(d)).unwrap();
    }
    let on_overlay = overlay::Mount::overlay(
        &format!(
            "lowerdir={},upperdir={},workdir={}",
            p("l").display(),
            p("u").display(),
            p("w").display()
        ),
        &p("m"),
    );
    let (overlay_dest, tree_dest) = (
        format!("{}/mode:overlay", reg.addr),
        format!("{}/mode:treediff", reg.addr),
    );
    let o = build(
        ctx.path(),
        &reg.addr,
        &cache,
        &["--reproducible", "--destination", &overlay_dest],
    );
    ok(&o);
    assert!(!text(&o.stderr).contains("overlay cannot be mounted"));
    let tree_cache = on_overlay.path().join("cache");
    let o = build(
        ctx.path(),
        &reg.addr,
        &tree_cache,
        &["--reproducible", "--destination", &tree_dest],
    );
    ok(&o);
    let err = text(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("overlay cannot be mounted here"))
        .unwrap_or_else(|| panic!("the log names the fallback:\n{err}"));
    assert!(
        line.contains("overlay mount failed")
            && line.contains("the cache directory is on overlayfs"),
        "and its reason: {line}"
    );
    let (want, _) = image_listing(&overlay_dest, work.path(), "w1");
    let (got, _) = image_listing(&tree_dest, work.path(), "w2");
    assert_eq!(got, want, "the two modes' filesystems differ");
    assert_eq!(skopeo_digest(&tree_dest), skopeo_digest(&overlay_dest));

    // The layers extracted there keep OCI whiteouts (whiteout devices are refused on
    // overlayfs too); --single-snapshot reads them as such.
    let single = format!("{}/mode:treediff-single", reg.addr);
    let o = build(
        ctx.path(),
        &reg.addr,
        &tree_cache,
        &[
            "--reproducible",
            "--single-snapshot",
            "--destination",
            &single,
        ],
    );
    ok(&o);
    assert_eq!(image_listing(&single, work.path(), "w3").0, want);
}

/// The one end-to-end progress test. What a terminal shows while a build runs is a pure function
/// of the build's events (unit-tested on recorded sequences in `executor/render.rs`); which events a
/// 100 ms redraw catches depends on the machine, so this asserts only what cannot race: the last
/// status before the summary counts exactly the pushed manifest's layers and bytes, plain output
/// holds no escape codes, and `--progress=auto` picks tty on a terminal (a pty from util-linux's
/// `script`) unless `CI` is set.
#[test]
fn progress_ends_at_the_pushed_counts_and_plain_output_has_no_escapes() {
    let Fixture {
        reg, work, base, ..
    } = fixture();
    let data = support::random_bytes(41, 3 << 20);
    let ctx = context(
        &format!(
            "FROM {base}\nCOPY data.bin /data.bin\nRUN cat /data.bin /data.bin > /twice.bin\n"
        ),
        &[("data.bin", &data)],
    );
    let dest = format!("{}/progress:tty", reg.addr);
    let o = build(
        ctx.path(),
        &reg.addr,
        &work.path().join("fresh"),
        &["--destination", &dest, "--progress=tty"],
    );
    ok(&o);
    let err = text(&o.stderr);
    // The pushed manifest: what the last status must count.
    let raw = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let total: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    let mib = total as f64 / f64::from(1 << 20);
    let last = format!(
        "pushed {n}/{n} layers  {mib:.1}/{mib:.1} MiB",
        n = layers.len()
    );
    let digest = kiln::blob::Digest::of(&raw.stdout);
    // Settling draws the final counts, then erases them; the summary follows alone.
    let segments: Vec<&str> = err.split("\r\x1b[2K").collect();
    let summary = segments
        .iter()
        .position(|s| s.starts_with(&format!("pushed {dest}@{digest}\n")))
        .unwrap_or_else(|| panic!("no summary after an erased status: {err:?}"));
    assert!(
        segments[summary - 1].starts_with(&format!("{last} │ ")),
        "expected {last:?} last, got {:?}",
        segments[summary - 1]
    );
    let tail: Vec<&str> = err.lines().rev().take(2).collect();
    assert!(
        tail[0].starts_with(&format!("built {digest} ("))
            && tail[1].ends_with(&format!("\r\x1b[2Kpushed {dest}@{digest}")),
        "the summary ends the output: {tail:?}"
    );
    assert!(err.contains("RUN cat /data.bin"), "{err:?}");
    assert!(!err.contains("s] #"), "no timestamps in tty mode: {err:?}");

    // Plain keeps the lines alone: no erase, no carriage return, timestamps in a pipe.
    let o = build(
        ctx.path(),
        &reg.addr,
        &work.path().join("fresh2"),
        &[
            "--destination",
            &format!("{}/progress:plain", reg.addr),
            "--progress=plain",
        ],
    );
    ok(&o);
    let err = text(&o.stderr);
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    assert!(err.lines().all(|l| l.starts_with('[')), "{err}");
    assert!(err.contains("RUN cat /data.bin"), "{err}");

    // `--progress=auto` (the default) on a terminal.
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("auto not checked: /usr/bin/script (util-linux) is not installed");
        return;
    }
    let small = context(
        "FROM scratch\nCOPY a.bin /a.bin\n",
        &[("a.bin", &support::random_bytes(5, 1 << 20))],
    );
    let run = |ci: Option<&str>, cache: &str| {
        let line = format!(
            "{} build -c {} --no-push --cache-dir {}",
            env!("CARGO_BIN_EXE_kiln"),
            small.path().display(),
            work.path().join(cache).display()
        );
        let mut c = Command::new("/usr/bin/script");
        c.args(["-qec", &line, "/dev/null"]).env_remove("CI");
        if let Some(v) = ci {
            c.env("CI", v);
        }
        let o = c.output().unwrap();
        ok(&o);
        text(&o.stdout)
    };
    let tty = run(None, "c1");
    assert!(
        tty.contains("\r\x1b[2Kcompressed 1/1 layers"),
        "settling draws the final counts: {tty:?}"
    );
    let ci = run(Some("true"), "c2");
    assert!(!ci.contains('\x1b'), "{ci:?}");
    assert!(ci.contains("COPY a.bin /a.bin"), "{ci:?}");
}

/// The `--timings=json` line of a build's standard error.
fn timings_json(stderr: &str) -> serde_json::Value {
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("{\"wall\":"))
        .unwrap_or_else(|| panic!("no timings line:\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

fn secs(step: &serde_json::Value, phase: &str) -> f64 {
    step["phases"][phase]["secs"].as_f64().unwrap()
}

/// `--timings` lists every step with its phases, and the numbers keep to what must hold
/// whatever the machine: nothing negative, a step's phases within the wall time, the steps'
/// foreground phases (one stage: one after the other) within it too, and the RUN that sleeps a
/// second counted as running at least that long. Layers are pushed while later steps run: the
/// first layer's upload is over before the last step's RUN (a few seconds of sleep) ends.
#[test]
fn timings_list_every_step_and_the_upload_of_a_layer_overlaps_later_steps() {
    let Fixture {
        reg, work, base, ..
    } = fixture();
    let ctx = context(
        &format!(
            "FROM {base}\nWORKDIR /work\nRUN head -c 2000000 /dev/urandom > /work/a.bin\n\
             ENV X=1\nCOPY note.txt /note.txt\nRUN sleep 1\nRUN sleep 3 && echo done > /work/b\n"
        ),
        &[("note.txt", b"note\n")],
    );
    let o = build(
        ctx.path(),
        &reg.addr,
        &work.path().join("table"),
        &[
            "--destination",
            &format!("{}/timings:table", reg.addr),
            "--timings",
            "--progress=plain",
        ],
    );
    ok(&o);
    let err = text(&o.stderr);
    let table: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("step  stage"))
        .collect();
    for ins in [
        "WORKDIR /work",
        "RUN head -c",
        "ENV X=1",
        "COPY note.txt",
        "RUN sleep 1",
        "RUN sleep 3",
    ] {
        assert_eq!(
            table.iter().filter(|l| l.contains(ins)).count(),
            1,
            "one row for {ins}:\n{err}"
        );
    }
    assert!(table.iter().any(|l| l.contains("output")), "{err}");
    assert!(table.iter().any(|l| l.starts_with("wall ")), "{err}");
    // The plain progress says each step's phases as it ends.
    assert!(
        err.lines()
            .any(|l| l.contains(" DONE ") && l.contains("(run ")),
        "{err}"
    );

    let o = build(
        ctx.path(),
        &reg.addr,
        &work.path().join("json"),
        &[
            "--destination",
            &format!("{}/timings:json", reg.addr),
            "--timings=json",
        ],
    );
    ok(&o);
    let t = timings_json(&text(&o.stderr));
    let wall = t["wall"].as_f64().unwrap();
    let steps = t["steps"].as_array().unwrap();
    let row = |ins: &str| {
        steps
            .iter()
            .find(|s| s["instruction"].as_str().unwrap().starts_with(ins))
            .unwrap_or_else(|| panic!("no row for {ins}: {t}"))
    };
    let foreground = ["pull", "extract", "run", "diff", "compress", "wait"];
    let mut steps_foreground = 0.0;
    for s in steps {
        let phases = s["phases"].as_object().unwrap();
        assert_eq!(phases.len(), 8, "{s}");
        let sum: f64 = phases.values().map(|p| p["secs"].as_f64().unwrap()).sum();
        assert!(
            phases.values().all(|p| p["secs"].as_f64().unwrap() >= 0.0),
            "{s}"
        );
        assert!(
            sum <= wall,
            "a step's phases exceed the wall time {wall}: {s}"
        );
        if s["number"] != 0 {
            steps_foreground += foreground.iter().map(|p| secs(s, p)).sum::<f64>();
        }
    }
    assert!(steps_foreground <= wall, "{steps_foreground} > {wall}: {t}");
    assert!(secs(row("RUN sleep 1"), "run") >= 1.0, "{t}");
    let first = row("RUN head -c");
    assert!(secs(first, "upload") > 0.0, "{t}");
    let uploaded = first["phases"]["upload"]["end"].as_f64().unwrap();
    let last_run = row("RUN sleep 3")["phases"]["run"]["end"].as_f64().unwrap();
    assert!(
        uploaded < last_run,
        "the first layer's upload ended at {uploaded}s, after the last RUN ({last_run}s): {t}"
    );
}

/// A layer pushed while the build runs that the registry refuses fails the build, naming the
/// registry and repository, and no manifest or tag is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_layer_upload_failure_fails_the_build_and_pushes_no_tag() {
    let (reg, proxy, work, base) = proxied().await;
    let ctx = context(
        &format!(
            "FROM {base}\nRUN head -c 100000 /dev/urandom > /a.bin\nRUN sleep 2\nRUN touch /b\n"
        ),
        &[],
    );
    // Uploads to the destination are refused; the base's blobs are mounted from elsewhere.
    for method in ["PUT", "PATCH"] {
        proxy.add_rule(
            method,
            "/v2/broken/blobs/uploads/",
            0,
            1000,
            support::Fault::Respond(403, Vec::new()),
        );
    }
    proxy.clear();
    let dest = format!("{}/broken:1", proxy.addr);
    let cache = work.path().join("cache");
    let extra = ["--destination", &dest, "--push-retry=0"];
    let o = build_off_thread(ctx.path(), &proxy.addr, &cache, &extra).await;
    let err = text(&o.stderr);
    // A registry refusing the push is the environment's failure, not the build's (exit 2).
    assert_eq!(o.status.code(), Some(2), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("kiln: ")).unwrap_or("");
    assert!(
        last.contains(&proxy.addr) && last.contains("broken"),
        "the error names the registry and repository: {err}"
    );
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains(" /v2/broken/blobs/uploads/")
                && (r.starts_with("PUT ") || r.starts_with("PATCH "))),
        "the layer upload was tried: {requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains("/manifests/")),
        "no manifest was pushed: {requests:?}"
    );
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{}/broken:1", reg.addr))
        .output()
        .unwrap();
    assert!(!o.status.success(), "the tag exists: {}", text(&o.stdout));
}
