//! TEMPORARY stub of the pod spec (replaced by the real one).
#![allow(missing_docs)]

use crate::config::RunnerConfig;
use crate::gitlab::JobResponse;
use crate::job::plan::{JobLayout, JobPlan, StageName, VarKind};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;

pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kiln-runner";
pub const CLONE_CONTAINER: &str = "clone";
pub const BUILD_CONTAINER: &str = "build";

#[derive(Debug, thiserror::Error)]
#[error("spec")]
pub struct SpecError;

pub struct JobObjects {
    pub pod: Pod,
    pub secret: Secret,
    pub warnings: Vec<String>,
}

pub struct Certs;

pub fn certs_for(
    _: &RunnerConfig,
) -> Result<Option<Certs>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(None)
}

pub fn namespace(entry: &RunnerConfig) -> String {
    entry
        .kubernetes
        .as_ref()
        .and_then(|k| k.namespace.clone())
        .unwrap_or_else(|| "default".into())
}

pub fn runner_selector(entry: &RunnerConfig) -> String {
    format!(
        "{MANAGED_SELECTOR},runner.kiln.dev/token={}",
        entry.short_token()
    )
}

pub fn script_path(stage: StageName) -> String {
    format!("/kiln/scripts/{}.sh", stage.as_str())
}

pub fn job_layout(job: &JobResponse, _: &RunnerConfig) -> JobLayout {
    JobLayout {
        builds_dir: "/builds".into(),
        project_dir: format!("/builds/{}", job.job_info.project_name),
    }
}

pub fn owner_reference(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        ..Default::default()
    }
}

pub fn job_objects(
    job: &JobResponse,
    entry: &RunnerConfig,
    plan: &JobPlan,
    _: Option<&Certs>,
) -> Result<JobObjects, SpecError> {
    let name = format!("kiln-job-{}", job.id);
    let mut data = BTreeMap::new();
    for s in &plan.stages {
        data.insert(format!("{}.sh", s.name.as_str()), s.script.clone());
        for v in &s.env {
            data.insert(v.key.clone(), v.value.clone());
        }
    }
    let mut env = vec![];
    for v in &plan.vars {
        match v.kind {
            VarKind::Plain => env.push(serde_json::json!({"name": v.key, "value": v.value})),
            _ => {
                data.insert(v.key.clone(), v.value.clone());
                env.push(serde_json::json!({"name": v.key, "valueFrom": {"secretKeyRef": {"name": name, "key": v.key}}}))
            }
        }
    }
    let labels = serde_json::json!({"app.kubernetes.io/managed-by": "kiln-runner", "runner.kiln.dev/token": entry.short_token()});
    let image = entry
        .kubernetes
        .as_ref()
        .and_then(|k| k.image.clone())
        .unwrap_or_else(|| "host".into());
    let mut init = vec![];
    if plan.stage(StageName::GetSources).is_some() {
        init.push(serde_json::json!({"name": "clone", "image": image, "command": ["bash", "/kiln/scripts/get_sources.sh"],
            "env": [{"name": crate::job::plan::CLONE_URL_VAR, "valueFrom": {"secretKeyRef": {"name": name, "key": crate::job::plan::CLONE_URL_VAR}}}],
            "volumeMounts": [{"name": "scripts", "mountPath": "/kiln/scripts"}, {"name": "builds", "mountPath": "/builds"}]}));
    }
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace(entry), "labels": labels},
        "spec": {"restartPolicy": "Never", "initContainers": init,
            "containers": [{"name": "build", "image": image, "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"], "env": env,
              "volumeMounts": [{"name": "scripts", "mountPath": "/kiln/scripts"}, {"name": "builds", "mountPath": "/builds"}]}],
            "volumes": [{"name": "scripts", "secret": {"secretName": name}}, {"name": "builds", "emptyDir": {}}]}
    })).map_err(|_| SpecError)?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace(entry), "labels": labels},
        "stringData": data,
    }))
    .map_err(|_| SpecError)?;
    Ok(JobObjects {
        pod,
        secret,
        warnings: vec![],
    })
}
