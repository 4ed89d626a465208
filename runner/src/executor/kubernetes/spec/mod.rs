//! The job's Kubernetes objects as a pure function of (job, entry, plan, certificates), so
//! anyone can read what kiln will create (`kiln-runner pod-spec`) and golden tests pin it.
//!
//! One pod per job. An init container `clone` runs the plan's get_sources script into an
//! emptyDir at the builds dir; `build` then idles in a shell ([`KEEPALIVE`]) and the executor
//! runs each later stage in it with `exec` ([`exec_command`]). Everything secret (the stage
//! scripts too) lives in one Secret named after the pod.

mod dind;
mod env;
mod labels;
mod names;
mod overrides;
mod render;
mod resources;
mod rootless;
mod secret;
mod services;
mod volumes;

pub use dind::{CERT_DIR, CLIENT_CERT_DIR, DOCKER_HOST};
pub use labels::{runner_selector, MANAGED_BY, RUNNER_LABEL};
pub use names::{is_dns_label, is_label_value, label_value, pod_name};
pub use render::{placeholder_certs, redact_secret, to_yaml, CERT_PLACEHOLDER};
pub use rootless::{BUILD_UID, CACHE_DIR, DOCKER_CONFIG_DIR, HOME_DIR};
pub use secret::{is_managed, script_key, secret_owner_reference};

use crate::config::kubernetes::{self as kcfg, KubernetesConfig, ResourceTarget};
use crate::config::{KilnMode, RunnerConfig};
use crate::gitlab::JobResponse;
use crate::job::plan::{JobLayout, JobPlan, StageName};
use env::{env_for, set, FileItem};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, HostAlias, LocalObjectReference, Pod, PodSecurityContext,
    PodSpec, Secret, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln_dind_certs::JobCerts;

/// The container the job's scripts run in.
pub const BUILD_CONTAINER: &str = "build";
/// The init container running the get_sources stage.
pub const CLONE_CONTAINER: &str = "clone";
/// The Docker daemon of a dind pod (an init container when it is a native sidecar).
pub const DAEMON_CONTAINER: &str = "docker";
/// Where the stage scripts are mounted: `<dir>/<stage>.sh` (see [`script_key`]).
pub const SCRIPTS_DIR: &str = "/kiln/scripts";
/// Where file variables are mounted; the variable holds `<dir>/<NAME>`.
pub const FILES_DIR: &str = "/kiln/files";
/// What `build` runs: a shell idling until the pod is deleted, so stages can be exec'd.
pub const KEEPALIVE: [&str; 3] = [
    "sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];
/// Seconds beyond the job's timeout before the cluster kills the pod itself
/// (`activeDeadlineSeconds`): room for pulls, after_script and cleanup, a safety net for a
/// runner that died.
pub const DEADLINE_MARGIN: i64 = 900;
/// `poll_timeout` when unset, as gitlab-runner.
pub const DEFAULT_POLL_TIMEOUT: u64 = 180;
/// `poll_interval` when unset, as gitlab-runner.
pub const DEFAULT_POLL_INTERVAL: u64 = 3;
/// The job timeout when GitLab sends none.
const DEFAULT_JOB_TIMEOUT: i64 = 3600;

/// The objects one job needs.
#[derive(Debug, Clone)]
pub struct JobObjects {
    /// The pod.
    pub pod: Pod,
    /// Its Secret (same name); created first, owner reference patched in after the pod.
    pub secret: Secret,
    /// Settings refused or ignored, for the job's trace.
    pub warnings: Vec<String>,
}

/// Why no pod can be made for a job.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// dind mode without `privileged = true`.
    #[error(
        "mode = \"dind\" needs privileged = true in [runners.kubernetes] for the Docker daemon"
    )]
    NotPrivileged,
    /// dind mode without certificates.
    #[error("mode = \"dind\" needs the job's TLS certificates")]
    MissingCerts,
    /// A name or label the API server would refuse.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        /// What it is.
        what: &'static str,
        /// Its value.
        value: String,
        /// The rule it breaks.
        why: &'static str,
    },
}

/// Where `stage`'s script is in the containers that run it.
pub fn script_path(stage: StageName) -> String {
    format!("{SCRIPTS_DIR}/{}", script_key(stage))
}

/// The command a container runs `stage` with (the `clone` init container): the script
/// from the Secret, under bash where the image has it (the scripts are bash), else sh.
pub fn stage_command(stage: StageName) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "if command -v bash >/dev/null 2>&1; then exec bash \"$0\"; fi; exec sh \"$0\"".into(),
        script_path(stage),
    ]
}

