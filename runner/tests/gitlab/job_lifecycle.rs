//! The job lifecycle against a fake GitLab: requests, trace patches, final update,
//! cancellation, timeout, masking, output limit.

use kiln_testkit::fake_gitlab as common;

use common::*;
use kiln_runner::gitlab::JobState;
use kiln_runner::job::{run_job, Shutdown};
use std::time::{Duration, Instant};

#[tokio::test]
async fn successful_job_reports_running_then_trace_then_success_with_checksum() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(7, &["echo hello world", "echo second line"]);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(
        report.state,
        JobState::Success,
        "{}",
        String::from_utf8_lossy(&report.trace)
    );
    assert!(report.delivered);

    let reqs = fake.requests();
    // The first call is the running update, before any trace.
    assert!(reqs[0].is_update());
    assert_eq!(reqs[0].path, "/api/v4/jobs/7");
    let first = reqs[0].json();
    assert_eq!(first["state"], "running");
    assert_eq!(first["token"], spec.token);

    let trace = fake.trace();
    assert!(
        trace.contains("\x1b[32;1m$ echo hello world\x1b[0;m\nhello world\n"),
        "{trace}"
    );
    assert!(trace.contains("$ echo second line"));
    assert!(trace.contains("Job succeeded"));
    assert!(trace.starts_with("Running with kiln-runner"));

    // Patches carry the job token, text/plain and contiguous ranges from 0.
    let mut next = 0usize;
    for p in fake.patches() {
        assert_eq!(p.header("JOB-TOKEN"), Some(spec.token.as_str()));
        assert_eq!(p.header("Content-Type"), Some("text/plain"));
        let range = p.header("Content-Range").unwrap();
        assert_eq!(range, format!("{}-{}", next, next + p.body.len() - 1));
        next += p.body.len();
    }
    assert_eq!(next, trace.len());

    let finals = fake.final_updates();
    assert_eq!(finals.len(), 1);
    let f = &finals[0];
    assert_eq!(f["state"], "success");
    assert_eq!(f["output"]["checksum"], crc(trace.as_bytes()));
    assert_eq!(f["output"]["bytesize"], trace.len() as u64);
    assert!(f.get("failure_reason").is_none());
    // Final update comes after the last patch.
    let last_patch = reqs.iter().rposition(|r| r.is_patch()).unwrap();
    let final_pos = reqs.iter().rposition(|r| r.is_update()).unwrap();
    assert!(final_pos > last_patch);
}

#[tokio::test]
async fn failing_line_stops_script_and_reports_its_exit_code() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec =
        JobSpec::new(8, &["echo one", "(exit 3)", "echo not-reached"]).after(&["echo after-runs"]);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.state, JobState::Failed);
    assert_eq!(report.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(report.exit_code, Some(3));
    let trace = fake.trace();
    assert!(trace.contains("$ (exit 3)"));
    assert!(!trace.contains("not-reached"));
    assert!(
        trace.contains("after-runs"),
        "after_script runs after a failure"
    );
    assert!(trace.contains("ERROR: Job failed: exit code 3"));
    let f = &fake.final_updates()[0];
    assert_eq!(f["state"], "failed");
    assert_eq!(f["failure_reason"], "script_failure");
    assert_eq!(f["exit_code"], 3);
}

#[tokio::test]
async fn pipe_failure_fails_the_line() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(9, &["false | cat", "echo not-reached"]);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.exit_code, Some(1));
    assert!(!fake.trace().contains("not-reached"));
}

