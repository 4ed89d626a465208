//! Both pod shapes end to end on a real cluster, when `KILN_TEST_KUBECONFIG` names one
//! (`cargo test -p kiln-runner --test kubernetes -- --ignored cluster::`). The GitLab side is
//! the in-process fake, so only the cluster is needed, plus:
//! - `KILN_TEST_NAMESPACE` (default `kiln-test`), where the kubeconfig's user has the rights
//!   of `API_RIGHTS`;
//! - `KILN_TEST_REGISTRY`: a registry the pods can push to over plain HTTP (`host:port`);
//! - `KILN_TEST_KILN_IMAGE`: kiln's image as the cluster can pull it (rootless mode);
//! - `KILN_TEST_DIND_IMAGE` and `KILN_TEST_DOCKER_IMAGE` (defaults `docker:27-dind` and
//!   `docker:27-cli`) for dind mode, on a namespace that admits privileged pods.

use kiln_testkit::fake_gitlab as common;

use common::*;
use kiln_runner::config::{ExecutorKind, KilnMode, KubernetesConfig, RunnerConfig};
use kiln_runner::executor::kubernetes::KubernetesExecutor;
use kiln_runner::gitlab::{JobResponse, JobState};
use kiln_runner::job::{run_job, JobEnv, Shutdown};
use std::sync::Arc;
use tokio::sync::watch;

fn var(key: &str, default: Option<&str>) -> String {
    std::env::var(key)
        .ok()
        .or(default.map(str::to_owned))
        .unwrap_or_else(|| panic!("{key} must be set for the real-cluster tests"))
}

async fn client() -> kube::Client {
    let path = var("KILN_TEST_KUBECONFIG", None);
    let kc = kube::config::Kubeconfig::read_from(&path).expect("a readable kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(cfg).unwrap()
}

async fn run(mode: KilnMode, image: Option<String>, script: &[&str], services: serde_json::Value) {
    let fake = FakeGitlab::start().await;
    let entry = RunnerConfig {
        name: "real-cluster".into(),
        url: fake.url.clone(),
        token: "glrt-realcluster1".into(),
        executor: ExecutorKind::Kubernetes,
        kubernetes: Some(KubernetesConfig {
            namespace: Some(var("KILN_TEST_NAMESPACE", Some("kiln-test"))),
            mode: Some(mode),
            privileged: mode == KilnMode::Dind,
            image,
            poll_timeout: Some(300),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (_tx, rx) = watch::channel(Shutdown::None);
    let env = JobEnv {
        client: kiln_runner::gitlab::Client::new(&fake.url).unwrap(),
        entry: Arc::new(entry),
        executor: Arc::new(KubernetesExecutor::new(client().await)),
        timings: fast_timings(),
        shutdown: rx,
        metrics: None,
    };
    let mut spec = JobSpec::new(9000 + std::process::id() as u64 % 1000, script);
    spec = spec.var("REGISTRY", &var("KILN_TEST_REGISTRY", None), false, false);
    let mut j = spec.json();
    j["services"] = services;
    let job: JobResponse = serde_json::from_value(j).unwrap();
    let report = run_job(env, job).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Success, "{trace}");
    assert!(trace.contains("Job succeeded"), "{trace}");
}

#[tokio::test]
#[ignore = "needs KILN_TEST_KUBECONFIG naming a cluster"]
async fn rootless_mode_builds_and_pushes_with_kiln() {
    run(
        KilnMode::Rootless,
        Some(var("KILN_TEST_KILN_IMAGE", None)),
        &[
            "printf 'FROM scratch\\nCOPY a /a\\n' > Dockerfile && echo hello > a",
            "kiln build --context . --dockerfile Dockerfile --destination $REGISTRY/kiln-e2e:rootless --insecure-registry $REGISTRY",
        ],
        serde_json::json!([]),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs KILN_TEST_KUBECONFIG naming a cluster"]
async fn dind_mode_builds_and_pushes_through_the_tls_daemon() {
    let dind = var("KILN_TEST_DIND_IMAGE", Some("docker:27-dind"));
    run(
        KilnMode::Dind,
        Some(var("KILN_TEST_DOCKER_IMAGE", Some("docker:27-cli"))),
        &[
            "docker version",
            "printf 'FROM scratch\\nCOPY a /a\\n' > Dockerfile && echo hello > a",
            "docker build -t $REGISTRY/kiln-e2e:dind .",
            "docker push $REGISTRY/kiln-e2e:dind",
        ],
        // The image's entrypoint takes daemon flags as arguments.
        serde_json::json!([{"name": dind, "alias": "docker",
            "command": [format!("--insecure-registry={}", var("KILN_TEST_REGISTRY", None))]}]),
    )
    .await;
}
