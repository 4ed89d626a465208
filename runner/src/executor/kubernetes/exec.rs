//! Running one stage's script in the `build` container with `exec`, as gitlab-runner's
//! exec mode does. Stages run this way (not as the container's command) so that
//! after_script runs in the same container after a failed or canceled script, and the
//! job layer keeps the order of stages for every executor.

use super::PodError;
use crate::executor::process::reached;
use crate::executor::{Control, StageEnd};
use crate::job::plan::StageName;
use crate::trace::Trace;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use kube::Api;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// The exit code an exec's final status carries (`None`: not an exit status at all).
pub fn exit_code(status: &Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    if status.reason.as_deref() != Some("NonZeroExitCode") {
        return None;
    }
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_deref()?
        .parse()
        .ok()
}

async fn copy(mut from: impl AsyncRead + Unpin, trace: Trace) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        trace.write(&buf[..n]);
    }
}

/// Runs `script_path` in `container` of `pod` and streams its output into `trace`, until
/// it ends, `control` reaches `stop_at` or `limit` passes.
#[allow(clippy::too_many_arguments)]
pub async fn run_stage(
    api: &Api<Pod>,
    pod: &str,
    container: &str,
    stage: StageName,
    trace: &Trace,
    control: &mut watch::Receiver<Control>,
    stop_at: Control,
    limit: Option<Duration>,
    namespace: &str,
) -> Result<StageEnd, PodError> {
    let ap = AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .tty(false);
    let command = super::spec::exec_command(stage);
    let mut proc = api.exec(pod, command, &ap).await.map_err(PodError::api(
        "create",
        "pods/exec",
        namespace,
    ))?;
    let stdin = proc.stdin();
    let out = proc.stdout().map(|r| tokio::spawn(copy(r, trace.clone())));
    let err = proc.stderr().map(|r| tokio::spawn(copy(r, trace.clone())));
    let status = proc.take_status();
    let deadline = async {
        match limit {
            Some(l) => tokio::time::sleep(l).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        s = async { match status { Some(s) => s.await, None => None } } => Ok(s),
        _ = reached(control, stop_at) => Err(StageEnd::Stopped(*control.borrow())),
        _ = deadline => Err(StageEnd::TimedOut),
    };
    match end {
        Ok(status) => {
            // The output streams end with the command; let them finish writing.
            for t in [out, err].into_iter().flatten() {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
            drop(stdin);
            match status.as_ref().and_then(exit_code) {
                Some(code) => Ok(StageEnd::Exited(code)),
                None => Err(PodError::ExecLost {
                    stage: stage.as_str(),
                    pod: pod.to_owned(),
                    why: status
                        .and_then(|s| s.message)
                        .unwrap_or_else(|| "the connection closed without an exit status".into()),
                }),
            }
        }
        Err(stopped) => {
            // Closing stdin makes the stage shell kill the script's session; the pod is
            // deleted afterwards anyway, this only stops it sooner for after_script.
            drop(stdin);
            let grace = tokio::time::timeout(Duration::from_secs(3), async {
                if let Some(t) = out {
                    let _ = t.await;
                }
            });
            if matches!(stopped, StageEnd::Stopped(Control::Cancel)) {
                let _ = grace.await;
            }
            proc.abort();
            Ok(stopped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_codes_are_read_from_the_final_status() {
        let ok: Status = serde_json::from_value(json!({"status": "Success"})).unwrap();
        assert_eq!(exit_code(&ok), Some(0));
        let failed: Status = serde_json::from_value(json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }))
        .unwrap();
        assert_eq!(exit_code(&failed), Some(3));
        let other: Status = serde_json::from_value(json!({
            "status": "Failure", "reason": "InternalError", "message": "container not found"
        }))
        .unwrap();
        assert_eq!(exit_code(&other), None);
    }
}
