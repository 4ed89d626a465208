//! Issue 6's build-image job end to end: the fake GitLab (kiln-runner's test fake) hands out a
//! job tagged `build-image` to the runner entry with that tag; kiln-runner's local executor
//! clones a local git repository at the job's sha and runs `kiln build` with kaniko's flags and
//! the credentials of `CI_REGISTRY_*`; the image lands in a real `docker-registry` (htpasswd);
//! the trace holds the build output with the password masked; GitLab gets `success` with the
//! right checksum. The same job at a commit whose RUN fails ends as `script_failure` with kiln's
//! exit code, and pushes nothing.
//!
//! `KILN_BIN` names the `kiln` binary; without it the test builds `kiln-builder`'s `kiln` in this target
//! directory and profile.

use kiln_testkit::fake_gitlab;
use kiln_testkit::git as git_repo;
#[path = "support/images.rs"]
mod images;
use kiln_testkit::registry as registry_server;

use base64::Engine as _;
use fake_gitlab::{crc, job_id_of, FakeGitlab, JobSpec, Resp};
use kiln::registry::{Reference, RegistryClient, RegistryError};
use kiln_runner::config::watch_config;
use kiln_runner::gitlab::JobState;
use kiln_runner::job::{JobReport, Shutdown};
use kiln_runner::metrics::Metrics;
use kiln_runner::runner::{Runner, RunnerOptions};
use kiln_tests::bins::kiln_bin;
use registry_server::{Registry, RegistryAuth};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const USER: &str = "gitlab-ci-token";
/// GitLab masks only values of 8 characters or more.
const PASSWORD: &str = "e2e-Regi5try-Pa55-7f3a9c";
/// kiln's exit code when the build itself fails (builder/src/cli/mod.rs: 1 for a wrong input
/// or a failed build, 2 for usage errors and kiln's own failures).
const KILN_BUILD_FAILED: i64 = 1;
const DOCS_TOKEN: &str = "glrt-e2e-docs-runner";
const IMAGES_TOKEN: &str = "glrt-e2e-build-image-runner";
/// What the job runs: kaniko's flags, plus plain HTTP to the test registry. The echo stands
/// for the debugging line a user adds; the runner must mask it.
const SCRIPT: &[&str] = &[
    "echo \"pushing $CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA as $CI_REGISTRY_USER:$CI_REGISTRY_PASSWORD\"",
    "kiln build --context $CI_PROJECT_DIR --dockerfile $CI_PROJECT_DIR/Dockerfile --destination $CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA --insecure-registry $CI_REGISTRY",
];

/// A repository on `main` with two commits: a Dockerfile that builds, then one whose RUN fails.
/// Returns their shas.
fn make_repo(dir: &Path, base: &str) -> (String, String) {
    git_repo::init(dir);
    std::fs::write(dir.join("hello.txt"), "hello from the repository\n").unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN echo kiln-e2e-run-output && echo built-by-run > /built.txt\nCOPY hello.txt /app/hello.txt\n"
        ),
    )
    .unwrap();
    let good = git_repo::commit_all(dir, "builds");
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {base}\nRUN echo about-to-fail && exit 7\nCOPY hello.txt /app/hello.txt\n"),
    )
    .unwrap();
    let bad = git_repo::commit_all(dir, "RUN fails");
    (good, bad)
}

fn registry_client(reg: &Registry) -> RegistryClient {
    images::registry_client(&reg.addr, USER, PASSWORD)
}

struct Job {
    tags: Vec<&'static str>,
    body: Value,
}

/// Hands each queued job only to a runner token whose tags include all of the job's, as
/// GitLab's tag routing does; records which token got which job.
struct TagRouter {
    queue: Mutex<VecDeque<Job>>,
    handed: Mutex<Vec<(String, u64)>>,
}

fn runner_tags(token: &str) -> &'static [&'static str] {
    match token {
        DOCS_TOKEN => &["docs"],
        IMAGES_TOKEN => &["build-image", "kiln"],
        _ => &[],
    }
}

impl TagRouter {
    fn answer(&self, token: &str) -> Option<Resp> {
        let tags = runner_tags(token);
        let mut q = self.queue.lock().unwrap();
        let i = q
            .iter()
            .position(|j| j.tags.iter().all(|t| tags.contains(t)))?;
        let job = q.remove(i).unwrap();
        let id = job.body["id"].as_u64().unwrap();
        self.handed.lock().unwrap().push((token.to_owned(), id));
        Some(Resp::new(201).json(&job.body))
    }
}

/// The job GitLab would send for `sha` of the repository at `repo`.
fn build_job(id: u64, repo: &Path, sha: &str, reg: &Registry) -> Value {
    let mut spec = JobSpec::new(id, SCRIPT).timeout(900);
    spec.variables.clear();
    let image = format!("{}/group/app", reg.addr);
    spec = spec
        .var("CI_REGISTRY", &reg.addr, false, false)
        .var("CI_REGISTRY_IMAGE", &image, false, false)
        .var("CI_REGISTRY_USER", USER, false, false)
        .var("CI_REGISTRY_PASSWORD", PASSWORD, true, false)
        .var("CI_COMMIT_SHA", sha, false, false)
        .var("CI_COMMIT_SHORT_SHA", &sha[..8], false, false);
    let mut j = spec.json();
    j["git_info"] = json!({
        "repo_url": format!("file://{}", repo.display()),
        "ref": "main", "sha": sha, "before_sha": "0000000000000000000000000000000000000000",
        "ref_type": "branch", "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 20
    });
    j
}

