//! The `kiln-runner` binary: exit codes, error chains, register/verify/unregister,
//! `run` with JSON logs, health endpoint and SIGTERM.

use kiln_testkit::fake_gitlab as common;

use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kiln-runner");

#[test]
fn usage_error_exits_2() {
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_config_prints_chain_and_exits_2() {
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/kiln/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "kiln-runner: cannot access config file /nonexistent/kiln/config.toml: No such file"
        ),
        "{err}"
    );
}

fn run(args: Vec<String>) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(&args)
        .env_remove("REGISTRATION_TOKEN")
        .env_remove("CI_SERVER_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn register_verify_unregister_edit_the_config() {
    let fake = FakeGitlab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let url = fake.url.clone();
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let r = {
        let a = args(&[
            "register",
            "--config",
            &cfg_s,
            "--url",
            &url,
            "--registration-token",
            "legacy",
            "--name",
            "builder",
            "--tag-list",
            "kiln",
        ]);
        tokio::task::spawn_blocking(move || run(a)).await.unwrap()
    };
    assert_eq!(r.0, Some(0), "{r:?}");
    let c = kiln_runner::config::Config::load(&cfg).unwrap();
    assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
    assert_eq!(c.config.runners[0].token, "glrt-registered");
    assert_eq!(c.config.runners[0].name, "builder");
    assert!(dir.path().join(".runner_system_id").exists());

    let a = args(&["verify", "--config", &cfg_s]);
    let r = tokio::task::spawn_blocking(move || run(a)).await.unwrap();
    assert_eq!(r.0, Some(0), "{r:?}");
    assert!(r.1.contains("is valid"));

    let a = args(&["unregister", "--config", &cfg_s, "--name", "builder"]);
    let r = tokio::task::spawn_blocking(move || run(a)).await.unwrap();
    assert_eq!(r.0, Some(0), "{r:?}");
    let c = kiln_runner::config::Config::load(&cfg).unwrap();
    assert!(c.config.runners.is_empty());
    let paths: Vec<_> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "POST /api/v4/runners",
            "POST /api/v4/runners/verify",
            "DELETE /api/v4/runners"
        ]
    );

    // A runner GitLab no longer knows: verify fails with 1, and --delete removes it.
    let mut e = toml::Table::new();
    e.insert("name".into(), "gone".into());
    e.insert("url".into(), url.clone().into());
    e.insert("token".into(), "glrt-gone".into());
    kiln_runner::config::append_runner(&cfg, e).unwrap();
    fake.set_override(|r, _| (r.path == "/api/v4/runners/verify").then(|| Resp::new(403)));
    let a = args(&["verify", "--config", &cfg_s]);
    let r = tokio::task::spawn_blocking(move || run(a)).await.unwrap();
    assert_eq!(r.0, Some(1), "{r:?}");
    assert!(r.2.starts_with("kiln-runner: "));
    let a = args(&["verify", "--config", &cfg_s, "--delete"]);
    let r = tokio::task::spawn_blocking(move || run(a)).await.unwrap();
    assert_eq!(r.0, Some(0), "{r:?}");
    assert!(kiln_runner::config::Config::load(&cfg)
        .unwrap()
        .config
        .runners
        .is_empty());
}

#[tokio::test]
async fn run_logs_json_serves_health_and_sigterm_aborts_job() {
    let fake = FakeGitlab::start().await;
    fake.push_job(JobSpec::new(71, &["echo job-started", "sleep 60"]).json());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "concurrent = 1\ncheck_interval = 1\nlog_format = \"json\"\nlisten_address = \"127.0.0.1:0\"\nshutdown_timeout = 10\nunknown_setting = 1\n[[runners]]\nname = \"cli\"\nurl = \"{}\"\ntoken = \"glrt-cli-token\"\n",
            fake.url
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut addr = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline
        && (addr.is_none() || !fake.trace().contains("job-started"))
    {
        while let Ok(l) = rx.try_recv() {
            let v: serde_json::Value =
                serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON: {l}"));
            if v["fields"]["message"] == "metrics and health listening" {
                addr = v["fields"]["address"].as_str().map(str::to_owned);
            }
            lines.push(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = addr.expect("metrics address logged");
    assert!(
        lines
            .iter()
            .any(|v| v["fields"]["key"] == "unknown_setting"),
        "{lines:?}"
    );
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(fake.trace().contains("job-started"));

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let finals = fake.final_updates();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0]["failure_reason"], "runner_system_failure");
    assert!(fake.trace().contains("runner shutting down"));
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Zombies have an empty command line: only live processes match.
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(pid);
            }
        }
    }
    found
}

#[tokio::test]
async fn sigterm_past_shutdown_timeout_kills_the_jobs_processes_and_reports_it() {
    let fake = FakeGitlab::start().await;
    // A marker no other process has: this test's pid as the fraction of sleep's seconds.
    let marker = format!("sleep 6543.{}", std::process::id());
    let script = format!("trap '' TERM; {marker} & {marker}");
    fake.push_job(JobSpec::new(72, &[script.as_str()]).json());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "concurrent = 1\ncheck_interval = 1\nshutdown_timeout = 1\n[[runners]]\nname = \"cli\"\nurl = \"{}\"\ntoken = \"glrt-cli-token\"\n",
            fake.url
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("both sleeps running", Duration::from_secs(30), || {
        processes_with(&marker).len() == 2
    })
    .await;

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the runner exits")
    .unwrap()
    .unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{logs}");
    // SIGKILL needs a moment to take a process out of the table; without the kill they
    // would run for almost two hours.
    wait_until("no process of the job", Duration::from_secs(10), || {
        processes_with(&marker).is_empty()
    })
    .await;
    let finals = fake.final_updates();
    assert_eq!(finals.len(), 1, "{logs}");
    assert_eq!(finals[0]["state"], "failed");
    assert_eq!(finals[0]["failure_reason"], "runner_system_failure");
}
