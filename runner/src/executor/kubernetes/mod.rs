//! The `kubernetes` executor: one pod per job. The pod and its Secret are a pure function
//! of the job and the entry ([`spec`]); this module drives their life: create, wait
//! (through one shared watch per namespace), run each stage with `exec` in the `build`
//! container, follow the clone's log, and delete both whatever happened. Pods carry the
//! runner's labels, so a runner that crashed finds and removes its leftovers at start.

mod error;
mod exec;
mod logs;
pub mod spec;
mod status;
mod watch;

pub use error::PodError;
pub use status::{blocker, container_state, not_scheduled, ContainerState};

use super::process::reached;
use super::{BoxFuture, Control, Executor, ExecutorError, Place, StageEnd};
use crate::config::{KilnMode, RunnerConfig};
use crate::gitlab::JobResponse;
use crate::job::plan::{JobLayout, JobPlan, Stage, StageName};
use crate::trace::Trace;
use error::is_not_found;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watch::{PodSeen, PodWatch};

/// The API calls the executor makes, as `(resource, verbs)`: the Role in
/// `examples/deploy` must grant exactly these (a test compares the two).
pub const API_RIGHTS: &[(&str, &[&str])] = &[
    ("pods", &["create", "delete", "get", "list", "watch"]),
    ("pods/exec", &["create", "get"]),
    ("pods/log", &["get"]),
    ("secrets", &["create", "delete", "get", "list", "patch"]),
    ("events", &["list"]),
];

/// How long a pod may take to start when the entry sets no `poll_timeout` (gitlab-runner's
/// default).
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(spec::DEFAULT_POLL_TIMEOUT);

/// Runs jobs in pods.
pub struct KubernetesExecutor {
    client: kube::Client,
    watches: Mutex<HashMap<String, Arc<PodWatch>>>,
}

impl std::fmt::Debug for KubernetesExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesExecutor").finish_non_exhaustive()
    }
}

impl KubernetesExecutor {
    /// An executor talking to the cluster through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            watches: Mutex::default(),
        }
    }

    /// An executor for the cluster the environment names: `KUBECONFIG` or
    /// `~/.kube/config`, else the pod's service account when running in a cluster.
    pub async fn from_environment() -> Result<Self, PodError> {
        let client = kube::Client::try_default()
            .await
            .map_err(PodError::Client)?;
        Ok(Self::new(client))
    }

    fn watch(&self, namespace: &str) -> Arc<PodWatch> {
        let mut map = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(namespace.to_owned())
            .or_insert_with(|| {
                Arc::new(PodWatch::start(
                    self.client.clone(),
                    namespace,
                    &format!("{}={}", spec::MANAGED_BY.0, spec::MANAGED_BY.1),
                ))
            })
            .clone()
    }

    /// Deletes the pods and Secrets a previous run of this entry left behind (found by
    /// the entry's labels); returns how many objects were deleted. Call before the entry
    /// takes jobs: every pod it finds then is an orphan.
    pub async fn remove_orphans(&self, entry: &RunnerConfig) -> Result<usize, PodError> {
        // Jobs that overrode the namespace are not swept: the entry's own is the one
        // the runner's Role is sure to cover.
        let namespace = entry
            .kubernetes
            .as_ref()
            .and_then(|k| k.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let lp = ListParams::default().labels(&spec::runner_selector(entry));
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let removed = delete_listed(&pods, &lp, "pods", &namespace).await?
            + delete_listed(&secrets, &lp, "secrets", &namespace).await?;
        Ok(removed)
    }
}

/// Deletes every `resource` object `lp` lists; returns how many it deleted.
async fn delete_listed<K>(
    api: &Api<K>,
    lp: &ListParams,
    resource: &'static str,
    namespace: &str,
) -> Result<usize, PodError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut removed = 0;
    let listed = api
        .list_metadata(lp)
        .await
        .map_err(PodError::api("list", resource, namespace))?;
    for o in listed {
        let name = o.metadata.name.unwrap_or_default();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => removed += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(PodError::api("delete", resource, namespace)(e)),
        }
    }
    Ok(removed)
}

