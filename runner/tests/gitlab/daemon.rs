//! The daemon against a fake GitLab: polling, back-off, 403, concurrency, reload, drain.

use kiln_testkit::fake_gitlab as common;

use common::*;
use kiln_runner::config::watch_config;
use kiln_runner::gitlab::JobState;
use kiln_runner::job::{JobReport, Shutdown};
use kiln_runner::metrics::Metrics;
use kiln_runner::runner::{Runner, RunnerOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

struct Harness {
    shutdown: watch::Sender<Shutdown>,
    reports: mpsc::UnboundedReceiver<kiln_runner::job::JobReport>,
    task: tokio::task::JoinHandle<Result<(), kiln_runner::runner::RunnerError>>,
    metrics: Arc<Metrics>,
}

fn config_text(url: &str, extra_global: &str, extra_entry: &str) -> String {
    format!(
        "concurrent = 1\nshutdown_timeout = 5\n{extra_global}\n[[runners]]\nname = \"r1\"\nurl = \"{url}\"\ntoken = \"glrt-runner-one\"\n{extra_entry}\n"
    )
}

async fn start(config: &Path, builds: &Path) -> Harness {
    start_polling_every(config, builds, Duration::from_millis(100)).await
}

async fn start_polling_every(config: &Path, builds: &Path, check_interval: Duration) -> Harness {
    start_with(config, builds, check_interval, fast_timings()).await
}

async fn start_with(
    config: &Path,
    builds: &Path,
    check_interval: Duration,
    timings: kiln_runner::job::Timings,
) -> Harness {
    let watch = watch_config(config.to_owned(), Duration::from_millis(50)).unwrap();
    let (tx, rx) = watch::channel(Shutdown::None);
    let (rtx, rrx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::default());
    let opts = RunnerOptions {
        system_id: "r_0123456789ab".into(),
        builds_dir: builds.to_owned(),
        timings,
        check_interval: Some(check_interval),
    };
    let runner = Runner::new(opts, watch, rx, metrics.clone()).with_reports(rtx);
    Harness {
        shutdown: tx,
        reports: rrx,
        task: tokio::spawn(runner.run()),
        metrics,
    }
}

/// A fake GitLab, and a directory for the runner's config file (`cfg`) and builds.
async fn fake_and_config() -> (FakeGitlab, tempfile::TempDir, std::path::PathBuf) {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    (fake, dir, cfg)
}

/// The next finished job's report; the test fails, naming `what`, if none comes.
async fn next_report(reports: &mut mpsc::UnboundedReceiver<JobReport>, what: &str) -> JobReport {
    tokio::time::timeout(Duration::from_secs(30), reports.recv())
        .await
        .unwrap_or_else(|_| panic!("no job report: {what}"))
        .unwrap()
}

/// Drains the runner and waits for it to return.
async fn drain(h: Harness) {
    h.shutdown.send(Shutdown::Drain).unwrap();
    h.task.await.unwrap().unwrap();
}

fn job_requests(fake: &FakeGitlab) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path == "/api/v4/jobs/request")
        .collect()
}

#[tokio::test]
async fn polls_with_last_update_backs_off_on_409_and_runs_job() {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    let mut n = 0;
    fake.set_override(move |r, s| {
        if r.path == "/api/v4/jobs/request" {
            n += 1;
            match n {
                1 => return Some(Resp::new(204).header("X-GitLab-Last-Update", "lu-abc")),
                2..=4 => return Some(Resp::new(409)),
                5 => s
                    .jobs
                    .push_back(JobSpec::new(31, &["echo polled-job"]).json()),
                _ => {}
            }
        }
        None
    });
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    let report = tokio::time::timeout(Duration::from_secs(20), h.reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.state, JobState::Success);
    assert!(fake.trace().contains("polled-job"));

    let reqs = job_requests(&fake);
    let b0 = reqs[0].json();
    assert_eq!(b0["token"], "glrt-runner-one");
    assert_eq!(b0["system_id"], "r_0123456789ab");
    assert_eq!(b0["info"]["name"], "kiln-runner");
    assert_eq!(b0["info"]["executor"], "local");
    assert_eq!(b0["info"]["features"]["masking"], true);
    assert_eq!(b0["info"]["features"]["artifacts"], false);
    assert_eq!(b0["info"]["features"]["cache"], false);
    assert_eq!(b0["info"]["features"]["trace_checksum"], true);
    assert!(b0.get("last_update").is_none());
    assert_eq!(reqs[1].json()["last_update"], "lu-abc");
    // 409s: waits grow (up to 50, 100, 200 ms; jitter takes off at most half).
    let gaps: Vec<Duration> = reqs[1..5].windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(22), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(45), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(95), "{gaps:?}");

    h.shutdown.send(Shutdown::Drain).unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let m = h.metrics.render();
    assert!(
        m.contains(&format!(
            "gitlab_runner_api_request_statuses_total{{{R1},endpoint=\"request_job\",status=\"409\",method=\"POST\"}} 3"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!("gitlab_runner_jobs_total{{{R1}}} 1")),
        "{m}"
    );
    assert!(!m.contains("gitlab_runner_failed_jobs_total{"), "{m}");
}

