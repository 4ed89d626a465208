//! Test support: local git repositories for jobs to clone (runner's local executor tests and
//! the end-to-end build-image job).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs `git args` in `dir` as a fixed test identity; fails the test with git's stderr when
/// git fails; returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=kiln",
            "-c",
            "user.email=kiln@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Makes `dir` an empty repository on branch `main`.
pub fn init(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
}

/// Commits everything in `dir` (new, changed and removed files) as `message`; returns the
/// commit's sha.
pub fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}
