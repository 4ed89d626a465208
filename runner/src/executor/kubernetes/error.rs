//! Why a job's pod could not do its work, worded for the job's trace.

use crate::gitlab::FailureReason;
use std::time::Duration;

/// Errors of the Kubernetes executor.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The API server refused or failed a call.
    #[error("{}", api_message(.verb, .resource, .namespace, .source))]
    Api {
        /// The verb (`create`, `delete`, …).
        verb: &'static str,
        /// The resource (`pods`, `pods/exec`, …).
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// No Kubernetes client could be configured (no kubeconfig, not in a cluster).
    #[error("cannot configure a Kubernetes client")]
    Client(#[source] kube::Error),
    /// The pod spec could not be made from the job and the configuration.
    #[error("cannot make the job's pod")]
    Spec(#[source] super::spec::SpecError),
    /// The per-job TLS certificates could not be made.
    #[error("cannot make the Docker daemon's certificates")]
    Certs(#[source] kiln_dind_certs::CertError),
    /// An image could not be pulled.
    #[error("image pull failed: {image} ({container}): {reason}: {message}")]
    ImagePull {
        /// The container.
        container: String,
        /// The image.
        image: String,
        /// `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, …
        reason: String,
        /// The kubelet's message.
        message: String,
    },
    /// The pod was not scheduled (or its containers did not start) in time.
    #[error("pod {pod} did not start within {waited:?}: {why}")]
    NotStarted {
        /// The pod.
        pod: String,
        /// How long it was waited for.
        waited: Duration,
        /// The pod's condition and recent events.
        why: String,
    },
    /// A container could not be created (a missing Secret key, a bad mount…).
    #[error("container {container} cannot start: {reason}: {message}")]
    ContainerConfig {
        /// The container.
        container: String,
        /// The kubelet's reason.
        reason: String,
        /// The kubelet's message.
        message: String,
    },
    /// A container was killed for using more memory than its limit.
    #[error("container {container} was OOMKilled (out of memory: raise memory_limit)")]
    OomKilled {
        /// The container.
        container: String,
    },
    /// The pod ended before the job did (evicted, deadline exceeded, a container died).
    #[error("pod {pod} failed: {reason}: {message}")]
    PodFailed {
        /// The pod.
        pod: String,
        /// `Evicted`, `DeadlineExceeded`, …
        reason: String,
        /// Kubernetes' message.
        message: String,
    },
    /// The pod was deleted by someone else while the job ran.
    #[error("pod {pod} was deleted while the job ran")]
    PodGone {
        /// The pod.
        pod: String,
    },
    /// A stage's command in the pod was lost without an exit status.
    #[error("lost the {stage} command in pod {pod}: {why}")]
    ExecLost {
        /// The stage.
        stage: &'static str,
        /// The pod.
        pod: String,
        /// What was seen.
        why: String,
    },
}

impl PodError {
    /// What GitLab is told the job failed of.
    pub fn failure_reason(&self) -> FailureReason {
        match self {
            Self::ImagePull { .. } => FailureReason::ImagePullFailure,
            _ => FailureReason::RunnerSystemFailure,
        }
    }

    /// An API error of `verb` on `resource` in `namespace`.
    pub fn api(
        verb: &'static str,
        resource: &'static str,
        namespace: &str,
    ) -> impl FnOnce(kube::Error) -> Self {
        let namespace = namespace.to_owned();
        move |source| Self::Api {
            verb,
            resource,
            namespace,
            source,
        }
    }
}

/// A 403 says which right the service account lacks, so an operator can fix the Role
/// without reading the API server's audit log.
fn api_message(verb: &str, resource: &str, namespace: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "the runner's service account may not {verb} {resource} in namespace {namespace} (add the verb to its Role)"
        ),
        kube::Error::Api(s) => {
            format!("{verb} {resource} in namespace {namespace}: {} ({})", s.reason, s.code)
        }
        _ => format!("{verb} {resource} in namespace {namespace}"),
    }
}

/// Whether `e` is the API server's 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