fn healthy_gauge(h: &Harness) -> Option<u8> {
    let m = h.metrics.render();
    let line = m
        .lines()
        .find(|l| l.starts_with(&format!("kiln_runner_healthy{{{R1}}}")))?;
    line.rsplit(' ').next()?.parse().ok()
}

/// Makes the watcher see a new file whatever the file system's mtime granularity.
fn rewrite(cfg: &Path, text: String) {
    std::fs::write(cfg, text).unwrap();
    let f = std::fs::File::options().write(true).open(cfg).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
}

#[tokio::test]
async fn refusals_below_the_unhealthy_limit_keep_the_entry_polling() {
    let (fake, dir, cfg) = fake_and_config().await;
    // The default limit (3) and interval (60 s): two refusals must not pause the entry.
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    let mut n = 0;
    fake.set_override(move |r, s| {
        if r.path == "/api/v4/jobs/request" {
            n += 1;
            if n <= 2 {
                return Some(Resp::new(403));
            }
            if n == 3 {
                s.jobs
                    .push_back(JobSpec::new(61, &["echo after-refusals"]).json());
            }
        }
        None
    });
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    let report = next_report(&mut h.reports, "a job after two refusals").await;
    assert_eq!((report.job_id, report.state), (61, JobState::Success));
    assert_eq!(healthy_gauge(&h), Some(1));
    drain(h).await;
}

#[tokio::test]
async fn refusals_up_to_the_limit_pause_the_entry_for_the_unhealthy_interval() {
    let (fake, dir, cfg) = fake_and_config().await;
    let entry = "unhealthy_requests_limit = 2\nunhealthy_interval = \"3s\"";
    std::fs::write(&cfg, config_text(&fake.url, "", entry)).unwrap();
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r2 = refuse.clone();
    fake.set_override(move |r, _| {
        (r.path == "/api/v4/jobs/request" && r2.load(std::sync::atomic::Ordering::SeqCst))
            .then(|| Resp::new(403))
    });
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    wait_until(
        "the entry marked unhealthy",
        Duration::from_secs(20),
        || healthy_gauge(&h) == Some(0),
    )
    .await;
    assert_eq!(job_requests(&fake).len(), 2);
    assert!(!h.metrics.healthy());
    // The pause ends and the entry asks again (and, refused again, pauses again).
    wait_until("a request after the pause", Duration::from_secs(30), || {
        job_requests(&fake).len() >= 3
    })
    .await;
    let reqs = job_requests(&fake);
    let pause = reqs[2].at - reqs[1].at;
    // 3 s, against backoffs of at most 0.4 s.
    assert!(pause >= Duration::from_millis(2500), "{pause:?}");

    // GitLab takes the token again: the entry becomes healthy and runs a job.
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    fake.push_job(JobSpec::new(62, &["echo healthy-again"]).json());
    let report = next_report(&mut h.reports, "a job once GitLab accepts the token").await;
    assert_eq!((report.job_id, report.state), (62, JobState::Success));
    assert_eq!(healthy_gauge(&h), Some(1));
    drain(h).await;
}