/// A job's pod.
struct PodPlace {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    events: Api<Event>,
    namespace: String,
    name: String,
    secret: String,
    seen: tokio::sync::watch::Receiver<PodSeen>,
    watch: Arc<PodWatch>,
    poll_timeout: Duration,
    grace: Option<u32>,
}

impl PodPlace {
    /// A pod event's words for a pod that does not start: the scheduler's and kubelet's
    /// most recent warnings.
    async fn recent_events(&self) -> String {
        let lp = ListParams::default().fields(&format!("involvedObject.name={}", self.name));
        match self.events.list(&lp).await {
            Ok(list) => {
                let mut items: Vec<_> = list.items.into_iter().collect();
                items.sort_by_key(|e| e.metadata.resource_version.clone());
                items
                    .iter()
                    .rev()
                    .take(3)
                    .map(|e| {
                        format!(
                            "{} {}: {}",
                            e.type_.as_deref().unwrap_or(""),
                            e.reason.as_deref().unwrap_or(""),
                            e.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Err(e) => format!("(events unreadable: {})", crate::error_chain(&e)),
        }
    }

    /// Waits until `container` runs (or has ended), failing on anything that stops the
    /// pod, or `control` reaching `stop_at`.
    async fn wait_for(
        &mut self,
        container: &str,
        trace: &Trace,
        control: &mut tokio::sync::watch::Receiver<Control>,
        stop_at: Control,
    ) -> Result<Option<ContainerState>, PodError> {
        let started = Instant::now();
        let mut said_waiting = false;
        loop {
            let seen = self.seen.borrow_and_update().clone();
            match seen {
                PodSeen::Gone => {
                    return Err(PodError::PodGone {
                        pod: self.name.clone(),
                    })
                }
                PodSeen::NotYet => {}
                PodSeen::Present(pod) => {
                    if let Some(e) = blocker(&pod) {
                        return Err(e);
                    }
                    match container_state(&pod, container) {
                        ContainerState::Waiting => {
                            if !said_waiting {
                                trace.line(&format!(
                                    "Waiting for pod {}/{} to be running, status is {}",
                                    self.namespace,
                                    self.name,
                                    pod.status
                                        .as_ref()
                                        .and_then(|s| s.phase.as_deref())
                                        .unwrap_or("Pending")
                                ));
                                said_waiting = true;
                            }
                        }
                        s => return Ok(Some(s)),
                    }
                }
            }
            let left = self.poll_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                let pod = match &*self.seen.borrow() {
                    PodSeen::Present(p) => not_scheduled(p),
                    _ => None,
                };
                let events = self.recent_events().await;
                return Err(PodError::NotStarted {
                    pod: self.name.clone(),
                    waited: self.poll_timeout,
                    why: [pod.unwrap_or_default(), events]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            tokio::select! {
                r = self.seen.changed() => {
                    if r.is_err() {
                        return Err(PodError::PodGone { pod: self.name.clone() });
                    }
                }
                _ = tokio::time::sleep(left) => {}
                _ = reached(control, stop_at) => return Ok(None),
            }
        }
    }

    /// The clone init container's log, then its exit code.
    async fn get_sources(
        &mut self,
        trace: &Trace,
        control: &mut tokio::sync::watch::Receiver<Control>,
        stop_at: Control,
    ) -> Result<StageEnd, PodError> {
        if self
            .wait_for(spec::CLONE_CONTAINER, trace, control, stop_at)
            .await?
            .is_none()
        {
            return Ok(StageEnd::Stopped(*control.borrow()));
        }
        let pods = self.pods.clone();
        let follow = logs::follow(
            &pods,
            &self.name,
            spec::CLONE_CONTAINER,
            trace,
            &self.namespace,
            &self.seen,
        );
        tokio::select! {
            r = follow => r?,
            _ = reached(control, stop_at) => return Ok(StageEnd::Stopped(*control.borrow())),
        }
        // The log ends when the container does; its exit code comes with the watch.
        loop {
            if let PodSeen::Present(p) = &*self.seen.borrow_and_update() {
                if let ContainerState::Terminated { exit_code, .. } =
                    container_state(p, spec::CLONE_CONTAINER)
                {
                    return Ok(StageEnd::Exited(exit_code));
                }
                if let Some(e) = blocker(p) {
                    return Err(e);
                }
            }
            tokio::select! {
                r = self.seen.changed() => {
                    if r.is_err() {
                        return Err(PodError::PodGone { pod: self.name.clone() });
                    }
                }
                _ = reached(control, stop_at) => return Ok(StageEnd::Stopped(*control.borrow())),
            }
        }
    }

    async fn script(
        &mut self,
        stage: &Stage,
        trace: &Trace,
        control: &mut tokio::sync::watch::Receiver<Control>,
        stop_at: Control,
        limit: Option<Duration>,
    ) -> Result<StageEnd, PodError> {
        match self.wait_for(spec::BUILD_CONTAINER, trace, control, stop_at).await? {
            None => return Ok(StageEnd::Stopped(*control.borrow())),
            Some(ContainerState::Terminated { exit_code, reason }) => {
                return Err(PodError::PodFailed {
                    pod: self.name.clone(),
                    reason: "ContainerExited".into(),
                    message: format!(
                        "the build container ended ({reason}, exit code {exit_code}) before the {} stage",
                        stage.name.as_str()
                    ),
                })
            }
            Some(_) => {}
        }
        let exec = exec::run_stage(
            &self.pods,
            &self.name,
            spec::BUILD_CONTAINER,
            stage.name,
            trace,
            control,
            stop_at,
            limit,
            &self.namespace,
        );
        // The pod can fail under a running stage (OOM kill, eviction, its deadline, a
        // deletion): the watch says so at once, whatever the exec connection does.
        let seen = &mut self.seen;
        let pod = &self.name;
        let failed = async {
            loop {
                match &*seen.borrow_and_update() {
                    PodSeen::Gone => return PodError::PodGone { pod: pod.clone() },
                    PodSeen::Present(p) => {
                        if let Some(e) = blocker(p) {
                            return e;
                        }
                    }
                    PodSeen::NotYet => {}
                }
                if seen.changed().await.is_err() {
                    return PodError::PodGone { pod: pod.clone() };
                }
            }
        };
        let r = tokio::select! {
            r = exec => r,
            e = failed => Err(e),
        };
        // A stage that died with its container (OOM, eviction) says why, not only that
        // the command was lost.
        if !matches!(r, Ok(StageEnd::Exited(0)) | Ok(StageEnd::Stopped(_))) {
            if let Ok(Some(p)) = self.pods.get_opt(&self.name).await {
                if let Some(e) = blocker(&p) {
                    return Err(e);
                }
            }
        }
        r
    }
}

impl Place for PodPlace {
    fn run_stage<'a>(
        &'a mut self,
        stage: &'a Stage,
        trace: &'a Trace,
        control: &'a mut tokio::sync::watch::Receiver<Control>,
        stop_at: Control,
        limit: Option<Duration>,
    ) -> BoxFuture<'a, Result<StageEnd, ExecutorError>> {
        Box::pin(async move {
            let r = match stage.name {
                StageName::GetSources => self.get_sources(trace, control, stop_at).await,
                StageName::StepScript | StageName::AfterScript => {
                    self.script(stage, trace, control, stop_at, limit).await
                }
            };
            Ok(r?)
        })
    }

    fn cleanup(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut dp = DeleteParams::background();
            dp.grace_period_seconds = self.grace;
            for attempt in 0..3 {
                let pod = match self.pods.delete(&self.name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(e),
                };
                let secret = match self.secrets.delete(&self.secret, &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(e),
                };
                match (pod, secret) {
                    (Ok(()), Ok(())) => break,
                    (p, s) => {
                        let e = p.err().or(s.err()).map(|e| crate::error_chain(&e));
                        tracing::warn!(pod = %self.name, namespace = %self.namespace, attempt, error = ?e, "cannot delete the job's pod or Secret; retrying");
                        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                    }
                }
            }
            self.watch.forget(&self.name);
        })
    }
}

impl Executor for KubernetesExecutor {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn layout(&self, job: &JobResponse, entry: &RunnerConfig) -> JobLayout {
        spec::job_layout(job, entry)
    }

    fn prepare<'a>(
        &'a self,
        job: &'a JobResponse,
        entry: &'a RunnerConfig,
        plan: &'a JobPlan,
        trace: &'a Trace,
        control: &'a mut tokio::sync::watch::Receiver<Control>,
    ) -> BoxFuture<'a, Result<Box<dyn Place>, ExecutorError>> {
        Box::pin(self.create(job, entry, plan, trace, control))
    }
}