#[tokio::test]
async fn masked_secret_split_across_two_patches_never_reaches_gitlab() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let secret = "Sup3rS3cretValue";
    let spec = JobSpec::new(
        10,
        &[
            // Half the secret, a pause longer than the patch interval, the other half.
            "printf 'before Sup3rS3'; sleep 1; printf 'cretValue after\\n'",
            "echo \"token: $CI_JOB_TOKEN\"",
            "echo \"again: $MY_SECRET\"",
        ],
    )
    .var("MY_SECRET", secret, true, false);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.state, JobState::Success);
    let trace = fake.trace();
    assert!(!trace.contains(secret), "{trace}");
    assert!(!trace.contains(&spec.token), "{trace}");
    assert!(trace.contains("before [MASKED] after"), "{trace}");
    assert!(trace.contains("token: [MASKED]"));
    assert!(trace.contains("again: [MASKED]"));
    // The secret's first half went out in no patch either: it was held back.
    let patches = fake.patches();
    assert!(patches.len() >= 2, "{} patches", patches.len());
    assert!(patches
        .iter()
        .all(|p| !String::from_utf8_lossy(&p.body).contains("Sup3rS3c")));
    let before = patches
        .iter()
        .position(|p| String::from_utf8_lossy(&p.body).contains("before "))
        .unwrap();
    let masked = patches
        .iter()
        .position(|p| String::from_utf8_lossy(&p.body).contains("[MASKED] after"))
        .unwrap();
    assert!(masked > before, "the two halves were in different patches");
}

#[tokio::test]
async fn output_limit_cuts_trace_with_gitlab_runner_notice() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let mut e = entry(&fake.url, builds.path());
    e.output_limit = 1; // KiB
    let spec = JobSpec::new(
        11,
        &[
            "for i in $(seq 1 300); do echo line-$i-xxxxxxxx; done",
            "echo still-running > marker",
        ],
    );
    let (env, _sd) = job_env_with(&fake, e, fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.state, JobState::Success);
    let trace = fake.trace();
    assert!(trace.contains("Job's log exceeded limit of 1024 bytes.\nJob execution will continue but no more output will be collected."), "{trace}");
    assert!(!trace.contains("line-300-"));
    assert!(!trace.contains("Job succeeded"), "nothing after the limit");
    let f = &fake.final_updates()[0];
    assert_eq!(f["output"]["checksum"], crc(trace.as_bytes()));
    assert_eq!(f["output"]["bytesize"], trace.len() as u64);
}

#[tokio::test]
async fn timeout_kills_process_group_and_reports_job_execution_timeout() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(
        12,
        &["echo started", "sleep 60 & sleep 60", "echo not-reached"],
    )
    .timeout(1);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let t0 = Instant::now();
    let report = run_job(env, job_response(&spec)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("job_execution_timeout")
    );
    let trace = fake.trace();
    assert!(trace.contains("started"));
    assert!(!trace.contains("not-reached"));
    assert!(trace.contains("execution took longer than 1 seconds"));
    assert_eq!(
        fake.final_updates()[0]["failure_reason"],
        "job_execution_timeout"
    );
}

#[tokio::test]
async fn canceling_stops_script_and_runs_after_script() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(13, &["echo started", "sleep 60", "echo not-reached"])
        .after(&["echo after-script-ran"]);
    fake.set_override(|r, s| {
        // The answer to the patch carrying "started" says the user cancelled.
        if r.is_patch() && String::from_utf8_lossy(&r.body).contains("started") {
            s.job_status = "canceling".into();
        }
        None
    });
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let t0 = Instant::now();
    let report = run_job(env, job_response(&spec)).await;
    assert!(t0.elapsed() < Duration::from_secs(20));
    let trace = fake.trace();
    assert!(trace.contains("after-script-ran"), "{trace}");
    assert!(!trace.contains("not-reached"));
    assert_eq!(report.state, JobState::Failed);
    // job_canceled is not in this job's failure_reasons: sent as unknown_failure.
    assert_eq!(report.failure_reason.as_deref(), Some("unknown_failure"));
    assert!(report.delivered);
}

#[tokio::test]
async fn a_silent_jobs_cancel_is_seen_by_polling_its_status() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    // GitLab wants patches every second (someone watches the job); the keep-alive alone
    // would come after two minutes.
    fake.state.lock().unwrap().trace_interval = Some(1);
    let mut timings = fast_timings();
    timings.keepalive_interval = Duration::from_secs(120);
    let spec = JobSpec::new(24, &["echo started", "sleep 600"]).after(&["echo after-cancel"]);
    fake.set_override(|r, s| {
        // Only a status poll (a running PUT once the script's output is in) hears of the
        // cancel: the job prints nothing more.
        let started = String::from_utf8_lossy(s.trace_mut(24)).contains("started");
        (started && r.is_update() && r.json()["state"] == "running")
            .then(|| Resp::new(200).header("Job-Status", "canceling"))
    });
    let (env, _sd) = job_env(&fake, builds.path(), timings);
    let report = tokio::time::timeout(Duration::from_secs(60), run_job(env, job_response(&spec)))
        .await
        .expect("the cancel is seen long before the keep-alive");
    assert!(String::from_utf8_lossy(&report.trace).contains("after-cancel"));
    assert_eq!(report.failure_reason.as_deref(), Some("unknown_failure"));
}

