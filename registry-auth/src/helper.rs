//! Running docker credential helpers (`docker-credential-NAME get`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::credential::Credential;
use crate::environment::Environment;
use crate::secret::Secret;

/// Default time a helper may take before it is killed.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The message helpers print when they hold nothing for a server.
const NOT_FOUND: &str = "credentials not found";

/// Errors from running a credential helper. None of them carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The helper name could escape the PATH lookup.
    #[error("invalid credential helper name {0:?}")]
    InvalidName(String),
    /// No `docker-credential-NAME` executable on the PATH.
    #[error("credential helper docker-credential-{helper} not found on PATH")]
    NotFound {
        /// Helper name.
        helper: String,
    },
    /// The helper could not be started or waited for.
    #[error("credential helper docker-credential-{helper} could not run")]
    Io {
        /// Helper name.
        helper: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The helper did not finish in time and was killed.
    #[error(
        "credential helper docker-credential-{helper} timed out after {timeout:?} and was killed"
    )]
    Timeout {
        /// Helper name.
        helper: String,
        /// The limit it exceeded.
        timeout: Duration,
    },
    /// The helper failed for a reason other than "not found".
    #[error("credential helper docker-credential-{helper} failed ({status}): {message}")]
    Failed {
        /// Helper name.
        helper: String,
        /// Exit status as text.
        status: String,
        /// First line of its output, scrubbed and shortened.
        message: String,
    },
    /// The helper printed something that is not the expected JSON.
    #[error("credential helper docker-credential-{helper} printed invalid output (expected JSON with Username and Secret)")]
    InvalidOutput {
        /// Helper name.
        helper: String,
    },
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: Secret,
}

/// Finds `docker-credential-NAME` on a PATH-style list of directories.
pub fn find_helper(name: &str, path: &str) -> Option<PathBuf> {
    let file = format!("docker-credential-{name}");
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(&file))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Asks helper `name` for the credentials of `server_url`.
///
/// The helper runs with exactly the variables of `env` (so its PATH, HOME
/// and the like come from the same injectable source as everything else) and
/// is looked up on `env`'s PATH. `Ok(None)` means the helper has nothing
/// for this server, which is not an error.
pub async fn get_credentials(
    name: &str,
    server_url: &str,
    env: &Environment,
    timeout: Duration,
) -> Result<Option<Credential>, HelperError> {
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(HelperError::InvalidName(name.to_owned()));
    }
    let helper = name.to_owned();
    let exe = find_helper(name, env.get("PATH").unwrap_or_default()).ok_or_else(|| {
        HelperError::NotFound {
            helper: helper.clone(),
        }
    })?;
    let io = |source| HelperError::Io {
        helper: helper.clone(),
        source,
    };
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("get")
        .env_clear()
        .envs(env.iter())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = spawn_retrying(&mut cmd).await.map_err(io)?;
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            // A helper may exit without reading stdin; the broken pipe that
            // causes is not its failure, its exit status tells.
            let _ = stdin.write_all(server_url.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(out) => out.map_err(io)?,
        Err(_) => {
            // Dropping the future dropped the child with kill_on_drop, which
            // sends SIGKILL; tokio reaps it in the background.
            return Err(HelperError::Timeout { helper, timeout });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stdout.contains(NOT_FOUND) || stderr.contains(NOT_FOUND) {
            return Ok(None);
        }
        let first = stdout
            .lines()
            .chain(stderr.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        return Err(HelperError::Failed {
            helper,
            status: output.status.to_string(),
            message: failure_message(first),
        });
    }
    if stdout.trim().is_empty() || stdout.contains(NOT_FOUND) {
        return Ok(None);
    }
    let parsed: HelperOutput =
        serde_json::from_str(stdout.trim()).map_err(|_| HelperError::InvalidOutput {
            helper: helper.clone(),
        })?;
    if parsed.username.is_empty() && parsed.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::from_username_secret(
        &parsed.username,
        parsed.secret,
    )))
}

/// Spawns, retrying briefly on ETXTBSY: a helper binary that was just
/// written (installed by a setup step, or by a test) can be held open for
/// writing by a concurrently forked process until that process execs.
async fn spawn_retrying(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => return other,
        }
    }
}

/// A helper that fails after printing its JSON answer could be echoing a
/// secret, so structured output is never quoted.
fn failure_message(line: &str) -> String {
    if line.starts_with('{') || line.starts_with('[') {
        "(structured output withheld)".to_owned()
    } else {
        shorten(line, 200)
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}