impl KubernetesExecutor {
    async fn create(
        &self,
        job: &JobResponse,
        entry: &RunnerConfig,
        plan: &JobPlan,
        trace: &Trace,
        control: &mut tokio::sync::watch::Receiver<Control>,
    ) -> Result<Box<dyn Place>, ExecutorError> {
        // Made per job, never stored: a leaked client key opens one job's daemon for a day.
        let certs = match entry.kubernetes_mode() {
            KilnMode::Dind => Some(
                kiln_dind_certs::generate(&kiln_dind_certs::CertOptions::default())
                    .map_err(PodError::Certs)?,
            ),
            KilnMode::Rootless => None,
        };
        let objects =
            spec::job_objects(job, entry, plan, certs.as_ref()).map_err(PodError::Spec)?;
        for w in &objects.warnings {
            trace.line(&format!("\x1b[0;33mWARNING: {w}\x1b[0;m"));
        }
        let namespace = objects
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = objects.pod.metadata.name.clone().unwrap_or_default();
        let secret_name = objects.secret.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
        let watch = self.watch(&namespace);
        let seen = watch.subscribe(&name);
        let poll_timeout = entry
            .kubernetes
            .as_ref()
            .and_then(|k| k.poll_timeout)
            .map_or(DEFAULT_POLL_TIMEOUT, Duration::from_secs);
        let grace = entry
            .kubernetes
            .as_ref()
            .and_then(|k| k.cleanup_grace_period_seconds)
            .and_then(|g| u32::try_from(g).ok());
        let place = PodPlace {
            pods: pods.clone(),
            secrets: secrets.clone(),
            events: Api::namespaced(self.client.clone(), &namespace),
            namespace: namespace.clone(),
            name: name.clone(),
            secret: secret_name.clone(),
            seen,
            watch,
            poll_timeout,
            grace,
        };
        trace.line(&format!("Creating pod {namespace}/{name}"));
        // The Secret first: the pod mounts it. Its owner is set once the pod exists, so
        // the cluster removes it with the pod even if the runner dies in between.
        let pp = PostParams::default();
        if let Err(e) = secrets.create(&pp, &objects.secret).await {
            Box::new(place).cleanup().await;
            return Err(PodError::api("create", "secrets", &namespace)(e).into());
        }
        let created = match pods.create(&pp, &objects.pod).await {
            Ok(p) => p,
            Err(e) => {
                Box::new(place).cleanup().await;
                return Err(PodError::api("create", "pods", &namespace)(e).into());
            }
        };
        let owner = serde_json::json!({"metadata": {"ownerReferences": [spec::secret_owner_reference(&created)]}});
        if let Err(e) = secrets
            .patch(&secret_name, &PatchParams::default(), &Patch::Merge(&owner))
            .await
        {
            // Not fatal: the runner deletes the Secret itself; the owner only covers a
            // runner that dies mid-job.
            tracing::warn!(secret = %secret_name, error = %crate::error_chain(&e), "cannot set the Secret's owner");
        }
        if *control.borrow() > Control::Run {
            let level = *control.borrow();
            Box::new(place).cleanup().await;
            return Err(ExecutorError::Stopped(level));
        }
        Ok(Box::new(place))
    }
}
