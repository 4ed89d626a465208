//! The Kubernetes executor against the fake cluster (a strict API server whose kubelet
//! runs pods as real processes): whole jobs from the GitLab fake through a pod, their
//! final states, and that nothing is left in the cluster afterwards.

use kiln_testkit::fake_gitlab as common;
use kiln_testkit::git as git_repo;

use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_fake_cluster::{FakeCluster, ImageSource};
use kiln_runner::config::{ExecutorKind, KubernetesConfig, RunnerConfig};
use kiln_runner::executor::kubernetes::KubernetesExecutor;
use kiln_runner::gitlab::{JobResponse, JobState};
use kiln_runner::job::{run_job, JobEnv, Shutdown};
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const NS: &str = "ci";

fn kube_entry(url: &str) -> RunnerConfig {
    RunnerConfig {
        name: "kube-runner".into(),
        url: url.into(),
        token: "glrt-kubetoken123".into(),
        executor: ExecutorKind::Kubernetes,
        kubernetes: Some(KubernetesConfig {
            namespace: Some(NS.into()),
            poll_timeout: Some(30),
            cleanup_grace_period_seconds: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn kube_env(
    fake: &FakeGitlab,
    cluster: &FakeCluster,
    entry: RunnerConfig,
) -> (JobEnv, watch::Sender<Shutdown>, Arc<KubernetesExecutor>) {
    let (tx, rx) = watch::channel(Shutdown::None);
    let exec = Arc::new(KubernetesExecutor::new(cluster.client()));
    (
        JobEnv {
            client: kiln_runner::gitlab::Client::new(&fake.url).unwrap(),
            entry: Arc::new(entry),
            executor: exec.clone(),
            timings: fast_timings(),
            shutdown: rx,
            metrics: None,
        },
        tx,
        exec,
    )
}

/// GitLab's failure reasons as a recent GitLab lists them.
fn with_reasons(spec: &JobSpec) -> serde_json::Value {
    let mut j = spec.json();
    j["features"]["failure_reasons"] = json!([
        "unknown_failure",
        "script_failure",
        "runner_system_failure",
        "job_execution_timeout",
        "image_pull_failure"
    ]);
    j
}

fn job(v: serde_json::Value) -> JobResponse {
    serde_json::from_value(v).unwrap()
}

/// A rootless pod's clone runs as the build user: the repository it fetches from (a
/// `file://` URL in these tests) must be readable, and owned, by that user, or git
/// refuses it as "dubious ownership".
fn give_to_build_user(dir: &std::path::Path) {
    let uid = kiln_runner::executor::kubernetes::spec::BUILD_UID.to_string();
    let st = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A repository whose one commit holds `file.txt` with `content`, owned by the build user.
struct Repo {
    dir: tempfile::TempDir,
    sha: String,
}

fn repo_with(content: &str) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    git_repo::init(dir.path());
    std::fs::write(dir.path().join("file.txt"), content).unwrap();
    let sha = git_repo::commit_all(dir.path(), "v1");
    give_to_build_user(dir.path());
    Repo { dir, sha }
}

/// `spec` as a job that fetches `repo` at its commit.
fn fetching(spec: &JobSpec, repo: &Repo) -> serde_json::Value {
    let mut spec_vars = spec.variables.clone();
    spec_vars.retain(|v| v["key"] != "GIT_STRATEGY");
    let mut j = with_reasons(&JobSpec {
        variables: spec_vars,
        ..spec.clone()
    });
    j["git_info"] = json!({
        "repo_url": format!("file://{}", repo.dir.path().display()),
        "ref": "main", "sha": repo.sha, "before_sha": "0000000000000000000000000000000000000000",
        "ref_type": "branch", "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 1
    });
    j
}

/// Waits until the namespace holds no pod, no Secret and no process of the fake kubelet.
async fn assert_nothing_left(cluster: &FakeCluster) {
    if let Err(left) = cluster.wait_until_clean(NS, Duration::from_secs(20)).await {
        panic!("{left}");
    }
}

#[tokio::test]
async fn a_job_clones_runs_in_its_pod_masks_secrets_and_leaves_nothing() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let repo = repo_with("version-1\n");
    let spec = JobSpec::new(
        301,
        &[
            "cat file.txt",
            "echo \"secret is $DEPLOY_KEY\"",
            "cat \"$KUBECONFIG_FILE\"",
            "echo \"project dir $CI_PROJECT_DIR\"; pwd",
        ],
    )
    .after(&["echo after-script-ran"])
    .var("DEPLOY_KEY", "s3cr3t-value", true, false)
    .var("KUBECONFIG_FILE", "file-content-here", false, true);
    let j = fetching(&spec, &repo);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let report = run_job(env, job(j)).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Success, "{trace}");
    assert!(
        trace.contains("Preparing the \"kubernetes\" executor"),
        "{trace}"
    );
    assert!(trace.contains("Checking out "), "{trace}");
    assert!(trace.contains("version-1"), "{trace}");
    assert!(trace.contains("secret is [MASKED]"), "{trace}");
    assert!(!trace.contains("s3cr3t-value"), "{trace}");
    assert!(trace.contains("file-content-here"), "{trace}");
    assert!(trace.contains("after-script-ran"), "{trace}");
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn a_failing_script_reports_its_exit_code_and_after_script_still_runs() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let spec = JobSpec::new(302, &["echo before", "exit 3", "echo not-reached"])
        .after(&["echo after-failure"]);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let report = run_job(env, job(with_reasons(&spec))).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Failed, "{trace}");
    assert_eq!(report.exit_code, Some(3), "{trace}");
    assert_eq!(report.failure_reason.as_deref(), Some("script_failure"));
    assert!(trace.contains("after-failure"), "{trace}");
    assert!(!trace.contains("not-reached"), "{trace}");
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_ends_the_job_as_image_pull_failure() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    cluster.set_image("registry.invalid/nope:1", ImageSource::Unpullable);
    let mut entry = kube_entry(&fake.url);
    entry.kubernetes.as_mut().unwrap().image = Some("registry.invalid/nope:1".into());
    let spec = JobSpec::new(303, &["echo never"]);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, entry);
    let report = run_job(env, job(with_reasons(&spec))).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Failed, "{trace}");
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("image_pull_failure"),
        "{trace}"
    );
    assert!(trace.contains("registry.invalid/nope:1"), "{trace}");
    assert!(!trace.contains("(system failure)"), "{trace}");
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn a_pod_that_is_never_scheduled_fails_naming_the_schedulers_reason() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    cluster.set_node_schedulable(false);
    let mut entry = kube_entry(&fake.url);
    entry.kubernetes.as_mut().unwrap().poll_timeout = Some(2);
    let spec = JobSpec::new(304, &["echo never"]);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, entry);
    let report = run_job(env, job(with_reasons(&spec))).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("runner_system_failure")
    );
    assert!(trace.contains("did not start within"), "{trace}");
    assert!(trace.contains("Unschedulable"), "{trace}");
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn a_forbidden_create_names_the_verb_and_resource_the_account_lacks() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    cluster.deny("create", "pods");
    let spec = JobSpec::new(305, &["echo never"]);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let report = run_job(env, job(with_reasons(&spec))).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("runner_system_failure")
    );
    assert!(
        trace.contains("may not create pods in namespace ci"),
        "{trace}"
    );
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn cancel_stops_the_script_runs_after_script_and_deletes_the_pod() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let spec = JobSpec::new(306, &["echo started", "sleep 60", "echo not-reached"])
        .after(&["echo after-cancel"]);
    fake.set_override(|r, s| {
        if r.is_patch() && String::from_utf8_lossy(&r.body).contains("started") {
            s.job_status = "canceling".into();
        }
        None
    });
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let t0 = Instant::now();
    let report = run_job(env, job(with_reasons(&spec))).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(trace.contains("after-cancel"), "{trace}");
    assert!(!trace.contains("not-reached"), "{trace}");
    assert_eq!(report.state, JobState::Failed);
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn a_timed_out_job_has_its_pod_deleted_at_once() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let spec = JobSpec::new(307, &["echo started", "sleep 120"]).timeout(3);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let t0 = Instant::now();
    let report = run_job(env, job(with_reasons(&spec))).await;
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("job_execution_timeout")
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn a_restarted_runner_removes_only_its_own_leftovers() {
    let cluster = FakeCluster::start().await.unwrap();
    let entry = kube_entry("https://gitlab.invalid");
    let exec = KubernetesExecutor::new(cluster.client());
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), NS);
    let selector = kiln_runner::executor::kubernetes::spec::runner_selector(&entry);
    let labels: serde_json::Map<String, serde_json::Value> = selector
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), json!(v))
        })
        .collect();
    let pod = |name: &str, labels: &serde_json::Map<String, serde_json::Value>| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "build", "image": "x", "command": ["sleep", "600"]}]}
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    pods.create(&pp, &pod("orphan-1", &labels)).await.unwrap();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "orphan-1", "labels": labels}}))
            .unwrap();
    secrets.create(&pp, &secret).await.unwrap();
    let other = serde_json::Map::from_iter([("app".to_owned(), json!("someone-else"))]);
    pods.create(&pp, &pod("not-ours", &other)).await.unwrap();

    assert_eq!(exec.remove_orphans(&entry).await.unwrap(), 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names: Vec<_> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        if names == ["not-ours"] {
            break;
        }
        assert!(Instant::now() < deadline, "pods left: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(secrets.get_opt("orphan-1").await.unwrap().is_none());
}

#[tokio::test]
async fn many_jobs_at_once_share_one_pod_watch() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    cluster.clear_requests();
    let jobs: Vec<_> = (0..6)
        .map(|i| {
            let spec = JobSpec::new(400 + i, &["echo job-$CI_JOB_ID"]);
            tokio::spawn(run_job(env.clone(), job(with_reasons(&spec))))
        })
        .collect();
    for j in jobs {
        let r = j.await.unwrap();
        assert_eq!(
            r.state,
            JobState::Success,
            "{}",
            String::from_utf8_lossy(&r.trace)
        );
    }
    let watches = cluster
        .requests()
        .into_iter()
        .filter(|r| r.is_watch() && r.path.ends_with("/pods"))
        .count();
    // One watch, resumed at most once if the server ended it.
    assert!(
        (1..=2).contains(&watches),
        "{watches} pod watches for 6 jobs"
    );
    assert_nothing_left(&cluster).await;
}

