//! Issue 11's whole jobs through kiln-runner's Kubernetes executor, against the fake cluster
//! (`kiln-fake-cluster`: a strict API server whose kubelet runs each pod as real processes in
//! its own network and mount namespaces, every image mapped to the host's filesystem) and a
//! real `docker-registry` (htpasswd) listening on the fake node's address, where pods reach it:
//!
//! - dind mode: the job's `docker:27-dind` service is a real `dockerd --tlsverify` with the
//!   job's certificates from kiln-runner's Secret; its exec startup probe (`docker version`
//!   over that TLS) gates `build`, whose script logs in with the masked `CI_REGISTRY_*`
//!   credentials, runs `docker build` and `kiln build --backend docker` through
//!   `tcp://docker:2376`, and pushes; both images are read back from the registry.
//! - rootless mode: the script runs `kiln build` with kaniko's flags as uid 1000, pushing with
//!   the credentials the executor turns into a read-only docker config from its Secret, and
//!   caching in the shared cache volume (a PVC): the same job run again finds every step
//!   cached.
//! - the `kiln-runner` binary with a `kubernetes` entry and a kubeconfig, fed one rootless
//!   build job by the GitLab fake: trace, final state, cleanup and the pushed image.
//!
//! After each job: success, the password nowhere in the trace, no pod, Secret or process of
//! the fake kubelet left, and (dind) no Docker daemon left.
//!
//! Needs root (the fake kubelet's namespaces), `dockerd`, `/usr/bin/docker` (a 20.10 client,
//! whose classic builder needs no buildx), `docker-registry`, `busybox-static` and `git`.
//! `KILN_BIN` and `KILN_RUNNER_BIN` name the binaries; without them the test builds them in
//! this target directory and profile.

use kiln_testkit::fake_gitlab;
use kiln_testkit::git as git_repo;
#[path = "support/images.rs"]
mod images;
use kiln_testkit::registry as registry_server;

