//! Issue 16: kiln's own images, built by kiln and run as a cluster would run them.
//!
//! The repository's `Dockerfile` `kiln` and `runner` targets are built by `kiln build` (as
//! root on this machine) on a Debian this test makes (`debootstrap --variant=minbase`, trimmed
//! as `-slim` images are, pushed to a local registry as `debian:bookworm-slim`), from the
//! binaries this workspace just compiled (`--build-arg BINARIES=prebuilt`: CI pulls no `rust:`
//! image), and loaded into a real `dockerd` under the names kiln-runner's Kubernetes executor
//! and `examples/deploy` give them (`kiln:latest`, `kiln-runner:latest`). Then:
//! - `kiln --version` and `kiln-runner --help` in the images print what this build's binaries
//!   print on the host; both images run as uid 1000 and hold no compiler and no apt lists;
//!   their sizes are printed and bounded;
//! - whole job pods of `examples/deploy`'s `kiln-rootless` entry, rendered by the executor's
//!   own pod spec and run by Docker standing in for the kubelet (`support/docker_pod.rs`): the
//!   `clone` init container (runner image, uid 1000, no capability) fetches the project over
//!   `git://`, and the job's `kiln build` runs in the `build` container (kiln image) and
//!   pushes with the job's registry credentials an image whose RUN and COPY are checked; once
//!   as the example configures it (`isolation = "none"`: root, no privilege, a few
//!   capabilities, Docker's seccomp profile) and once with `isolation = "rootless"` (the
//!   image's uid 1000, no capability, no escalation: kiln maps only its own ids).
//!
//! Needs root, `debootstrap` and Debian's mirror (the base: a minute, once per target
//! directory), `docker-registry`, `dockerd` with `/usr/bin/docker`, and `git` (its daemon).

#[path = "support/docker_pod.rs"]
mod docker_pod;
use kiln_testkit::dockerd;
use kiln_testkit::fake_gitlab;
use kiln_testkit::git as git_repo;
#[path = "support/images.rs"]
mod images;
use kiln_testkit::registry as registry_server;

use docker_pod::DockerPod;
use dockerd::Dockerd;
use fake_gitlab::JobSpec;
use kiln::registry::Reference;
use kiln_runner::config::Config;
use kiln_runner::executor::kubernetes::spec;
use kiln_runner::gitlab::JobResponse;
use kiln_runner::job::plan::{JobPlan, StageName};
use kiln_runner::trace::Trace;
use kiln_tests::bins::workspace_bin;
use registry_server::{Registry, RegistryAuth};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "gitlab-ci-token";
/// GitLab masks only values of 8 characters or more.
const PASSWORD: &str = "Sh1pped-Imag3s-Pa55-4d1e";
/// The suite of the Debian base (the Dockerfile's default `DEBIAN`).
const SUITE: &str = "bookworm";
/// The most each image may weigh as Docker counts it: the Debian base (about 80 MB here) and
/// what the Dockerfile adds (the binaries, without debug information; the packages).
const MAX_IMAGE_BYTES: u64 = 400 << 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Whether this machine can run the test; CI (`KILN_REQUIRE_DOCKERD`) fails instead.
fn runnable() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let missing: Vec<&str> = [
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/usr/bin/docker-registry", "docker-registry"),
        ("/usr/bin/docker", "docker.io"),
        ("/usr/bin/git", "git"),
    ]
    .into_iter()
    .filter(|(p, _)| !Path::new(p).exists())
    .map(|(_, pkg)| pkg)
    .collect();
    if root && missing.is_empty() && dockerd::available() {
        return true;
    }
    let why = if root {
        format!("missing packages: {}", missing.join(" "))
    } else {
        "needs root".to_owned()
    };
    assert!(
        std::env::var_os("KILN_REQUIRE_DOCKERD").is_none(),
        "KILN_REQUIRE_DOCKERD is set but kiln's images cannot be built and run here: {why}"
    );
    eprintln!("kiln's images not checked: {why}");
    false
}

fn output(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(output(cmd).stdout).unwrap()
}