#[tokio::test]
async fn config_reload_restarts_an_unhealthy_entry_at_once() {
    let (fake, dir, cfg) = fake_and_config().await;
    let entry = "unhealthy_requests_limit = 1\nunhealthy_interval = \"1h\"";
    std::fs::write(&cfg, config_text(&fake.url, "", entry)).unwrap();
    let mut refused = false;
    fake.set_override(move |r, _| {
        if r.path == "/api/v4/jobs/request" && !refused {
            refused = true;
            return Some(Resp::new(403));
        }
        None
    });
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    wait_until(
        "the entry marked unhealthy",
        Duration::from_secs(20),
        || healthy_gauge(&h) == Some(0),
    )
    .await;
    fake.push_job(JobSpec::new(63, &["echo after-reload"]).json());
    // The operator fixes the token (here: rewrites the file as it was).
    rewrite(&cfg, config_text(&fake.url, "check_interval = 1", entry));
    let report = next_report(&mut h.reports, "the reload restarts the paused entry").await;
    assert_eq!((report.job_id, report.state), (63, JobState::Success));
    drain(h).await;
}

#[tokio::test]
async fn job_requests_wait_as_long_as_retry_after_says_on_429_and_503() {
    let (fake, dir, cfg) = fake_and_config().await;
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    let mut n = 0;
    fake.set_override(move |r, s| {
        if r.path == "/api/v4/jobs/request" {
            n += 1;
            match n {
                1 => return Some(Resp::new(429).header("Retry-After", 3)),
                2 => return Some(Resp::new(503).retry_after_date(4)),
                3 => s.jobs.push_back(JobSpec::new(64, &["true"]).json()),
                _ => {}
            }
        }
        None
    });
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    next_report(&mut h.reports, "a job after the waits").await;
    let reqs = job_requests(&fake);
    // Backoffs here are at most 0.4 s: these waits are GitLab's, to the second (the date
    // has no fraction, so it may come up to a second early).
    let after_429 = reqs[1].at - reqs[0].at;
    assert!(after_429 >= Duration::from_millis(2900), "{after_429:?}");
    let after_503 = reqs[2].at - reqs[1].at;
    assert!(after_503 >= Duration::from_millis(2500), "{after_503:?}");
    drain(h).await;
}

#[tokio::test]
async fn concurrent_limits_jobs_and_reload_keeps_running_job() {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    fake.push_job(JobSpec::new(41, &["echo first-start", "sleep 1.5", "echo first-end"]).json());
    fake.push_job(JobSpec::new(42, &["echo second"]).json());
    let mut h = start(&cfg, &dir.path().join("builds")).await;

    // While job 41 runs: change the file (a second entry, a new check interval).
    wait_until("job 41 running", Duration::from_secs(20), || {
        fake.saw_running(41)
    })
    .await;
    let text = config_text(&fake.url, "check_interval = 1", "")
        + &format!(
            "[[runners]]\nname = \"r2\"\nurl = \"{}\"\ntoken = \"glrt-runner-two\"\n",
            fake.url
        );
    rewrite(&cfg, text);

    let r1 = tokio::time::timeout(Duration::from_secs(20), h.reports.recv())
        .await
        .unwrap()
        .unwrap();
    let r2 = tokio::time::timeout(Duration::from_secs(20), h.reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r1.job_id, r1.state), (41, JobState::Success));
    assert!(String::from_utf8_lossy(&r1.trace).contains("first-end"));
    assert_eq!(r2.job_id, 42);

    // concurrent = 1: job 42 was only requested after job 41's final update.
    let reqs = fake.requests();
    let final41 = reqs
        .iter()
        .position(|r| r.path == "/api/v4/jobs/41" && r.json()["state"] == "success")
        .unwrap();
    let start42 = reqs
        .iter()
        .position(|r| r.path == "/api/v4/jobs/42")
        .unwrap();
    assert!(start42 > final41);
    // The new entry is polled too.
    wait_until("a request with r2's token", Duration::from_secs(20), || {
        job_requests(&fake)
            .iter()
            .any(|r| r.json()["token"] == "glrt-runner-two")
    })
    .await;

    h.shutdown.send(Shutdown::Drain).unwrap();
    h.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn drain_waits_for_running_job_and_abort_fails_it() {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    fake.push_job(JobSpec::new(51, &["sleep 1", "echo drained-ok"]).json());
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    wait_until("job 51 running", Duration::from_secs(20), || {
        fake.saw_running(51)
    })
    .await;
    h.shutdown.send(Shutdown::Drain).unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let r = h.reports.recv().await.unwrap();
    assert_eq!(r.state, JobState::Success);
    let polls = job_requests(&fake).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_requests(&fake).len(), polls, "no polling after drain");

    // Abort: the running job fails with runner_system_failure.
    let fake = FakeGitlab::start().await;
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    fake.push_job(JobSpec::new(52, &["sleep 30"]).json());
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    wait_until("job 52 running", Duration::from_secs(20), || {
        fake.saw_running(52)
    })
    .await;
    h.shutdown.send(Shutdown::Abort).unwrap();
    tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let r = h.reports.recv().await.unwrap();
    assert_eq!(r.failure_reason.as_deref(), Some("runner_system_failure"));
    assert_eq!(
        fake.final_updates()[0]["failure_reason"],
        "runner_system_failure"
    );
}