/// The shell an exec'd stage runs under: its script (`$1`) in its own session, under
/// bash if the image has it, killed with its session when stdin closes. The runner holds
/// stdin open for the stage's life, so closing it is the cancel signal, and a runner that
/// dies takes its stages with it rather than leaving them running. (A container's own
/// command has no stdin, which is why `clone` uses [`stage_command`].)
pub const EXEC_SHELL: &str = r#"exec 3<&0
if command -v bash >/dev/null 2>&1; then run=bash; else run=sh; fi
if command -v setsid >/dev/null 2>&1; then setsid "$run" "$1" </dev/null 3<&- & else "$run" "$1" </dev/null 3<&- & fi
pid=$!
( cat <&3 >/dev/null 2>&1; kill -TERM -"$pid" "$pid" 2>/dev/null; sleep 2; kill -KILL -"$pid" "$pid" 2>/dev/null ) >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$pid"; rc=$?
kill "$watcher" 2>/dev/null
exit $rc"#;

/// The command the executor execs in `build` for `stage` (see [`EXEC_SHELL`]).
pub fn exec_command(stage: StageName) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        EXEC_SHELL.into(),
        "kiln-stage".into(),
        script_path(stage),
    ]
}

/// The job's directories in the pod: `/builds/<project namespace>/<project>` as
/// gitlab-runner, from `CI_PROJECT_PATH` (else `project_name`).
pub fn job_layout(job: &JobResponse, _entry: &RunnerConfig) -> JobLayout {
    let path = job
        .variable("CI_PROJECT_PATH")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let name = &job.job_info.project_name;
            if name.is_empty() {
                format!("project-{}", job.job_info.project_id)
            } else {
                name.clone()
            }
        });
    // A path from the payload must not climb out of /builds.
    let clean: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect();
    JobLayout {
        builds_dir: "/builds".into(),
        project_dir: format!("/builds/{}", clean.join("/")),
    }
}

/// What the mode modules fill in.
pub(super) struct Parts {
    build: Container,
    build_mounts: Vec<VolumeMount>,
    env: Vec<EnvVar>,
    init_after_clone: Vec<Container>,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
    localhost_aliases: Vec<String>,
    fs_group: Option<i64>,
    run_as: Option<(i64, i64)>,
    host_users: Option<bool>,
    pull_policy: Option<String>,
    native: bool,
    warnings: Vec<String>,
}

