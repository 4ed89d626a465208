//! End to end against `gitlab-runner-mock`, the mock GitLab of the `gitlab-runner` crate.

use gitlab_runner_mock::{GitlabRunnerMock, MockJobState, MockJobStepName, MockJobStepWhen};
use kiln_runner::config::watch_config;
use kiln_runner::job::{Shutdown, Timings};
use kiln_runner::metrics::Metrics;
use kiln_runner::runner::{Runner, RunnerOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn crc(data: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    format!("crc32:{:08x}", h.finalize())
}

#[tokio::test]
async fn script_job_runs_end_to_end_against_the_mock() {
    let mock = GitlabRunnerMock::start().await;
    mock.set_update_interval(1);
    let mut b = mock.job_builder("kiln-build".into());
    b.add_step(
        MockJobStepName::Script,
        vec![
            "echo hello-from-kiln".into(),
            "echo \"secret is $KILN_SECRET\"".into(),
            "test -n \"$CI_JOB_ID\" && test -n \"$CI_PROJECT_DIR\"".into(),
        ],
        3600,
        MockJobStepWhen::OnSuccess,
        false,
    );
    // The mock's repo_url points nowhere: skip the clone as a job may ask.
    b.add_variable("GIT_STRATEGY".into(), "none".into(), true, false);
    b.add_variable(
        "KILN_SECRET".into(),
        "mock-secret-v4lue".into(),
        false,
        true,
    );
    let job = b.build();
    mock.enqueue_job(job.clone());

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "concurrent = 1\n[[runners]]\nname = \"mock\"\nurl = \"{}\"\ntoken = \"{}\"\n",
            mock.uri(),
            mock.runner_token()
        ),
    )
    .unwrap();
    let watch = watch_config(cfg.clone(), Duration::from_secs(1)).unwrap();
    let (sd_tx, sd_rx) = watch::channel(Shutdown::None);
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let opts = RunnerOptions {
        system_id: kiln_runner::system_id::load_or_create(&cfg).unwrap(),
        builds_dir: dir.path().join("builds"),
        timings: Timings {
            retry_base: Duration::from_millis(100),
            ..Timings::default()
        },
        check_interval: Some(Duration::from_millis(200)),
    };
    let task = tokio::spawn(
        Runner::new(opts, watch, sd_rx, Arc::new(Metrics::default()))
            .with_reports(rtx)
            .run(),
    );
    let report = tokio::time::timeout(Duration::from_secs(60), rrx.recv())
        .await
        .expect("job finished in time")
        .unwrap();
    sd_tx.send(Shutdown::Drain).unwrap();
    task.await.unwrap().unwrap();

    assert_eq!(
        job.state(),
        MockJobState::Success,
        "{}",
        String::from_utf8_lossy(&report.trace)
    );
    let log = job.log();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("$ echo hello-from-kiln"), "{text}");
    assert!(text.contains("\nhello-from-kiln\n"));
    assert!(text.contains("secret is [MASKED]"));
    assert!(!text.contains("mock-secret-v4lue"));
    assert!(!text.contains(job.token()));
    assert_eq!(
        log, report.trace,
        "the mock holds exactly the trace the runner wrote"
    );
    assert_eq!(crc(&log), crc(&report.trace));
    assert!(report.delivered);
}
