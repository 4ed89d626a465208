//! The `kiln-runner` binary with a `kubernetes` entry, against the fake cluster through a
//! kubeconfig as an operator would set it up: SIGTERM mid-job, and a crashed runner's
//! pod removed by the next start.

use kiln_testkit::fake_gitlab as common;

use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kiln_fake_cluster::FakeCluster;
use kube::api::ListParams;
use kube::Api;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kiln-runner");

fn write_config(dir: &Path, gitlab: &str) -> std::path::PathBuf {
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "concurrent = 2\ncheck_interval = 1\nshutdown_timeout = 5\n\
             [[runners]]\nname = \"kube\"\nurl = \"{gitlab}\"\ntoken = \"glrt-kube-runner-token\"\nexecutor = \"kubernetes\"\n\
             [runners.kubernetes]\nnamespace = \"ci\"\npoll_timeout = 30\ncleanup_grace_period_seconds = 1\n"
        ),
    )
    .unwrap();
    cfg
}

fn start(cfg: &Path, kubeconfig: &Path, log: &Path) -> Child {
    Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("KUBECONFIG", kubeconfig)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

async fn pod_names(cluster: &FakeCluster) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "ci");
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

async fn wait_for_pods(cluster: &FakeCluster, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = pod_names(cluster).await;
        if names.len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: pods {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn exit_of(mut child: Child) -> Option<i32> {
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the runner exits")
    .unwrap()
    .unwrap()
    .code()
}

#[tokio::test]
async fn sigterm_fails_the_running_job_and_deletes_its_pod() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    fake.push_job(JobSpec::new(501, &["echo started", "sleep 600"]).json());
    let log = dir.path().join("stderr.log");
    let child = start(&write_config(dir.path(), &fake.url), &kubeconfig, &log);
    wait_until("the job's script running", Duration::from_secs(60), || {
        fake.trace().contains("started")
    })
    .await;
    assert_eq!(pod_names(&cluster).await.len(), 1);

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let code = exit_of(child).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(0), "{logs}");
    let finals = fake.final_updates();
    assert_eq!(finals.len(), 1, "{logs}");
    assert_eq!(finals[0]["failure_reason"], "runner_system_failure");
    wait_for_pods(&cluster, 0, "after SIGTERM").await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), "ci");
    assert!(secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    wait_until("no process of the pod", Duration::from_secs(10), || {
        cluster.running_processes().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_crashed_runners_pod_is_removed_by_the_next_start() {
    let fake = FakeGitlab::start().await;
    let cluster = FakeCluster::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).unwrap();
    fake.push_job(JobSpec::new(502, &["echo started", "sleep 600"]).json());
    let cfg = write_config(dir.path(), &fake.url);
    let log = dir.path().join("first.log");
    let mut first = start(&cfg, &kubeconfig, &log);
    wait_until("the job's script running", Duration::from_secs(60), || {
        fake.trace().contains("started")
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    // Nobody deletes the pod of a runner that died: it is still there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pod_names(&cluster).await.len(), 1);

    let log2 = dir.path().join("second.log");
    let second = start(&cfg, &kubeconfig, &log2);
    wait_for_pods(&cluster, 0, "after the restart").await;
    let logs = std::fs::read_to_string(&log2).unwrap();
    assert!(logs.contains("an earlier run left behind"), "{logs}");
    let pid = rustix::process::Pid::from_raw(second.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    exit_of(second).await;
}