#[tokio::test]
async fn canceled_kills_at_once_then_sends_trace_and_state_once() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(14, &["echo started", "sleep 60"]).after(&["echo after-script-ran"]);
    let mut canceled = false;
    fake.set_override(move |r, _| {
        // From the patch carrying "started" on, GitLab refuses the job's calls as canceled.
        canceled |= r.is_patch() && String::from_utf8_lossy(&r.body).contains("started");
        (canceled && (r.is_patch() || r.is_update()))
            .then(|| Resp::new(403).header("Job-Status", "canceled"))
    });
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let t0 = Instant::now();
    let report = run_job(env, job_response(&spec)).await;
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(!String::from_utf8_lossy(&report.trace).contains("after-script-ran"));
    assert!(!report.delivered);
    // Like gitlab-runner, the last trace and the final state are still sent, and the
    // refusal ends it: one try, no retries.
    let reqs = fake.requests();
    let last_patch = reqs.iter().rposition(|r| r.is_patch()).unwrap();
    assert!(String::from_utf8_lossy(&reqs[last_patch].body).contains("aborted by GitLab"));
    let finals = fake.updates_with_state("failed");
    assert_eq!(finals.len(), 1, "{finals:?}");
}

#[tokio::test]
async fn range_mismatch_restarts_from_gitlab_offset() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let mut timings = fast_timings();
    timings.max_patch = 64;
    let spec = JobSpec::new(15, &["for i in $(seq 1 20); do echo line-$i; done"]);
    let mut lost = false;
    fake.set_override(move |r, s| {
        // On the third patch GitLab "loses" everything after byte 10.
        if r.is_patch() && !lost && s.trace_mut(15).len() >= 128 {
            lost = true;
            s.trace_mut(15).truncate(10);
            return Some(Resp::new(416).header("Range", "0-10"));
        }
        None
    });
    let (env, _sd) = job_env(&fake, builds.path(), timings);
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.state, JobState::Success);
    let ranges = fake.content_ranges();
    let i = ranges.iter().position(|r| r.starts_with("128-")).unwrap();
    assert!(ranges[i + 1].starts_with("10-"), "{ranges:?}");
    assert_eq!(fake.trace().as_bytes(), report.trace.as_slice());
    assert!(ranges.iter().all(|r| {
        let (a, b) = r.split_once('-').unwrap();
        b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() < 64
    }));
}

#[tokio::test]
async fn final_update_412_resends_whole_trace_then_retries() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(16, &["echo payload"]);
    let mut rejected = false;
    fake.set_override(move |r, s| {
        if r.is_update() && r.json()["state"] == "success" && !rejected {
            rejected = true;
            // GitLab's copy is corrupt: it wants the trace again from 0.
            s.trace_mut(16).clear();
            return Some(Resp::new(412));
        }
        None
    });
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert!(report.delivered);
    let reqs = fake.requests();
    let finals: Vec<usize> = reqs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_update() && r.json()["state"] == "success")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(finals.len(), 2);
    let between: Vec<_> = reqs[finals[0]..finals[1]]
        .iter()
        .filter(|r| r.is_patch())
        .collect();
    assert!(!between.is_empty());
    assert!(between[0]
        .header("Content-Range")
        .unwrap()
        .starts_with("0-"));
    assert_eq!(fake.trace().as_bytes(), report.trace.as_slice());
    assert_eq!(
        reqs[finals[1]].json()["output"]["checksum"],
        crc(&report.trace)
    );
}

