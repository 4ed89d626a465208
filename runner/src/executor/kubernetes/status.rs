//! Reading a pod's status: is a container ready for the job, done, or stuck for a reason
//! the job's trace must name. Pure functions of the [`Pod`], so every kubelet state is
//! tested without a cluster.

use super::PodError;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Waiting reasons that mean an image will not come.
const PULL_FAILURES: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
];

/// Waiting reasons that mean a container cannot be created as specified.
const CONFIG_FAILURES: &[&str] = &[
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Where a container of the pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Not started yet (scheduling, pulling, waiting for an init container or a probe).
    Waiting,
    /// Running.
    Running,
    /// Ended with this exit code.
    Terminated {
        /// The exit code.
        exit_code: i32,
        /// The kubelet's reason (`Completed`, `Error`, `OOMKilled`).
        reason: String,
    },
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let s = pod.status.as_ref();
    let init = s
        .and_then(|s| s.init_container_statuses.as_deref())
        .unwrap_or(&[]);
    let main = s
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or(&[]);
    init.iter().chain(main.iter())
}

/// The state of container `name` in `pod`.
pub fn container_state(pod: &Pod, name: &str) -> ContainerState {
    let Some(st) = statuses(pod).find(|c| c.name == name) else {
        return ContainerState::Waiting;
    };
    let state = st.state.as_ref();
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return ContainerState::Terminated {
            exit_code: t.exit_code,
            reason: t.reason.clone().unwrap_or_default(),
        };
    }
    if state.and_then(|s| s.running.as_ref()).is_some() {
        return ContainerState::Running;
    }
    ContainerState::Waiting
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The reason the pod cannot go on, if it has one: an image that will not be pulled, a
/// container that cannot be created, an OOM kill, or the pod failing as a whole
/// (evicted, past its deadline).
pub fn blocker(pod: &Pod) -> Option<PodError> {
    for c in statuses(pod) {
        let state = c.state.as_ref();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let message = w.message.clone().unwrap_or_default();
            if PULL_FAILURES.contains(&reason.as_str()) {
                return Some(PodError::ImagePull {
                    container: c.name.clone(),
                    image: c.image.clone(),
                    reason,
                    message,
                });
            }
            if CONFIG_FAILURES.contains(&reason.as_str()) {
                return Some(PodError::ContainerConfig {
                    container: c.name.clone(),
                    reason,
                    message,
                });
            }
        }
        if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            if t.reason.as_deref() == Some("OOMKilled") {
                return Some(PodError::OomKilled {
                    container: c.name.clone(),
                });
            }
        }
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(PodError::PodFailed {
            pod: pod_name(pod),
            reason: status.reason.clone().unwrap_or_else(|| "Failed".into()),
            message: status
                .message
                .clone()
                .unwrap_or_else(|| failed_container(pod)),
        });
    }
    None
}

/// Which container ended the pod, for a failed pod with no message of its own.
fn failed_container(pod: &Pod) -> String {
    statuses(pod)
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                format!(
                    "container {} exited with code {} ({})",
                    c.name,
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("Error")
                )
            })
        })
        .unwrap_or_default()
}

/// Why the pod has not started, from its `PodScheduled` condition (the scheduler's
/// message says which nodes refused it and why).
pub fn not_scheduled(pod: &Pod) -> Option<String> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(format!(
        "{}: {}",
        c.reason.as_deref().unwrap_or("NotScheduled"),
        c.message.as_deref().unwrap_or("")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "build", "image": "x"}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_pull_back_off_names_the_image_and_is_an_image_pull_failure() {
        let p = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "build", "image": "reg/x:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"reg/x:1\""}}
        }]}));
        let e = blocker(&p).unwrap();
        assert_eq!(
            e.failure_reason(),
            crate::gitlab::FailureReason::ImagePullFailure
        );
        let text = e.to_string();
        assert!(
            text.contains("reg/x:1") && text.contains("ImagePullBackOff"),
            "{text}"
        );
        assert_eq!(container_state(&p, "build"), ContainerState::Waiting);
    }

    #[test]
    fn oom_evicted_deadline_and_config_errors_are_told_apart() {
        let oom = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "build", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]}));
        assert!(
            matches!(blocker(&oom), Some(PodError::OomKilled { container }) if container == "build")
        );
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage."}));
        let e = blocker(&evicted).unwrap().to_string();
        assert!(
            e.contains("Evicted") && e.contains("ephemeral-storage"),
            "{e}"
        );
        let deadline = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert!(blocker(&deadline)
            .unwrap()
            .to_string()
            .contains("DeadlineExceeded"));
        let config = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "build", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"s\" not found"}}
        }]}));
        assert!(matches!(
            blocker(&config),
            Some(PodError::ContainerConfig { .. })
        ));
        assert!(blocker(&pod(json!({"phase": "Running"}))).is_none());
    }

    #[test]
    fn states_and_the_scheduler_message_are_read() {
        let p = pod(json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."}],
            "initContainerStatuses": [{"name": "clone", "image": "h", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [{"name": "build", "image": "x", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]}));
        assert_eq!(
            container_state(&p, "clone"),
            ContainerState::Terminated {
                exit_code: 0,
                reason: "Completed".into()
            }
        );
        assert_eq!(container_state(&p, "build"), ContainerState::Running);
        assert_eq!(container_state(&p, "nope"), ContainerState::Waiting);
        assert_eq!(
            not_scheduled(&p).unwrap(),
            "Unschedulable: 0/3 nodes are available: 3 Insufficient memory."
        );
    }
}
