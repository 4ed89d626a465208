//! Running iproute2's `ip`, which the fake kubelet needs to wire pods to the host.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Where distributions put `ip`; the fake never relies on `PATH`, as the rest of the kubelet.
const PLACES: [&str; 4] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

/// The `ip` binary, or the message that fails pod creation without it.
pub(crate) fn binary() -> Result<&'static str, String> {
    PLACES
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| {
            format!(
                "pod networking needs iproute2's `ip`, found in none of {}",
                PLACES.join(", ")
            )
        })
}

/// Whether an `ip` failure says the object (link, address, route) already exists.
pub(crate) fn exists(err: &str) -> bool {
    err.contains("File exists")
}

/// Runs `ip ARGS` in the host's network namespace, or (`netns_of` a pid) in that process's.
pub(crate) async fn run(netns_of: Option<u32>, args: &[&str]) -> Result<(), String> {
    run_with_input(netns_of, args, None).await
}

/// Runs `ip -batch -` with these commands, one a line; the first failure stops it.
pub(crate) async fn batch(netns_of: Option<u32>, commands: &[String]) -> Result<(), String> {
    let input = commands.join("\n") + "\n";
    run_with_input(netns_of, &["-batch", "-"], Some(input)).await
}

async fn run_with_input(
    netns_of: Option<u32>,
    args: &[&str],
    input: Option<String>,
) -> Result<(), String> {
    let ip = binary()?;
    let mut cmd = match netns_of {
        Some(pid) => {
            let mut c = Command::new("/usr/bin/nsenter");
            c.args(["-t", &pid.to_string(), "-n", ip]);
            c
        }
        None => Command::new(ip),
    };
    let mut child = cmd
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{ip}: {e}"))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("{ip}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{ip}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// As `run` in the host's namespace, blocking: for `Drop`, which cannot await.
pub(crate) fn run_blocking(args: &[&str]) -> Result<(), String> {
    let ip = binary()?;
    let out = std::process::Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{ip}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