/// A docker `config.json` directory with the registry's credentials, for kiln on the host.
fn docker_config(reg: &Registry) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = json!({ "auths": { reg.addr.clone(): { "auth": auth } } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// The build context CI gives the Dockerfile: the Dockerfile and `bin/` with this build's
/// binaries, their debug information stripped as a release build's would be.
fn context(kiln: &Path, runner: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("Dockerfile"),
        dir.path().join("Dockerfile"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    for (from, name) in [(kiln, "kiln"), (runner, "kiln-runner")] {
        let to = dir.path().join("bin").join(name);
        output(
            Command::new("objcopy")
                .arg("--strip-debug")
                .arg(from)
                .arg(&to),
        );
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// Builds the Dockerfile's `target` with kiln into a `docker load` tarball tagged `tag`.
fn build_image(
    kiln: &Path,
    ctx: &Path,
    reg: &Registry,
    auth: &Path,
    target: &str,
    tag: &str,
) -> PathBuf {
    let tar = ctx.with_extension(format!("{target}.tar"));
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    output(
        Command::new(kiln)
            .arg("build")
            .arg("--context")
            .arg(ctx)
            .args(["--target", target])
            .arg(format!("--build-arg=BASE={}/debian:{SUITE}-slim", reg.addr))
            .arg("--build-arg=BINARIES=prebuilt")
            .args(["--insecure-registry", &reg.addr])
            .args(["--destination", tag, "--no-push"])
            .arg("--tar-path")
            .arg(&tar)
            .arg("--cache-dir")
            .arg(cache.path())
            .env("DOCKER_CONFIG", auth),
    );
    eprintln!("kiln built {tag} in {:.1?}", started.elapsed());
    tar
}

/// `git daemon` serving the repositories under `base` on 127.0.0.1; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            // It reports every shallow fetch's end as "the remote end hung up".
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `kiln-rootless` entry of `examples/deploy`'s config.toml.
fn example_entry() -> kiln_runner::config::RunnerConfig {
    let path = repo_root().join("examples/deploy/base/config.toml");
    let loaded = Config::load(&path).unwrap();
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    loaded
        .config
        .runners
        .into_iter()
        .find(|r| r.name == "kiln-rootless")
        .expect("examples/deploy has a kiln-rootless entry")
}

#[tokio::test(flavor = "multi_thread")]
async fn kilns_images_are_built_by_kiln_and_run_a_rootless_job_pod() {
    if !runnable() {
        return;
    }
    let kiln = workspace_bin("KILN_BIN", "kiln-builder", "kiln");
    let runner = workspace_bin("KILN_RUNNER_BIN", "kiln-runner", "kiln-runner");
    let started = Instant::now();
    let debian = kiln_tests::debian::minbase(Path::new(env!("CARGO_TARGET_TMPDIR")), SUITE)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("Debian {SUITE} minbase ready in {:.1?}", started.elapsed());

    let reg = Registry::start(RegistryAuth::Htpasswd(&[(USER, PASSWORD)]), false);
    let client = images::registry_client(&reg.addr, USER, PASSWORD);
    let base = format!("{}/debian:{SUITE}-slim", reg.addr);
    images::push_rootfs(
        &client,
        &Reference::parse(&base).unwrap(),
        &debian,
        &images::BaseConfig {
            created_by: "debootstrap --variant=minbase",
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            cmd: "bash",
        },
    )
    .await;

    // The images, as the executor names them.
    let auth = docker_config(&reg);
    let ctx = context(&kiln, &runner);
    let kiln_tar = build_image(&kiln, ctx.path(), &reg, auth.path(), "kiln", "kiln:latest");
    let runner_tar = build_image(
        &kiln,
        ctx.path(),
        &reg,
        auth.path(),
        "runner",
        "kiln-runner:latest",
    );
    let docker = Dockerd::start();
    for (tar, tag) in [
        (&kiln_tar, "kiln:latest"),
        (&runner_tar, "kiln-runner:latest"),
    ] {
        let loaded = stdout(docker.docker().arg("load").arg("-i").arg(tar));
        assert!(loaded.contains(&format!("Loaded image: {tag}")), "{loaded}");
    }

    // What each image holds and runs.
    let in_image = |tag: &str, arg: &str| {
        stdout(
            docker
                .docker()
                .args(["run", "--rm", "--network", "host", tag, arg]),
        )
    };
    assert_eq!(
        in_image("kiln:latest", "--version"),
        stdout(Command::new(&kiln).arg("--version")),
        "kiln --version in the kiln image"
    );
    assert_eq!(
        in_image("kiln-runner:latest", "--help"),
        stdout(Command::new(&runner).arg("--help")),
        "kiln-runner --help in the runner image"
    );
    for tag in ["kiln:latest", "kiln-runner:latest"] {
        let probe = stdout(docker.docker().args([
            "run",
            "--rm",
            "--network",
            "host",
            "--entrypoint",
            "sh",
            tag,
            "-c",
            "id -u; ls -A /var/lib/apt/lists | wc -l; \
             for c in cc gcc rustc cargo; do command -v $c || true; done",
        ]));
        assert_eq!(probe, "1000\n0\n", "{tag}: uid, apt lists, compilers");
        let size: u64 =
            stdout(
                docker
                    .docker()
                    .args(["image", "inspect", "--format", "{{.Size}}", tag]),
            )
            .trim()
            .parse()
            .unwrap();
        eprintln!("{tag}: {:.1} MiB", size as f64 / (1 << 20) as f64);
        assert!(size < MAX_IMAGE_BYTES, "{tag} weighs {size} bytes");
    }

    // The deploy example's rootless entry, its job pods run by Docker: as configured
    // (`isolation = "none"`, kaniko's pod) and with kiln's own user namespaces.
    let repos = tempfile::tempdir().unwrap();
    let project = repos.path().join("app");
    std::fs::create_dir(&project).unwrap();
    git_repo::init(&project);
    std::fs::write(project.join("hello.txt"), "hello from the repository\n").unwrap();
    std::fs::write(
        project.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN echo built in $(id -u) > /built.txt && echo gone > /dev/null \
             && test -c /dev/null && test -c /dev/urandom \
             && if [ -r /proc/self/status ]; then grep Seccomp_filters /proc/self/status; \
             else echo no /proc; fi > /seccomp.txt\n\
             COPY hello.txt /app/hello.txt\n"
        ),
    )
    .unwrap();
    let sha = git_repo::commit_all(&project, "a Dockerfile");
    let git = GitDaemon::start(repos.path());
    let sock = docker.dir.path().join("sock");
    for isolation in ["none", "rootless"] {
        let mut entry = example_entry();
        let k = entry.kubernetes.as_mut().unwrap();
        if k.isolation.as_deref() != Some(isolation) {
            k.isolation = Some(isolation.into());
        }
        let destination = format!("{}/group/app:{isolation}", reg.addr);
        let job = build_job(
            &reg,
            &destination,
            &format!("git://127.0.0.1:{}/app", git.port),
            &sha,
        );
        let trace = Trace::new(Vec::<String>::new(), usize::MAX);
        let plan = JobPlan::new(&job, &entry, spec::job_layout(&job, &entry), &trace);
        let objects = spec::job_objects(&job, &entry, &plan, None).unwrap();
        // Each run its own cache: kiln keeps it private to the user it runs as.
        let cache_claim = tempfile::tempdir().unwrap();
        let claims = BTreeMap::from([(
            entry
                .kubernetes
                .as_ref()
                .unwrap()
                .cache_volume
                .clone()
                .unwrap(),
            cache_claim.path().to_owned(),
        )]);
        let sock = sock.clone();
        let pod = DockerPod::start(
            move || {
                let mut c = Command::new("/usr/bin/docker");
                c.arg("-H").arg(format!("unix://{}", sock.display()));
                c
            },
            &objects.pod,
            &objects.secret,
            &claims,
        )
        .unwrap_or_else(|e| panic!("{isolation}: {e}"));
        let clone_log = &pod.init_logs["clone"];
        assert!(
            clone_log.contains(&format!("Checking out {}", &sha[..8])),
            "{isolation}: {clone_log}"
        );
        let job_started = Instant::now();
        let run = pod
            .exec("build", &spec::exec_command(StageName::StepScript))
            .unwrap();
        eprintln!(
            "isolation {isolation}: the job's build took {:.1?}",
            job_started.elapsed()
        );
        let log = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(
            run.code,
            Some(0),
            "{isolation}: the job's build failed:\n{log}"
        );
        assert!(
            !log.contains(PASSWORD),
            "{isolation}: the password is in the output:\n{log}"
        );
        drop(pod);

        let pulled = tempfile::tempdir().unwrap();
        images::pull_rootfs(
            &client,
            &Reference::parse(&destination).unwrap(),
            pulled.path(),
        )
        .await;
        let root = pulled.path().join("rootfs");
        assert_eq!(
            std::fs::read_to_string(root.join("built.txt")).unwrap(),
            "built in 0\n",
            "{isolation}: what RUN wrote, as the image's root"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("app/hello.txt")).unwrap(),
            "hello from the repository\n",
            "{isolation}: what COPY copied from the clone"
        );
        assert!(root.join("etc/debian_version").is_file(), "the Debian base");
        // The step had /dev/null (kiln's, never in the layer) and, with its own /proc, kiln's
        // seccomp filter (its two programs; the pod's profile is Unconfined). Under `none`
        // kiln cannot mount a /proc (no CAP_SYS_ADMIN, no mount namespace): steps run
        // without one.
        assert!(
            std::fs::symlink_metadata(root.join("dev/null")).is_err(),
            "{isolation}: /dev/null in the image"
        );
        let seccomp = if isolation == "none" {
            "no /proc\n"
        } else {
            "Seccomp_filters:\t2\n"
        };
        assert_eq!(
            std::fs::read_to_string(root.join("seccomp.txt")).unwrap(),
            seccomp,
            "{isolation}: the RUN step's seccomp filters"
        );
    }
}

/// The job GitLab would send: a kaniko-style `kiln build` of the project pushed to
/// `destination`, fetched from `repo_url` at `sha`, with the project's registry variables.
fn build_job(reg: &Registry, destination: &str, repo_url: &str, sha: &str) -> JobResponse {
    let script = format!(
        "kiln build --context \"$CI_PROJECT_DIR\" --destination {destination} --insecure-registry \"$CI_REGISTRY\""
    );
    let mut job = JobSpec::new(77, &[&script]).timeout(900);
    job.variables.clear();
    job = job
        .var("CI_PROJECT_PATH", "group/app", false, false)
        .var("CI_REGISTRY", &reg.addr, false, false)
        .var("CI_REGISTRY_USER", USER, false, false)
        .var("CI_REGISTRY_PASSWORD", PASSWORD, true, false);
    let mut j = job.json();
    j["git_info"] = json!({
        "repo_url": repo_url,
        "ref": "main", "sha": sha, "before_sha": "0000000000000000000000000000000000000000",
        "ref_type": "branch", "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 1
    });
    serde_json::from_value(j).unwrap()
}