#[tokio::test]
async fn a_gitlab_refusing_the_final_update_does_not_hold_up_a_timed_out_shutdown() {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let text =
        config_text(&fake.url, "", "").replace("shutdown_timeout = 5", "shutdown_timeout = 0");
    std::fs::write(&cfg, text).unwrap();
    fake.push_job(JobSpec::new(53, &["trap '' TERM; echo started; sleep 60"]).json());
    // GitLab fails every final update: retried as usual, that would take many minutes.
    fake.set_override(|r, _| {
        (r.is_update() && r.json()["state"] != "running").then(|| Resp::new(503))
    });
    let mut timings = fast_timings();
    timings.final_update_tries = 100_000;
    let mut h = start_with(
        &cfg,
        &dir.path().join("builds"),
        Duration::from_millis(100),
        timings,
    )
    .await;
    wait_until("the script started", Duration::from_secs(20), || {
        fake.trace().contains("started")
    })
    .await;
    h.shutdown.send(Shutdown::Abort).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(60), h.task)
        .await
        .expect("the runner gives up on the final update")
        .unwrap();
    assert!(
        matches!(r, Err(kiln_runner::runner::RunnerError::ShutdownTimeout(1))),
        "{r:?}"
    );
    let report = next_report(&mut h.reports, "the killed job reports").await;
    assert!(!report.delivered);
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("runner_system_failure")
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.is_update() && r.json()["failure_reason"] == "runner_system_failure"));
}

/// The labels gitlab-runner gives the entry of [`config_text`] (its short token) and the
/// system id of the harness.
const R1: &str = "runner=\"runner-on\",system_id=\"r_0123456789ab\"";