#[tokio::test]
async fn final_update_202_is_retried_after_retry_after() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(17, &["echo x"]);
    let mut n = 0;
    fake.set_override(move |r, _| {
        if r.is_update() && r.json()["state"] == "success" {
            n += 1;
            if n == 1 {
                return Some(Resp::new(202).header("Retry-After", 1));
            }
        }
        None
    });
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert!(report.delivered);
    let finals = fake.updates_with_state("success");
    assert_eq!(finals.len(), 2);
    let gap = finals[1].at - finals[0].at;
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
}

#[tokio::test]
async fn final_update_5xx_backs_off_and_retries() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(18, &["echo x"]);
    let mut n = 0;
    fake.set_override(move |r, _| {
        if r.is_update() && r.json()["state"] == "success" {
            n += 1;
            if n <= 2 {
                return Some(Resp::new(502));
            }
        }
        None
    });
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert!(report.delivered);
    assert_eq!(fake.final_updates().len(), 1);
    let n = fake
        .requests()
        .iter()
        .filter(|r| r.is_update() && r.json()["state"] == "success")
        .count();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn final_update_429_and_503_wait_as_long_as_retry_after_says() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(23, &["echo x"]);
    let mut n = 0;
    fake.set_override(move |r, _| {
        if r.is_update() && r.json()["state"] == "success" {
            n += 1;
            match n {
                1 => return Some(Resp::new(429).header("Retry-After", 2)),
                2 => return Some(Resp::new(503).retry_after_date(3)),
                _ => {}
            }
        }
        None
    });
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert!(report.delivered);
    let finals = fake.updates_with_state("success");
    assert_eq!(finals.len(), 3);
    // Backoffs here are at most 0.4 s; the date has no fraction of a second.
    let after_429 = finals[1].at - finals[0].at;
    assert!(after_429 >= Duration::from_millis(1900), "{after_429:?}");
    let after_503 = finals[2].at - finals[1].at;
    assert!(after_503 >= Duration::from_millis(1500), "{after_503:?}");
}

#[tokio::test]
async fn trace_update_interval_header_is_obeyed() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    fake.state.lock().unwrap().trace_interval = Some(1);
    let spec = JobSpec::new(
        19,
        &["for i in $(seq 1 6); do echo tick-$i; sleep 0.5; done"],
    );
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.state, JobState::Success);
    let patches = fake.patches();
    assert!(patches.len() >= 3, "{} patches", patches.len());
    // The last patch is the flush at the end of the job, sent at once.
    for w in patches[..patches.len() - 1].windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "patches {gap:?} apart despite interval 1 s"
        );
    }
}

#[tokio::test]
async fn keepalive_update_when_nothing_was_sent() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let mut timings = fast_timings();
    timings.keepalive_interval = Duration::from_millis(300);
    let spec = JobSpec::new(22, &["echo a", "sleep 2", "echo b"]);
    let (env, _sd) = job_env(&fake, builds.path(), timings);
    let report = run_job(env, job_response(&spec)).await;
    assert_eq!(report.state, JobState::Success);
    let running: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.is_update() && r.json()["state"] == "running")
        .collect();
    assert!(running.len() >= 3, "keep-alive PUTs: {}", running.len() - 1);
    assert_eq!(running[1].json()["token"], spec.token);
}

#[tokio::test]
async fn shutdown_abort_reports_runner_system_failure() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(20, &["echo started", "sleep 60"]).after(&["echo after"]);
    let (env, sd) = job_env(&fake, builds.path(), fast_timings());
    let h = tokio::spawn(run_job(env, job_response(&spec)));
    wait_until("the script started", Duration::from_secs(20), || {
        fake.trace().contains("started")
    })
    .await;
    sd.send(Shutdown::Abort).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(15), h)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("runner_system_failure")
    );
    assert!(report.delivered);
    assert!(!String::from_utf8_lossy(&report.trace).contains("\nafter\n"));
}

#[tokio::test]
async fn forbidden_running_update_does_not_run_the_job() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    fake.set_override(|r, _| r.is_update().then(|| Resp::new(403)));
    let spec = JobSpec::new(21, &["touch /tmp/kiln-runner-should-not-exist-21"]);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    assert!(!report.delivered);
    assert!(fake.patches().is_empty());
    assert!(!std::path::Path::new("/tmp/kiln-runner-should-not-exist-21").exists());
}
