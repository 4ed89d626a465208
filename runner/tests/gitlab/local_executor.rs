//! The local executor: git sources, file variables, kiln on PATH, clean-up.

use kiln_testkit::fake_gitlab as common;
use kiln_testkit::git as git_repo;

use base64::Engine;
use common::*;
use kiln_runner::gitlab::JobState;
use kiln_runner::job::run_job;
use serde_json::json;
use std::path::Path;

/// A repository with three commits on `main`; returns the commits' shas, oldest first.
fn make_repo(dir: &Path) -> Vec<String> {
    git_repo::init(dir);
    (1..=3)
        .map(|v| {
            std::fs::write(dir.join("file.txt"), format!("version-{v}\n")).unwrap();
            git_repo::commit_all(dir, &format!("v{v}"))
        })
        .collect()
}

fn with_git(spec: &JobSpec, git_info: serde_json::Value) -> kiln_runner::gitlab::JobResponse {
    let mut j = spec.json();
    j["git_info"] = git_info;
    serde_json::from_value(j).unwrap()
}

#[tokio::test]
async fn clones_file_repo_and_checks_out_exact_sha() {
    let fake = FakeGitlab::start().await;
    let repo = tempfile::tempdir().unwrap();
    let shas = make_repo(repo.path());
    let builds = tempfile::tempdir().unwrap();
    let mut spec = JobSpec::new(
        61,
        &[
            "git rev-parse HEAD",
            "cat file.txt",
            "git log --oneline | wc -l",
        ],
    );
    spec.variables.clear();
    let job = with_git(
        &spec,
        json!({
            "repo_url": format!("file://{}", repo.path().display()),
            "ref": "main", "sha": shas[1], "before_sha": shas[0], "ref_type": "branch",
            "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 2
        }),
    );
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Success, "{trace}");
    assert!(trace.contains("Fetching changes with git depth set to 2..."));
    assert!(trace.contains(&format!(
        "Checking out {} as detached HEAD (ref is main)",
        &shas[1][..8]
    )));
    assert!(trace.contains(&format!("\n{}\n", shas[1])), "{trace}");
    assert!(trace.contains("\nversion-2\n"));
    // Shallow (depth 2 from main's tip): the checked-out commit's parent was not fetched.
    assert!(
        trace.contains("git log --oneline | wc -l\x1b[0;m\n1\n"),
        "{trace}"
    );
    // The build directory is gone afterwards.
    let left: Vec<_> = walk(builds.path());
    assert!(
        left.iter().all(|p| p.is_dir()),
        "files left behind: {left:?}"
    );
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test]
async fn http_clone_sends_job_token_as_gitlab_ci_token_and_never_prints_it() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    // The fake plays a git HTTP server that wants credentials, then has no repo.
    fake.set_override(|r, _| {
        if r.path.ends_with("/info/refs") {
            return Some(match r.header("Authorization") {
                None => Resp::new(401).header("WWW-Authenticate", "Basic realm=\"GitLab\""),
                Some(_) => Resp::new(404),
            });
        }
        None
    });
    let mut spec = JobSpec::new(62, &["echo not-reached"]);
    spec.variables.clear();
    let job = with_git(
        &spec,
        json!({
            "repo_url": format!("{}/group/project.git", fake.url),
            "ref": "main", "sha": "0123456789abcdef0123456789abcdef01234567", "before_sha": "",
            "ref_type": "branch", "refspecs": [], "depth": 0
        }),
    );
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(
        report.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{trace}"
    );
    assert!(!trace.contains(&spec.token), "{trace}");
    assert!(!trace.contains("not-reached"));
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("gitlab-ci-token:{}", spec.token))
    );
    let auths: Vec<_> = fake
        .requests()
        .iter()
        .filter_map(|r| r.header("Authorization").map(str::to_owned))
        .collect();
    assert!(auths.contains(&expected), "{auths:?}");
}

#[tokio::test]
async fn file_variables_kiln_on_path_and_overrides() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let kiln = bin.path().join("kiln");
    std::fs::write(&kiln, "#!/bin/sh\necho \"fake kiln 9.9 $*\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kiln, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut e = entry(&fake.url, builds.path());
    e.kiln.bin_dir = Some(bin.path().to_owned());
    e.kiln.mode = kiln_runner::config::KilnMode::Dind;
    e.kiln.cache_dir = Some("/var/cache/kiln-test".into());
    e.kiln.allowed_overrides = vec!["KILN_CACHE_DIR".into()];
    e.environment = vec!["FROM_RUNNER=yes".into()];
    let spec = JobSpec::new(
        63,
        &[
            "cat \"$MY_CONFIG\"",
            "case \"$MY_CONFIG\" in /*) echo absolute-path;; esac",
            "kiln build --dry-run",
            "echo mode=$KILN_MODE cache=$KILN_CACHE_DIR runner=$FROM_RUNNER",
            "echo dir=$CI_PROJECT_DIR && test \"$(pwd)\" = \"$CI_PROJECT_DIR\"",
        ],
    )
    .var("MY_CONFIG", "file-content-123", false, true)
    .var("KILN_MODE", "rootless", false, false)
    .var("KILN_CACHE_DIR", "/tmp/job-cache", false, false);
    let (env, _sd) = job_env_with(&fake, e, fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Success, "{trace}");
    assert!(trace.contains("\nfile-content-123"), "{trace}");
    assert!(trace.contains("\nabsolute-path\n"));
    assert!(trace.contains("\nfake kiln 9.9 build --dry-run\n"));
    assert!(
        trace.contains("mode=dind cache=/tmp/job-cache runner=yes"),
        "{trace}"
    );
    assert!(trace.contains("KILN_MODE from the job ignored"));
    assert!(walk(builds.path()).iter().all(|p| p.is_dir()));
}

#[tokio::test]
async fn file_variables_are_private_to_the_jobs_user() {
    let fake = FakeGitlab::start().await;
    let builds = tempfile::tempdir().unwrap();
    let spec = JobSpec::new(
        64,
        &[
            "echo \"mode=$(stat -c %a \"$DEPLOY_KEY\")\"",
            "test -O \"$DEPLOY_KEY\" && echo owned-by-job-user",
        ],
    )
    .var("DEPLOY_KEY", "-----BEGIN KEY-----", true, true);
    let (env, _sd) = job_env(&fake, builds.path(), fast_timings());
    let report = run_job(env, job_response(&spec)).await;
    let trace = String::from_utf8_lossy(&report.trace).into_owned();
    assert_eq!(report.state, JobState::Success, "{trace}");
    assert!(trace.contains("\nmode=600\n"), "{trace}");
    assert!(trace.contains("\nowned-by-job-user\n"), "{trace}");
}