use base64::Engine as _;
use fake_gitlab::{fast_timings, FakeGitlab, JobSpec};
use kiln::registry::{Reference, RegistryClient};
use kiln_fake_cluster::FakeCluster;
use kiln_runner::config::{ExecutorKind, KilnMode, KubernetesConfig, RunnerConfig};
use kiln_runner::executor::kubernetes::spec::BUILD_UID;
use kiln_runner::executor::kubernetes::KubernetesExecutor;
use kiln_runner::gitlab::{JobResponse, JobState};
use kiln_runner::job::{run_job, JobEnv, Shutdown};
use kiln_tests::bins::workspace_bin;
use registry_server::{Registry, RegistryAuth};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const NS: &str = "ci";
const USER: &str = "gitlab-ci-token";
/// GitLab masks only values of 8 characters or more.
const PASSWORD: &str = "k8s-Regi5try-Pa55-91c2e7";
/// The fake kubelet's PATH, which the entry's `environment` extends with kiln's directory.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `kiln`, copied into a directory every user may read and search: rootless builds run it as
/// uid 1000, and the target directory need not be open to that user.
fn public_kiln() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let to = dir.path().join("kiln");
    std::fs::copy(workspace_bin("KILN_BIN", "kiln-builder", "kiln"), &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn chown_to_build_user(dir: &Path) {
    let st = Command::new("chown")
        .args(["-R", &format!("{BUILD_UID}:{BUILD_UID}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

fn registry_client(reg: &Registry) -> RegistryClient {
    images::registry_client(&reg.addr, USER, PASSWORD)
}

/// A registry with one user, on the cluster's node address (which its pods reach), holding a
/// one-layer busybox-static base image; returns it with the base's reference.
async fn registry_with_base(cluster: &FakeCluster) -> (Registry, String) {
    let reg = Registry::start_on(
        &cluster.node_ip(),
        RegistryAuth::Htpasswd(&[(USER, PASSWORD)]),
        false,
    );
    let base = format!("{}/base/busybox:1", reg.addr);
    images::push_busybox_base(&registry_client(&reg), &Reference::parse(&base).unwrap()).await;
    (reg, base)
}

/// Reads `reference` back from the registry, extracts its layers in order (checking each
/// diff_id) and checks what the Dockerfile's RUN and COPY made; returns the layer count.
async fn assert_built_image(reg: &Registry, reference: &str, run_output: &str) -> usize {
    let reference = Reference::parse(reference).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layers = images::pull_rootfs(&registry_client(reg), &reference, dir.path()).await;
    let root = dir.path().join("rootfs");
    assert_eq!(
        std::fs::read(root.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap(),
        "the base layer"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("built.txt")).unwrap(),
        format!("{run_output}\n"),
        "what RUN wrote"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app/hello.txt")).unwrap(),
        "hello from the repository\n",
        "what COPY copied"
    );
    layers
}

/// A repository whose one commit holds a Dockerfile (RUN + COPY on `base`) and the file it
/// copies, owned by the user the pod's clone runs as (`for_build_user`: rootless pods; else
/// root, as dind pods): git refuses a repository another user owns.
struct Repo {
    dir: tempfile::TempDir,
    sha: String,
}

fn repo(base: &str, run_output: &str, for_build_user: bool) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    git_repo::init(dir.path());
    std::fs::write(dir.path().join("hello.txt"), "hello from the repository\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {base}\nRUN echo {run_output}-run && echo {run_output} > /built.txt\nCOPY hello.txt /app/hello.txt\n"
        ),
    )
    .unwrap();
    let sha = git_repo::commit_all(dir.path(), "a Dockerfile");
    if for_build_user {
        chown_to_build_user(dir.path());
    }
    Repo { dir, sha }
}

/// The job GitLab would send: `script`, fetching `repo`, with the project's registry
/// variables (the password masked).
fn build_job(id: u64, script: &[&str], repo: &Repo, reg: &Registry) -> Value {
    let mut spec = JobSpec::new(id, script).timeout(900);
    spec.variables.clear();
    spec = spec
        .var("CI_REGISTRY", &reg.addr, false, false)
        .var(
            "CI_REGISTRY_IMAGE",
            &format!("{}/group/app", reg.addr),
            false,
            false,
        )
        .var("CI_REGISTRY_USER", USER, false, false)
        .var("CI_REGISTRY_PASSWORD", PASSWORD, true, false);
    let mut j = spec.json();
    j["features"]["failure_reasons"] = json!([
        "unknown_failure",
        "script_failure",
        "runner_system_failure",
        "job_execution_timeout",
        "image_pull_failure"
    ]);
    j["git_info"] = json!({
        "repo_url": format!("file://{}", repo.dir.path().display()),
        "ref": "main", "sha": repo.sha, "before_sha": "0000000000000000000000000000000000000000",
        "ref_type": "branch", "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 1
    });
    j
}

fn kube_entry(url: &str, kiln_dir: &Path, k: KubernetesConfig) -> RunnerConfig {
    RunnerConfig {
        name: "kube-e2e".into(),
        url: url.into(),
        token: "glrt-kube-e2e-token".into(),
        executor: ExecutorKind::Kubernetes,
        // The pod's images are the host's filesystem: kiln is found on PATH, as in kiln's image.
        environment: vec![format!("PATH={}:{DEFAULT_PATH}", kiln_dir.display())],
        kubernetes: Some(KubernetesConfig {
            namespace: Some(NS.into()),
            poll_timeout: Some(120),
            ..k
        }),
        ..Default::default()
    }
}

async fn run(
    fake: &FakeGitlab,
    cluster: &FakeCluster,
    entry: RunnerConfig,
    j: Value,
) -> (JobState, String) {
    let (_tx, rx) = watch::channel(Shutdown::None);
    let env = JobEnv {
        client: kiln_runner::gitlab::Client::new(&fake.url).unwrap(),
        entry: Arc::new(entry),
        executor: Arc::new(KubernetesExecutor::new(cluster.client())),
        timings: fast_timings(),
        shutdown: rx,
        metrics: None,
    };
    let job: JobResponse = serde_json::from_value(j).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(900), run_job(env, job))
        .await
        .expect("the job ends within 15 minutes");
    (
        report.state,
        String::from_utf8_lossy(&report.trace).into_owned(),
    )
}

fn assert_no_secret(trace: &str) {
    let forms = [
        PASSWORD.to_string(),
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
        base64::engine::general_purpose::STANDARD.encode(PASSWORD),
    ];
    for f in &forms {
        assert!(!trace.contains(f.as_str()), "secret in the trace:\n{trace}");
    }
}

/// Waits until the namespace holds no pod and no Secret, and no process of the fake kubelet
/// runs.
async fn assert_nothing_left(cluster: &FakeCluster) {
    if let Err(left) = cluster.wait_until_clean(NS, Duration::from_secs(60)).await {
        panic!("{left}");
    }
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// The pids of the Docker daemon's processes on this host (dockerd, its containerd and
/// shims), wherever they run.
fn docker_daemons() -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if [
            "dockerd",
            "containerd",
            "containerd-shim",
            "containerd-shim-runc-v2",
        ]
        .contains(&comm.trim())
        {
            out.insert(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dind_job_builds_with_docker_and_kiln_through_the_tls_daemon_and_pushes() {
    let kiln = public_kiln();
    let daemons_before = docker_daemons();
    let cluster = FakeCluster::start().await.unwrap();
    let (reg, base) = registry_with_base(&cluster).await;
    let repo = repo(&base, "dind", false);
    let fake = FakeGitlab::start().await;

    let script = [
        "echo \"logging in to $CI_REGISTRY as $CI_REGISTRY_USER:$CI_REGISTRY_PASSWORD\"",
        "echo \"$CI_REGISTRY_PASSWORD\" | /usr/bin/docker login -u \"$CI_REGISTRY_USER\" --password-stdin \"$CI_REGISTRY\"",
        "/usr/bin/docker build --network host -t \"$CI_REGISTRY_IMAGE:docker\" .",
        "/usr/bin/docker push \"$CI_REGISTRY_IMAGE:docker\"",
        "kiln build --backend docker --docker-network host --context . --dockerfile Dockerfile --destination \"$CI_REGISTRY_IMAGE:kiln\"",
    ];
    let mut j = build_job(701, &script, &repo, &reg);
    // The 20.10 client's classic builder: the newer client wants buildx for `docker build`.
    j["variables"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "DOCKER_BUILDKIT", "value": "0", "public": true, "masked": false}));
    // The fake knows no image's entrypoint, so the job names the daemon's command, as a
    // GitLab user may: TLS with the certificates the pod spec mounts under
    // DOCKER_TLS_CERTDIR (`/certs/server`), data on the spec's emptyDir, no bridge or
    // iptables (builds use the pod's network), and plain HTTP to the test registry.
    j["services"] = json!([{
        "name": "docker:27-dind",
        "alias": "docker",
        "entrypoint": ["dockerd"],
        "command": [
            "--host=tcp://0.0.0.0:2376",
            "--host=unix:///var/run/docker.sock",
            "--tlsverify",
            "--tlscacert=/certs/server/ca.pem",
            "--tlscert=/certs/server/cert.pem",
            "--tlskey=/certs/server/key.pem",
            "--data-root=/var/lib/docker",
            "--storage-driver=vfs",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            format!("--insecure-registry={}", reg.addr),
        ],
    }]);
    let entry = kube_entry(
        &fake.url,
        kiln.path(),
        KubernetesConfig {
            mode: Some(KilnMode::Dind),
            privileged: true,
            // dockerd takes its containerd down on SIGTERM, given the time.
            cleanup_grace_period_seconds: Some(20),
            ..Default::default()
        },
    );
    let (state, trace) = run(&fake, &cluster, entry, j).await;
    assert_eq!(state, JobState::Success, "{trace}");
    assert!(trace.contains("Login Succeeded"), "{trace}");
    assert!(
        trace.contains("dind-run"),
        "RUN output in the trace:\n{trace}"
    );
    assert!(trace.contains(&format!("{USER}:[MASKED]")), "{trace}");
    assert_no_secret(&trace);
    let image = format!("{}/group/app", reg.addr);
    assert_built_image(&reg, &format!("{image}:docker"), "dind").await;
    assert_built_image(&reg, &format!("{image}:kiln"), "dind").await;
    assert_nothing_left(&cluster).await;
    // A containerd shim outlives its containerd by a moment (it reaps its container first),
    // longer on a busy machine: wait for them, a bounded while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left: Vec<_> = docker_daemons()
            .difference(&daemons_before)
            .map(|p| cmdline(*p))
            .filter(|c| !c.is_empty())
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(left.is_empty(), "Docker daemon processes left: {left:?}");
}

/// kaniko's flags, plus plain HTTP to the test registry and the layer cache (in
/// `KILN_CACHE_DIR`, the shared cache volume).
const ROOTLESS_SCRIPT: &[&str] = &[
    "echo \"pushing $CI_REGISTRY_IMAGE:rootless as $CI_REGISTRY_USER:$CI_REGISTRY_PASSWORD\"",
    "id -u",
    "kiln build --context . --dockerfile Dockerfile --destination $CI_REGISTRY_IMAGE:rootless --insecure-registry $CI_REGISTRY --cache=true",
];

fn rootless_config(cache_claim: &str) -> KubernetesConfig {
    KubernetesConfig {
        mode: Some(KilnMode::Rootless),
        isolation: Some("rootless".into()),
        cache_volume: Some(cache_claim.into()),
        cleanup_grace_period_seconds: Some(1),
        ..Default::default()
    }
}

/// The shared cache volume: a claim the fake kubelet backs with a directory owned by the
/// build user (as a volume's fsGroup would make it).
fn cache_claim(cluster: &FakeCluster) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chown_to_build_user(dir.path());
    cluster.add_pvc(NS, "kiln-cache", dir.path());
    dir
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootless_job_builds_as_the_build_user_pushes_and_shares_the_cache() {
    let kiln = public_kiln();
    let cluster = FakeCluster::start().await.unwrap();
    let (reg, base) = registry_with_base(&cluster).await;
    let repo = repo(&base, "rootless", true);
    let cache = cache_claim(&cluster);
    let fake = FakeGitlab::start().await;

    let entry = kube_entry(&fake.url, kiln.path(), rootless_config("kiln-cache"));
    let (state, trace) = run(
        &fake,
        &cluster,
        entry.clone(),
        build_job(711, ROOTLESS_SCRIPT, &repo, &reg),
    )
    .await;
    assert_eq!(state, JobState::Success, "{trace}");
    assert!(
        trace.contains(&format!("\n{BUILD_UID}\n")),
        "built as uid {BUILD_UID}:\n{trace}"
    );
    // Once in the step's title, once as what it printed.
    assert_eq!(
        trace.matches("rootless-run").count(),
        2,
        "RUN output in the trace:\n{trace}"
    );
    assert!(trace.contains("2 steps run, 0 cached"), "{trace}");
    assert!(trace.contains(&format!("{USER}:[MASKED]")), "{trace}");
    assert_no_secret(&trace);
    let reference = format!("{}/group/app:rootless", reg.addr);
    // The base's layer, then one each for RUN and COPY.
    assert_eq!(assert_built_image(&reg, &reference, "rootless").await, 3);
    assert_nothing_left(&cluster).await;
    assert!(files_under(cache.path()) > 0, "nothing in the shared cache");

    // Another job of the same commit, in a new pod: every step comes from the shared cache.
    let (state, trace) = run(
        &fake,
        &cluster,
        entry,
        build_job(712, ROOTLESS_SCRIPT, &repo, &reg),
    )
    .await;
    assert_eq!(state, JobState::Success, "{trace}");
    assert!(trace.contains("CACHED"), "{trace}");
    assert!(trace.contains("0 steps run, 2 cached"), "{trace}");
    assert_eq!(
        trace.matches("rootless-run").count(),
        1,
        "RUN ran again:\n{trace}"
    );
    assert_no_secret(&trace);
    assert_eq!(assert_built_image(&reg, &reference, "rootless").await, 3);
    assert_nothing_left(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiln_runner_binary_runs_a_rootless_build_job_to_the_registry() {
    let runner_bin = workspace_bin("KILN_RUNNER_BIN", "kiln-runner", "kiln-runner");
    let kiln = public_kiln();
    let cluster = FakeCluster::start().await.unwrap();
    let (reg, base) = registry_with_base(&cluster).await;
    let repo = repo(&base, "runner", true);
    let _cache = cache_claim(&cluster);
    let fake = FakeGitlab::start().await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "concurrent = 1\ncheck_interval = 1\nshutdown_timeout = 10\n\n\
             [[runners]]\nname = \"kube\"\nurl = \"{}\"\ntoken = \"glrt-kube-e2e-binary\"\nexecutor = \"kubernetes\"\n\
             environment = [\"PATH={}:{DEFAULT_PATH}\"]\n\
             [runners.kubernetes]\nnamespace = \"{NS}\"\nmode = \"rootless\"\nisolation = \"rootless\"\n\
             cache_volume = \"kiln-cache\"\npoll_timeout = 120\ncleanup_grace_period_seconds = 1\n",
            fake.url,
            kiln.path().display()
        ),
    )
    .unwrap();
    fake.push_job(build_job(721, ROOTLESS_SCRIPT, &repo, &reg));
    let log = dir.path().join("runner.log");
    let mut child = Command::new(&runner_bin)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("KUBECONFIG", &kubeconfig)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    while fake.final_updates().is_empty() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "kiln-runner exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the job did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finals = fake.final_updates();
    let trace = String::from_utf8_lossy(&fake.trace_of(721)).into_owned();
    assert_eq!(finals.len(), 1, "{trace}");
    assert_eq!(finals[0]["state"], "success", "{trace}");
    assert!(
        trace.contains("Preparing the \"kubernetes\" executor"),
        "{trace}"
    );
    assert!(
        trace.contains("runner-run"),
        "RUN output in the trace:\n{trace}"
    );
    assert!(trace.contains("Job succeeded"), "{trace}");
    assert!(trace.contains(&format!("{USER}:[MASKED]")), "{trace}");
    assert_no_secret(&trace);
    assert_built_image(&reg, &format!("{}/group/app:rootless", reg.addr), "runner").await;
    assert_nothing_left(&cluster).await;

    // SIGTERM: the runner drains (no job is running) and exits 0.
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "{status}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