fn config_text(url: &str, kiln_dir: &Path) -> String {
    format!(
        "concurrent = 2\ncheck_interval = 1\nshutdown_timeout = 10\n\n\
         [[runners]]\nname = \"docs\"\nurl = \"{url}\"\ntoken = \"{DOCS_TOKEN}\"\nexecutor = \"local\"\n\n\
         [[runners]]\nname = \"images\"\nurl = \"{url}\"\ntoken = \"{IMAGES_TOKEN}\"\nexecutor = \"local\"\n\
         [runners.kiln]\nbin_dir = \"{}\"\n",
        kiln_dir.display()
    )
}

async fn next_report(rx: &mut mpsc::UnboundedReceiver<JobReport>) -> JobReport {
    tokio::time::timeout(Duration::from_secs(900), rx.recv())
        .await
        .expect("the job finishes within 15 minutes")
        .expect("the runner is running")
}

/// The final update GitLab got for job `id`, and that its checksum and size match the trace
/// GitLab holds.
fn checked_final(fake: &FakeGitlab, id: u64) -> (Value, String) {
    let finals: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r.is_update() && job_id_of(&r.path) == Some(id))
        .map(|r| r.json())
        .filter(|b| b["state"] != "running")
        .collect();
    let last = finals.last().expect("a final update").clone();
    let trace = fake.trace_of(id);
    assert_eq!(last["output"]["checksum"], crc(&trace));
    assert_eq!(last["output"]["bytesize"], trace.len());
    (last, String::from_utf8_lossy(&trace).into_owned())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_image_job_pushes_to_registry_and_a_failing_run_is_a_script_failure() {
    let kiln = kiln_bin();
    let reg = Registry::start(RegistryAuth::Htpasswd(&[(USER, PASSWORD)]), false);
    let client = registry_client(&reg);
    let base = format!("{}/base/busybox:1", reg.addr);
    images::push_busybox_base(&client, &Reference::parse(&base).unwrap()).await;

    let repo = tempfile::tempdir().unwrap();
    let (good, bad) = make_repo(repo.path(), &base);

    let fake = FakeGitlab::start().await;
    let router = Arc::new(TagRouter {
        queue: Mutex::new(VecDeque::new()),
        handed: Mutex::new(Vec::new()),
    });
    let r2 = router.clone();
    fake.set_override(move |r, _| {
        if r.path != "/api/v4/jobs/request" {
            return None;
        }
        r2.answer(r.json()["token"].as_str().unwrap_or(""))
    });

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(&fake.url, kiln.parent().unwrap())).unwrap();
    let (shutdown, rx) = watch::channel(Shutdown::None);
    let (tx, mut reports) = mpsc::unbounded_channel();
    let opts = RunnerOptions {
        system_id: "s_e2e0123456789".into(),
        builds_dir: dir.path().join("builds"),
        timings: kiln_runner::job::Timings {
            trace_interval: Duration::from_millis(500),
            ..Default::default()
        },
        check_interval: Some(Duration::from_millis(200)),
    };
    let watch = watch_config(cfg, Duration::from_secs(5)).unwrap();
    let runner = Runner::new(opts, watch, rx, Arc::new(Metrics::default())).with_reports(tx);
    let task = tokio::spawn(runner.run());

    // 1. The build succeeds and the image is in the registry.
    router.queue.lock().unwrap().push_back(Job {
        tags: vec!["build-image"],
        body: build_job(601, repo.path(), &good, &reg),
    });
    let report = next_report(&mut reports).await;
    let (fin, trace) = checked_final(&fake, 601);
    assert_eq!(report.state, JobState::Success, "{trace}");
    assert_eq!(fin["state"], "success", "{trace}");
    assert_eq!(
        router.handed.lock().unwrap().as_slice(),
        &[(IMAGES_TOKEN.to_owned(), 601)],
        "the job went to the entry tagged build-image"
    );
    assert!(trace.contains("$ kiln build --context"), "{trace}");
    assert!(
        trace.contains("kiln-e2e-run-output"),
        "RUN output in the trace:\n{trace}"
    );
    assert!(trace.contains(&format!("{USER}:[MASKED]")), "{trace}");
    assert!(trace.contains("Job succeeded"), "{trace}");
    assert_no_secret(&trace);

    let dest = Reference::parse(&format!("{}/group/app:{}", reg.addr, &good[..8])).unwrap();
    let pulled = tempfile::tempdir().unwrap();
    images::pull_rootfs(&client, &dest, pulled.path()).await;
    let root = pulled.path().join("rootfs");
    assert_eq!(
        std::fs::read(root.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("built.txt")).unwrap(),
        "built-by-run\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app/hello.txt")).unwrap(),
        "hello from the repository\n"
    );

    // 2. The same job at the commit whose RUN fails: script_failure with kiln's exit code.
    router.queue.lock().unwrap().push_back(Job {
        tags: vec!["build-image"],
        body: build_job(602, repo.path(), &bad, &reg),
    });
    let report = next_report(&mut reports).await;
    let (fin, trace) = checked_final(&fake, 602);
    assert_eq!(report.state, JobState::Failed, "{trace}");
    assert_eq!(fin["state"], "failed");
    assert_eq!(fin["failure_reason"], "script_failure", "{trace}");
    assert_eq!(fin["exit_code"], KILN_BUILD_FAILED, "{trace}");
    assert!(
        trace.contains("about-to-fail"),
        "RUN output in the trace:\n{trace}"
    );
    assert!(
        trace.contains(&format!("ERROR: Job failed: exit code {KILN_BUILD_FAILED}")),
        "{trace}"
    );
    assert_no_secret(&trace);
    let not_pushed = Reference::parse(&format!("{}/group/app:{}", reg.addr, &bad[..8])).unwrap();
    assert!(matches!(
        client.get_manifest(&not_pushed).await,
        Err(RegistryError::NotFound { .. })
    ));

    shutdown.send(Shutdown::Drain).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