#[tokio::test]
async fn watches_broken_throughout_a_job_lose_no_line_and_no_exit_code() {
    let fake = FakeGitlab::start().await;
    let cluster = Arc::new(FakeCluster::start().await.unwrap());
    let repo = repo_with("cloned-content\n");
    let spec = JobSpec::new(
        308,
        &[
            "for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done",
            "cat file.txt",
            "exit 4",
        ],
    );
    let j = fetching(&spec, &repo);
    let breaker = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                cluster.break_watches();
            }
        })
    };
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let report = run_job(env, job(j)).await;
    breaker.abort();
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.exit_code, Some(4), "{trace}");
    assert!(trace.contains("Checking out"), "{trace}");
    for i in 1..=5 {
        assert_eq!(trace.matches(&format!("line-{i}\n")).count(), 1, "{trace}");
    }
    assert!(trace.contains("cloned-content"), "{trace}");
    let watches = cluster
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .count();
    assert!(watches >= 2, "the watch was never broken: {watches}");
    assert_nothing_left(&cluster).await;
}

/// Runs a job whose script sleeps, and once its pod runs the script, rewrites the pod's
/// status with `fail` (what the kubelet reports of an OOM kill or an eviction); returns
/// the job's trace and failure reason.
async fn failed_under_the_script(
    id: u64,
    fail: impl FnOnce(&mut k8s_openapi::api::core::v1::PodStatus),
) -> (String, Option<String>, Duration) {
    let fake = FakeGitlab::start().await;
    let cluster = Arc::new(FakeCluster::start().await.unwrap());
    let spec = JobSpec::new(id, &["echo script-running", "sleep 60"]);
    let (env, _sd, _exec) = kube_env(&fake, &cluster, kube_entry(&fake.url));
    let job = tokio::spawn(run_job(env, job(with_reasons(&spec))));
    wait_until("the script running", Duration::from_secs(30), || {
        fake.trace().contains("script-running\n")
    })
    .await;
    let name = format!("kiln-kubetoke-job-{id}");
    let t0 = Instant::now();
    assert!(cluster.set_pod_status(NS, &name, fail));
    let report = job.await.unwrap();
    let took = t0.elapsed();
    assert_nothing_left(&cluster).await;
    (
        String::from_utf8_lossy(&report.trace).into_owned(),
        report.failure_reason,
        took,
    )
}

#[tokio::test]
async fn an_oom_kill_under_a_running_script_is_named_and_ends_the_job_at_once() {
    let (trace, reason, took) = failed_under_the_script(309, |st| {
        for c in st.container_statuses.iter_mut().flatten() {
            if c.name == "build" {
                c.state = Some(
                    serde_json::from_value(json!({"terminated": {
                    "exitCode": 137, "reason": "OOMKilled"}}))
                    .unwrap(),
                );
            }
        }
    })
    .await;
    assert_eq!(reason.as_deref(), Some("runner_system_failure"));
    assert!(trace.contains("container build was OOMKilled"), "{trace}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn an_evicted_pod_is_told_apart_from_an_oom_kill() {
    let (trace, reason, _) = failed_under_the_script(310, |st| {
        st.phase = Some("Failed".into());
        st.reason = Some("Evicted".into());
        st.message = Some("The node was low on resource: memory.".into());
    })
    .await;
    assert_eq!(reason.as_deref(), Some("runner_system_failure"));
    assert!(
        trace.contains("Evicted: The node was low on resource: memory."),
        "{trace}"
    );
    assert!(!trace.contains("OOMKilled"), "{trace}");
}