/// The pod and Secret for `job` on `entry` running `plan`. `certs` are the job's Docker TLS
/// certificates (dind mode only; made outside so this stays pure).
pub fn job_objects(
    job: &JobResponse,
    entry: &RunnerConfig,
    plan: &JobPlan,
    certs: Option<&JobCerts>,
) -> Result<JobObjects, SpecError> {
    let default_k = KubernetesConfig::default();
    let k = entry.kubernetes.as_ref().unwrap_or(&default_k);
    let mode = entry.kubernetes_mode();
    let mut warnings = Vec::new();
    let eff = overrides::effective(job, k, &labels::PROTECTED, &mut warnings);
    let name = pod_name(job, entry);
    check_dns("namespace", &eff.namespace)?;

    let mut labels = labels::labels(job, entry, &eff.labels);
    labels.retain(|key, v| {
        let ok = is_label_key(key) && is_label_value(v);
        if !ok {
            warnings.push(format!("pod label {key}={v:?} dropped: not a valid label"));
        }
        ok
    });
    let annotations = labels::annotations(job, &eff.annotations);

    let pull_policy = pull_policy(job, k, &mut warnings);
    let mut data = secret::SecretData::default();
    let mut files: Vec<FileItem> = Vec::new();
    let env = env_for(&plan.vars, &name, &mut data, &mut files);
    let mut parts = Parts {
        build: Container {
            name: BUILD_CONTAINER.into(),
            ..Default::default()
        },
        build_mounts: Vec::new(),
        env,
        init_after_clone: Vec::new(),
        containers: Vec::new(),
        volumes: Vec::new(),
        localhost_aliases: Vec::new(),
        fs_group: k.pod_security_context.fs_group,
        run_as: None,
        host_users: None,
        pull_policy: pull_policy.clone(),
        native: k.native_sidecars.unwrap_or(true),
        warnings: Vec::new(),
    };
    match mode {
        KilnMode::Dind => dind::shape(job, k, &eff, certs, &name, &mut data, &mut parts)?,
        KilnMode::Rootless => rootless::shape(job, k, &plan.vars, &name, &mut data, &mut parts),
    }
    warnings.append(&mut parts.warnings);

    // Other services run unprivileged beside the job, in both modes.
    let daemon = match mode {
        KilnMode::Dind => dind::daemon_service(job).map(|(i, _)| i),
        KilnMode::Rootless => None,
    };
    for (i, s) in job.services.iter().enumerate() {
        if Some(i) == daemon {
            continue;
        }
        if mode == KilnMode::Rootless && s.name.contains("dind") {
            warnings.push(format!(
                "service {:?} ignored: a rootless pod runs no Docker daemon",
                s.name
            ));
            continue;
        }
        let c = services::service_container(
            s,
            services::service_name(i),
            parts.native,
            &eff,
            pull_policy.clone(),
        );
        for a in s.aliases() {
            if !parts.localhost_aliases.contains(&a) {
                parts.localhost_aliases.push(a);
            }
        }
        if parts.native {
            parts.init_after_clone.push(c);
        } else {
            parts.containers.push(c);
        }
    }

    // Stage scripts, after the mode had its say (a readiness wait for a plain daemon).
    let mut script_items = Vec::new();
    for stage in &plan.stages {
        let mut script = stage.script.clone();
        if mode == KilnMode::Dind && !parts.native && stage.name == StageName::StepScript {
            let timeout = k.poll_timeout.unwrap_or(DEFAULT_POLL_TIMEOUT);
            script = format!("{}{script}", dind::wait_prefix(timeout));
        }
        let key = data.put("", &script_key(stage.name), script.as_bytes());
        script_items.push((key, script_key(stage.name), 0o444));
    }
    let file_mode = if parts.fs_group.is_some() {
        0o440
    } else {
        0o400
    };
    let file_items: Vec<(String, String, i32)> = files
        .iter()
        .map(|f| (f.key.clone(), f.file.clone(), file_mode))
        .collect();

    let mut volumes = vec![volumes::empty_dir("kiln-builds")];
    let mut common_mounts = vec![volumes::mount(
        "kiln-builds",
        &plan.layout.builds_dir,
        false,
    )];
    if !script_items.is_empty() {
        volumes.push(volumes::secret_items("kiln-scripts", &name, &script_items));
        common_mounts.push(volumes::mount("kiln-scripts", SCRIPTS_DIR, true));
    }
    if !file_items.is_empty() {
        volumes.push(volumes::secret_items("kiln-files", &name, &file_items));
        common_mounts.push(volumes::mount("kiln-files", FILES_DIR, true));
    }
    volumes.append(&mut parts.volumes);
    let (mut cfg_volumes, cfg_mounts) = volumes::configured(&k.volumes);
    volumes.append(&mut cfg_volumes);

    let mut init = Vec::new();
    if let Some(stage) = plan.stage(StageName::GetSources) {
        let mut clone_env = parts.env.clone();
        for v in &stage.env {
            // The clone URL carries the job token: a Secret reference, never a value.
            let e = match v.kind {
                crate::job::plan::VarKind::Plain => env::plain(&v.key, &v.value),
                _ => env::from_secret(&v.key, &name, &data.put_var(v)),
            };
            set(&mut clone_env, e);
        }
        init.push(clone_container(
            k,
            &eff,
            mode,
            parts.run_as,
            clone_env,
            common_mounts.clone(),
            pull_policy.clone(),
        ));
    }
    init.append(&mut parts.init_after_clone);

    let mut build = parts.build;
    build.command = Some(KEEPALIVE.map(str::to_owned).to_vec());
    build.env = Some(parts.env);
    build.working_dir = Some(plan.layout.project_dir.clone());
    build.image_pull_policy = pull_policy.clone();
    build.resources = resources::requirements(&eff, ResourceTarget::Build);
    let mut mounts = common_mounts;
    mounts.extend(parts.build_mounts);
    mounts.extend(cfg_mounts);
    build.volume_mounts = Some(mounts);
    let mut containers = vec![build];
    containers.append(&mut parts.containers);

    let mut host_aliases = Vec::new();
    if !parts.localhost_aliases.is_empty() {
        host_aliases.push(HostAlias {
            ip: "127.0.0.1".into(),
            hostnames: Some(parts.localhost_aliases),
        });
    }
    host_aliases.extend(k.host_aliases.iter().map(|h| HostAlias {
        ip: h.ip.clone(),
        hostnames: Some(h.hostnames.clone()),
    }));

    let psc = &k.pod_security_context;
    let security = PodSecurityContext {
        run_as_user: psc.run_as_user,
        run_as_group: psc.run_as_group,
        run_as_non_root: psc.run_as_non_root,
        fs_group: parts.fs_group,
        supplemental_groups: (!psc.supplemental_groups.is_empty())
            .then(|| psc.supplemental_groups.clone()),
        ..Default::default()
    };
    let timeout = match i64::try_from(job.runner_info.timeout) {
        Ok(0) | Err(_) => DEFAULT_JOB_TIMEOUT,
        Ok(t) => t,
    };

    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(eff.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(timeout + DEADLINE_MARGIN),
            termination_grace_period_seconds: k.cleanup_grace_period_seconds,
            automount_service_account_token: Some(
                k.automount_service_account_token.unwrap_or(false),
            ),
            // The namespace's Services would otherwise appear as variables in the job.
            enable_service_links: Some(false),
            service_account_name: eff.service_account.clone(),
            node_selector: (!k.node_selector.is_empty()).then(|| k.node_selector.clone()),
            tolerations: tolerations(k),
            affinity: k.affinity.clone(),
            image_pull_secrets: (!k.image_pull_secrets.is_empty()).then(|| {
                k.image_pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            dns_policy: k
                .dns_policy
                .as_deref()
                .and_then(kcfg::dns_policy)
                .map(str::to_owned),
            host_aliases: (!host_aliases.is_empty()).then_some(host_aliases),
            host_users: parts.host_users,
            security_context: (security != PodSecurityContext::default()).then_some(security),
            init_containers: (!init.is_empty()).then_some(init),
            containers,
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    };
    let secret = secret::secret(&name, &eff.namespace, &labels, data);
    Ok(JobObjects {
        pod,
        secret,
        warnings,
    })
}

fn clone_container(
    k: &KubernetesConfig,
    eff: &overrides::Effective,
    mode: KilnMode,
    run_as: Option<(i64, i64)>,
    env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    pull_policy: Option<String>,
) -> Container {
    // dind: as root, like gitlab-runner's helper, so the checkout belongs to the user the
    // job's image most likely runs as (git refuses repositories of other owners).
    let (uid, gid) = match mode {
        KilnMode::Dind => (0, 0),
        KilnMode::Rootless => run_as.unwrap_or((BUILD_UID, BUILD_UID)),
    };
    Container {
        name: CLONE_CONTAINER.into(),
        image: Some(
            k.helper_image
                .clone()
                .unwrap_or_else(|| kcfg::DEFAULT_HELPER_IMAGE.into()),
        ),
        command: Some(stage_command(StageName::GetSources)),
        env: Some(env),
        image_pull_policy: pull_policy,
        resources: resources::requirements(eff, ResourceTarget::Helper),
        security_context: Some(SecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(gid),
            run_as_non_root: Some(uid != 0),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// The entry's first pull policy, or the job's when the entry allows it (gitlab-runner:
/// a job's policies must be among the entry's; any when the entry names none).
fn pull_policy(job: &JobResponse, k: &KubernetesConfig, w: &mut Vec<String>) -> Option<String> {
    let entry = k.pull_policy.first().and_then(|p| kcfg::pull_policy(p));
    let wanted = job.image.pull_policy.first();
    match wanted {
        Some(p) if k.pull_policy.is_empty() || k.pull_policy.contains(p) => {
            kcfg::pull_policy(p).map(str::to_owned).or_else(|| {
                w.push(format!("image:pull_policy {p:?} ignored: unknown policy"));
                entry.map(str::to_owned)
            })
        }
        Some(p) => {
            w.push(format!(
                "image:pull_policy {p:?} refused: not in the runner's pull_policy {:?}",
                k.pull_policy
            ));
            entry.map(str::to_owned)
        }
        None => entry.map(str::to_owned),
    }
}

/// gitlab-runner's map form: `"key=value" = "Effect"` (Equal), `"key" = "Effect"` (Exists);
/// an empty effect tolerates them all.
fn tolerations(k: &KubernetesConfig) -> Option<Vec<Toleration>> {
    let t: Vec<Toleration> = k
        .node_tolerations
        .iter()
        .map(|(key, effect)| {
            let effect = (!effect.is_empty()).then(|| effect.clone());
            match key.split_once('=') {
                Some((k, v)) => Toleration {
                    key: Some(k.to_owned()),
                    operator: Some("Equal".into()),
                    value: Some(v.to_owned()),
                    effect,
                    ..Default::default()
                },
                None => Toleration {
                    key: Some(key.clone()),
                    operator: Some("Exists".into()),
                    effect,
                    ..Default::default()
                },
            }
        })
        .collect();
    (!t.is_empty()).then_some(t)
}

fn check_dns(what: &'static str, value: &str) -> Result<(), SpecError> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(SpecError::Invalid {
            what,
            value: value.to_owned(),
            why: "a DNS-1123 label: at most 63 of [a-z0-9-], alphanumeric at both ends",
        })
    }
}

/// Whether `key` is a valid label key: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 of `[A-Za-z0-9._-]` with alphanumerics at both ends.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}
