//! Credential helper tests with real helper executables (shell scripts).

mod common;

use std::time::{Duration, Instant};

use common::{env_with_path, write_helper};
use kiln_registry_auth::helper::get_credentials;
use kiln_registry_auth::{Credential, HelperError, Secret};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn returns_basic_credentials_and_reads_server_url_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // The script answers only for the expected server and only to `get`,
    // so a wrong protocol use shows up as a failure here.
    write_helper(
        dir.path(),
        "test",
        r#"[ "$1" = get ] || { echo "bad args $*" >&2; exit 3; }
url=$(cat)
[ "$url" = "registry.example.com" ] || { echo "credentials not found in native keychain"; exit 1; }
printf '{"ServerURL":"%s","Username":"alice","Secret":"s3cr3t-helper"}\n' "$url""#,
    );
    let env = env_with_path(dir.path());
    let c = get_credentials("test", "registry.example.com", &env, T)
        .await
        .unwrap();
    assert_eq!(c, Some(Credential::basic("alice", "s3cr3t-helper")));
    let none = get_credentials("test", "other.example.com", &env, T)
        .await
        .unwrap();
    assert_eq!(none, None);
}

#[tokio::test]
async fn token_username_means_identity_token() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "tok",
        r#"cat >/dev/null; echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh-abc"}'"#,
    );
    let c = get_credentials("tok", "x", &env_with_path(dir.path()), T)
        .await
        .unwrap();
    assert_eq!(
        c,
        Some(Credential::IdentityToken(Secret::new("refresh-abc")))
    );
}

#[tokio::test]
async fn not_found_on_stderr_or_with_exit_zero_is_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "nf-stderr",
        "cat >/dev/null; echo 'credentials not found in native keychain' >&2; exit 1",
    );
    write_helper(dir.path(), "empty", "cat >/dev/null; exit 0");
    write_helper(
        dir.path(),
        "blank",
        r#"cat >/dev/null; echo '{"Username":"","Secret":""}'"#,
    );
    let env = env_with_path(dir.path());
    for name in ["nf-stderr", "empty", "blank"] {
        assert_eq!(
            get_credentials(name, "h", &env, T).await.unwrap(),
            None,
            "{name}"
        );
    }
}

#[tokio::test]
async fn hanging_helper_is_killed_after_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    write_helper(
        dir.path(),
        "hang",
        &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
    );
    let started = Instant::now();
    let err = get_credentials(
        "hang",
        "h",
        &env_with_path(dir.path()),
        Duration::from_millis(700),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, HelperError::Timeout { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("docker-credential-hang"), "{msg}");
    assert!(msg.contains("timed out"), "{msg}");

    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Gone, or a zombie waiting for tokio's reaper: either way not sleeping.
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                break
            }
            Ok(_) if Instant::now() > deadline => panic!("helper {pid} still running"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn garbage_output_is_a_clear_error_without_the_output() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "garbage",
        "cat >/dev/null; echo 'Username=bob Secret=garbage-secret-123'",
    );
    let err = get_credentials("garbage", "h", &env_with_path(dir.path()), T)
        .await
        .unwrap_err();
    assert!(matches!(err, HelperError::InvalidOutput { .. }));
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("docker-credential-garbage"), "{shown}");
    assert!(!shown.contains("garbage-secret-123"), "{shown}");
}

#[tokio::test]
async fn failing_helper_reports_its_message_but_never_json_secrets() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "broken",
        "cat >/dev/null; echo 'error: keyring locked' >&2; exit 2",
    );
    write_helper(
        dir.path(),
        "leaky",
        r#"cat >/dev/null; echo '{"Username":"u","Secret":"leaky-secret-456"}'; exit 1"#,
    );
    let env = env_with_path(dir.path());
    let err = get_credentials("broken", "h", &env, T).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("docker-credential-broken"), "{msg}");
    assert!(msg.contains("keyring locked"), "{msg}");

    let err = get_credentials("leaky", "h", &env, T).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("docker-credential-leaky"), "{shown}");
    assert!(!shown.contains("leaky-secret-456"), "{shown}");
}

#[tokio::test]
async fn missing_or_invalid_helper_names() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_with_path(dir.path());
    let err = get_credentials("absent", "h", &env, T).await.unwrap_err();
    assert!(matches!(err, HelperError::NotFound { .. }));
    assert!(err.to_string().contains("docker-credential-absent"));
    // A non-executable file is not a helper.
    std::fs::write(dir.path().join("docker-credential-noexec"), "#!/bin/sh\n").unwrap();
    assert!(matches!(
        get_credentials("noexec", "h", &env, T).await,
        Err(HelperError::NotFound { .. })
    ));
    assert!(matches!(
        get_credentials("../x", "h", &env, T).await,
        Err(HelperError::InvalidName(_))
    ));
    // Without PATH there is nothing to run.
    assert!(matches!(
        get_credentials("absent", "h", &kiln_registry_auth::Environment::new(), T).await,
        Err(HelperError::NotFound { .. })
    ));
}

#[tokio::test]
async fn helper_runs_with_the_injected_environment_only() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "env",
        r#"cat >/dev/null; printf '{"Username":"%s","Secret":"%s"}' "$KILN_TEST_USER" "${CARGO_PKG_NAME:-unset}""#,
    );
    let env = env_with_path(dir.path()).with("KILN_TEST_USER", "from-env");
    let c = get_credentials("env", "h", &env, T).await.unwrap();
    // CARGO_PKG_NAME is set for this test process but not in the injected map.
    assert_eq!(c, Some(Credential::basic("from-env", "unset")));
}