async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the one sample named `name` with (at least) `labels`.
fn sample(samples: &[exposition::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().copied()
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let (fake, dir, cfg) = fake_and_config().await;
    let text = config_text(&fake.url, "", "limit = 2").replace("concurrent = 1", "concurrent = 3");
    std::fs::write(&cfg, text).unwrap();
    fake.push_job(JobSpec::new(91, &["sleep 1"]).json());
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    let (addr, task) = kiln_runner::metrics::serve("127.0.0.1:0", h.metrics.clone())
        .await
        .unwrap();

    // While the script sleeps, the job is in gitlab-runner's `step_script` stage.
    let running = format!(
        "gitlab_runner_jobs{{{R1},state=\"running\",stage=\"step_script\",executor_stage=\"prepare\"}} 1\n"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut body = scrape(addr).await;
    while !body.contains(&running) {
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = scrape(addr).await;
    }
    exposition::parse(&body);
    assert_eq!(
        next_report(&mut h.reports, "sleep").await.state,
        JobState::Success
    );
    fake.push_job(JobSpec::new(92, &["exit 3"]).json());
    let failed = next_report(&mut h.reports, "exit 3").await;
    assert_eq!(failed.failure_reason.as_deref(), Some("script_failure"));

    let body = scrape(addr).await;
    let s = exposition::parse(&body);
    let r1 = [("runner", "runner-on"), ("system_id", "r_0123456789ab")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        r1.iter().chain(extra).copied().collect()
    };
    assert_eq!(
        sample(&s, "gitlab_runner_concurrent", &[]),
        Some(3.0),
        "{body}"
    );
    assert_eq!(sample(&s, "gitlab_runner_limit", &r1), Some(2.0));
    assert_eq!(sample(&s, "gitlab_runner_jobs_total", &r1), Some(2.0));
    assert_eq!(
        sample(
            &s,
            "gitlab_runner_failed_jobs_total",
            &with(&[("failure_reason", "script_failure")])
        ),
        Some(1.0),
        "{body}"
    );
    // Nothing runs: only the idle series is left, at 0.
    let jobs: Vec<_> = s
        .iter()
        .filter(|x| x.name == "gitlab_runner_jobs")
        .collect();
    assert_eq!(jobs.len(), 1, "{body}");
    assert_eq!(
        (
            jobs[0].label("state"),
            jobs[0].label("stage"),
            jobs[0].label("executor_stage"),
            jobs[0].value
        ),
        (Some("idle"), Some("idle"), Some("idle"), 0.0)
    );
    assert_eq!(
        sample(&s, "gitlab_runner_job_duration_seconds_count", &r1),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &s,
            "gitlab_runner_job_duration_seconds_bucket",
            &with(&[("le", "30")])
        ),
        Some(2.0)
    );
    assert!(sample(&s, "gitlab_runner_job_duration_seconds_sum", &r1).unwrap() >= 1.0);
    assert!(sample(&s, "gitlab_runner_request_concurrency", &r1).unwrap() <= 1.0);
    assert_eq!(
        sample(&s, "gitlab_runner_request_concurrency_exceeded_total", &r1),
        Some(0.0)
    );
    let api = |endpoint, status, method| {
        sample(
            &s,
            "gitlab_runner_api_request_statuses_total",
            &with(&[
                ("endpoint", endpoint),
                ("status", status),
                ("method", method),
            ]),
        )
    };
    assert_eq!(api("request_job", "201", "POST"), Some(2.0), "{body}");
    assert!(api("update_job", "200", "PUT").unwrap() >= 4.0, "{body}");
    assert!(api("patch_trace", "202", "PATCH").unwrap() >= 2.0, "{body}");
    assert_eq!(sample(&s, "kiln_runner_healthy", &r1), Some(1.0));
    let version = s
        .iter()
        .find(|x| x.name == "gitlab_runner_version_info")
        .unwrap();
    assert_eq!(
        (version.label("name"), version.value),
        (Some("kiln-runner"), 1.0)
    );
    assert!(sample(&s, "gitlab_runner_errors_total", &[("level", "error")]).is_some());

    // The process's own figures, from /proc/self.
    let p = |name| sample(&s, name, &[]).unwrap_or_else(|| panic!("no {name}: {body}"));
    assert!(p("process_resident_memory_bytes") > 1e5);
    assert!(p("process_virtual_memory_bytes") >= p("process_resident_memory_bytes"));
    assert!(p("process_open_fds") > 0.0);
    assert!(p("process_max_fds") >= p("process_open_fds"));
    assert!(p("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start_time = p("process_start_time_seconds");
    assert!(
        start_time <= now + 1.0 && start_time > now - 7.0 * 86400.0,
        "{start_time}"
    );

    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let missing = reqwest::get(format!("http://{addr}/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
    task.abort();
    drain(h).await;
}

#[tokio::test]
async fn register_verify_unregister_requests() {
    let fake = FakeGitlab::start().await;
    let c = kiln_runner::gitlab::Client::new(&fake.url).unwrap();
    let creds = c
        .register(&kiln_runner::gitlab::RegisterRequest {
            token: "legacy-reg-token".into(),
            description: "kiln".into(),
            tag_list: Some("kiln,docker".into()),
            run_untagged: true,
            locked: false,
            paused: false,
            maximum_timeout: None,
            info: kiln_runner::gitlab::VersionInfo::new("local"),
        })
        .await
        .unwrap();
    assert_eq!(creds.token.as_deref(), Some("glrt-registered"));
    c.verify("glrt-registered", "r_0123456789ab").await.unwrap();
    c.unregister("glrt-registered").await.unwrap();
    let reqs = fake.requests();
    let reg = reqs[0].json();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/api/v4/runners")
    );
    assert_eq!(reg["token"], "legacy-reg-token");
    assert_eq!(reg["tag_list"], "kiln,docker");
    assert_eq!(reg["run_untagged"], true);
    assert_eq!(reg["locked"], false);
    assert_eq!(reqs[1].path, "/api/v4/runners/verify");
    assert_eq!(reqs[1].json()["system_id"], "r_0123456789ab");
    assert_eq!(
        (reqs[2].method.as_str(), reqs[2].path.as_str()),
        ("DELETE", "/api/v4/runners")
    );
    assert_eq!(reqs[2].json()["token"], "glrt-registered");

    fake.set_override(|r, _| (r.path == "/api/v4/runners/verify").then(|| Resp::new(403)));
    assert!(matches!(
        c.verify("glrt-gone", "r_0123456789ab").await,
        Err(kiln_runner::gitlab::GitlabError::Status { status: 403, .. })
    ));
}

#[tokio::test]
async fn entry_limit_caps_its_jobs_below_concurrent() {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    // concurrent allows 4 but the entry's limit is 1; two request loops compete for it.
    let text = config_text(&fake.url, "", "limit = 1\nrequest_concurrency = 2")
        .replace("concurrent = 1", "concurrent = 4");
    std::fs::write(&cfg, text).unwrap();
    fake.push_job(JobSpec::new(81, &["sleep 1"]).json());
    fake.push_job(JobSpec::new(82, &["echo second"]).json());
    let mut h = start(&cfg, &dir.path().join("builds")).await;
    let a = tokio::time::timeout(Duration::from_secs(20), h.reports.recv())
        .await
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(20), h.reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.job_id, b.job_id), (81, 82));
    let reqs = fake.requests();
    let final81 = reqs
        .iter()
        .position(|r| r.path == "/api/v4/jobs/81" && r.json()["state"] == "success")
        .unwrap();
    let start82 = reqs
        .iter()
        .position(|r| r.path == "/api/v4/jobs/82")
        .unwrap();
    assert!(
        start82 > final81,
        "job 82 started while 81 held the entry's only slot"
    );
    h.shutdown.send(Shutdown::Drain).unwrap();
    h.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn long_polled_requests_follow_at_once_ack_fast_and_do_not_delay_shutdown() {
    let fake = FakeGitlab::start().await;
    // Requests are held 4 s, longer than the 2 s check interval: the next request must start
    // as the held one is answered (a gap of 4 s), not a check interval later (6 s). A second
    // apart, whatever the machine's load.
    let hold = Duration::from_secs(4);
    fake.set_long_poll(Some(hold));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_text(&fake.url, "", "")).unwrap();
    let interval = Duration::from_secs(2);
    let mut h = start_polling_every(&cfg, &dir.path().join("builds"), interval).await;
    wait_until("two held requests", Duration::from_secs(30), || {
        job_requests(&fake).len() >= 2
    })
    .await;
    let mut arrivals: Vec<_> = job_requests(&fake).iter().map(|r| r.at).collect();
    arrivals.sort();
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= hold, "the first was held: {gap:?}");
    assert!(gap < hold + interval / 2, "{gap:?}");

    // A job queued while a request is held for 30 s is handed out and acknowledged at once:
    // long before the hold or a check interval would end.
    fake.set_long_poll(Some(Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = std::time::Instant::now();
    fake.push_job(JobSpec::new(81, &["true"]).json());
    let report = tokio::time::timeout(Duration::from_secs(20), h.reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.state, JobState::Success);
    let ack = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v4/jobs/81" && r.json()["state"] == "running")
        .unwrap();
    let latency = ack.at - queued;
    assert!(latency < interval / 2, "{latency:?}");

    // A request held for a minute does not hold up the shutdown.
    fake.set_long_poll(Some(Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    h.shutdown.send(Shutdown::Drain).unwrap();
    tokio::time::timeout(Duration::from_secs(15), h.task)
        .await
        .expect("shutdown while a request is held")
        .unwrap()
        .unwrap();
}
