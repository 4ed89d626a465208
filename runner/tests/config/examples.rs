//! `examples/deploy` and `examples/gitlab-ci` against the runner's own code, so an example
//! that no longer matches what kiln-runner reads or calls fails here:
//! - each kustomization renders (`kubectl kustomize`), and every object decodes into its
//!   k8s-openapi type with no field the API would not know;
//! - the Role grants exactly the executor's `API_RIGHTS`, and nothing is cluster-wide;
//! - the ConfigMap's `config.toml` loads with the runner's loader with no unknown key, and
//!   agrees with the manifests (namespace, ports, grace period, cache claim, token names);
//! - the Deployment's init container fills the tokens in as the runner then reads them;
//! - the `.gitlab-ci.yml` examples are YAML whose jobs use only tags of one example entry.
//!
//! The renders need `kubectl` (with its built-in kustomize); without it those tests say so
//! and pass.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kiln_runner::config::{Config, ExecutorKind, KilnMode};
use kiln_runner::executor::kubernetes::API_RIGHTS;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Each kustomization, the modes its config.toml holds, and the kinds it must render.
const RENDERINGS: &[(&str, &[KilnMode], &[&str])] = &[
    (
        "",
        &[KilnMode::Rootless, KilnMode::Dind],
        &["PersistentVolumeClaim", "CronJob"],
    ),
    (
        "overlays/rootless",
        &[KilnMode::Rootless],
        &["PersistentVolumeClaim", "CronJob"],
    ),
    ("overlays/dind", &[KilnMode::Dind], &[]),
    (
        "overlays/autoscaled",
        &[KilnMode::Rootless],
        &[
            "PersistentVolumeClaim",
            "CronJob",
            "HorizontalPodAutoscaler",
        ],
    ),
];

/// Kinds every rendering holds exactly once.
const ALWAYS: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Deployment",
];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn deploy_dir(rel: &str) -> PathBuf {
    let d = examples().join("deploy");
    if rel.is_empty() {
        d
    } else {
        d.join(rel)
    }
}

/// The objects `kubectl kustomize` renders for `rel`, or `None` without kubectl.
fn render(rel: &str) -> Option<Vec<Value>> {
    let dir = deploy_dir(rel);
    let out = match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The machines CI runs on have kubectl: there it must not pass by skipping.
            assert!(
                std::env::var_os("KILN_REQUIRE_REGISTRY").is_none(),
                "kubectl is not installed, and KILN_REQUIRE_REGISTRY demands the examples render"
            );
            eprintln!("skipped: kubectl is not installed, so the kustomizations cannot render");
            return None;
        }
        Err(e) => panic!("running kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize output is UTF-8");
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("kustomize output is YAML"))
        .filter(|v| !v.is_null())
        .collect();
    Some(docs)
}

/// Every rendering, or `None` without kubectl.
fn renderings() -> Option<Vec<(&'static str, Vec<Value>)>> {
    RENDERINGS
        .iter()
        .map(|(rel, _, _)| render(rel).map(|docs| (*rel, docs)))
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

/// The one object of `kind` in `docs`, decoded.
fn one<T: DeserializeOwned>(docs: &[Value], k: &str) -> T {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == k).collect();
    assert_eq!(found.len(), 1, "expected one {k}, found {}", found.len());
    serde_json::from_value(found[0].clone()).unwrap()
}

/// Decodes `raw` as `T` and refuses fields `T` does not have.
fn strict<T: DeserializeOwned + Serialize>(raw: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    // The fake cluster's strict decoding: what a real API server refuses.
    let unknown = kiln_fake_cluster::unknown_fields(raw, &back);
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("unknown fields {unknown:?}"))
    }
}

fn check_typed(v: &Value) -> Result<(), String> {
    match kind(v) {
        "Namespace" => strict::<Namespace>(v),
        "ServiceAccount" => strict::<ServiceAccount>(v),
        "Role" => strict::<Role>(v),
        "RoleBinding" => strict::<RoleBinding>(v),
        "ConfigMap" => strict::<ConfigMap>(v),
        "Secret" => strict::<Secret>(v),
        "Deployment" => strict::<Deployment>(v),
        "PersistentVolumeClaim" => strict::<PersistentVolumeClaim>(v),
        "CronJob" => strict::<CronJob>(v),
        "HorizontalPodAutoscaler" => strict::<HorizontalPodAutoscaler>(v),
        other => Err(format!(
            "kind {other:?} is not one the examples should hold"
        )),
    }
}

#[test]
fn kustomizations_render_strict_api_objects() {
    let Some(all) = renderings() else { return };
    for ((rel, docs), (_, _, extra)) in all.iter().zip(RENDERINGS) {
        for d in docs {
            if let Err(e) = check_typed(d) {
                panic!("{rel:?}: {} {}: {e}", kind(d), name(d));
            }
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for d in docs {
            *kinds.entry(kind(d)).or_default() += 1;
        }
        for k in ALWAYS {
            assert_eq!(kinds.get(k), Some(&1), "{rel:?}: one {k}: {kinds:?}");
        }
        let expected: BTreeSet<&str> = ALWAYS.iter().chain(extra.iter()).copied().collect();
        let got: BTreeSet<&str> = kinds.keys().copied().collect();
        assert_eq!(got, expected, "{rel:?}: kinds rendered");
    }
}

#[test]
fn role_grants_exactly_the_executors_api_calls() {
    let Some(all) = renderings() else { return };
    let want: BTreeMap<String, BTreeSet<String>> = API_RIGHTS
        .iter()
        .map(|(r, verbs)| (r.to_string(), verbs.iter().map(|v| v.to_string()).collect()))
        .collect();
    for (rel, docs) in &all {
        let role: Role = one(docs, "Role");
        let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for rule in role.rules.unwrap_or_default() {
            assert_eq!(
                rule.api_groups.as_deref(),
                Some(&[String::new()][..]),
                "{rel:?}: the executor only calls the core API group"
            );
            assert!(
                rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
                "{rel:?}: pods and secrets are per job; no names to pin"
            );
            for r in rule.resources.unwrap_or_default() {
                got.entry(r).or_default().extend(rule.verbs.iter().cloned());
            }
        }
        assert_eq!(got, want, "{rel:?}: Role rules against API_RIGHTS");

        let binding: RoleBinding = one(docs, "RoleBinding");
        let account: ServiceAccount = one(docs, "ServiceAccount");
        let deployment: Deployment = one(docs, "Deployment");
        assert_eq!(binding.role_ref.kind, "Role");
        assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
        let subjects = binding.subjects.unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{rel:?}: one subject");
        assert_eq!(
            (subjects[0].kind.as_str(), Some(&subjects[0].name)),
            ("ServiceAccount", account.metadata.name.as_ref())
        );
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name, account.metadata.name);
    }
}

/// `entry name → tags` from `examples/deploy/tags.txt`.
fn documented_tags() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(examples().join("deploy/tags.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (entry, tags) = l.split_once(':').expect("`entry: tag, tag`");
            let tags = tags
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            (entry.trim().to_owned(), tags)
        })
        .collect()
}

/// The rendered ConfigMap's `config.toml`.
fn config_text(docs: &[Value]) -> String {
    let cm: ConfigMap = one(docs, "ConfigMap");
    cm.data
        .unwrap_or_default()
        .remove("config.toml")
        .expect("the ConfigMap holds config.toml")
}

/// The `${NAME}` placeholders of `text`.
fn placeholders(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\$\{([A-Z][A-Z0-9_]*)\}").unwrap();
    re.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

fn port_of(addr: &str) -> i32 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn config_maps_load_and_agree_with_the_manifests() {
    let Some(all) = renderings() else { return };
    let tags = documented_tags();
    for ((rel, docs), (_, modes, _)) in all.iter().zip(RENDERINGS) {
        let text = config_text(docs);
        let loaded = Config::parse(&text, Path::new("config.toml"))
            .unwrap_or_else(|e| panic!("{rel:?}: config.toml: {e:#}"));
        assert!(
            loaded.unknown_keys.is_empty(),
            "{rel:?}: keys kiln-runner would ignore: {:?}",
            loaded.unknown_keys
        );
        let config = loaded.config;
        let got: Vec<KilnMode> = config.runners.iter().map(|r| r.kubernetes_mode()).collect();
        assert_eq!(&got, modes, "{rel:?}: the entries' modes");

        let namespace: Namespace = one(docs, "Namespace");
        let ns = namespace.metadata.name.clone().unwrap();
        let claims: BTreeSet<String> = docs
            .iter()
            .filter(|d| kind(d) == "PersistentVolumeClaim")
            .map(|d| name(d).to_owned())
            .collect();
        for r in &config.runners {
            assert_eq!(r.executor, ExecutorKind::Kubernetes, "{rel:?}: {}", r.name);
            assert!(
                tags.contains_key(&r.name),
                "{rel:?}: entry {} has no line in tags.txt",
                r.name
            );
            let k = r.kubernetes.as_ref().unwrap();
            // The Role is namespaced: pods anywhere else would be refused.
            assert_eq!(
                k.namespace.as_ref(),
                Some(&ns),
                "{rel:?}: {} namespace",
                r.name
            );
            if let Some(c) = &k.cache_volume {
                assert!(claims.contains(c), "{rel:?}: no PVC {c} for {}", r.name);
            }
        }

        // The tokens the init container fills in are keys of the Secret it reads.
        let secret: Secret = one(docs, "Secret");
        let keys: BTreeSet<String> = secret.data.unwrap_or_default().into_keys().collect();
        let wanted = placeholders(&text);
        assert!(!wanted.is_empty(), "{rel:?}: tokens come from the Secret");
        assert!(
            wanted.is_subset(&keys),
            "{rel:?}: placeholders {wanted:?}, Secret keys {keys:?}"
        );

        let deployment: Deployment = one(docs, "Deployment");
        let pod = deployment.spec.unwrap().template;
        let annotations = pod.metadata.unwrap().annotations.unwrap_or_default();
        let pod = pod.spec.unwrap();
        let grace = pod.termination_grace_period_seconds.unwrap();
        assert!(
            grace > i64::try_from(config.shutdown_timeout).unwrap(),
            "{rel:?}: terminationGracePeriodSeconds {grace} must exceed shutdown_timeout {}",
            config.shutdown_timeout
        );
        let port = port_of(config.listen_address.as_deref().expect("listen_address"));
        let runner = &pod.containers[0];
        let ports = runner.ports.clone().unwrap_or_default();
        assert!(
            ports.iter().any(|p| p.container_port == port),
            "{rel:?}: the container exposes listen_address's port {port}"
        );
        assert_eq!(
            annotations.get("prometheus.io/port"),
            Some(&port.to_string())
        );
        let readiness = runner.readiness_probe.as_ref().unwrap();
        assert_eq!(
            readiness.http_get.as_ref().unwrap().path.as_deref(),
            Some("/health")
        );
        let security = runner.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
    }
}

/// Runs the Deployment's `config` init container script against the rendered ConfigMap,
/// with the mounts moved under a temporary directory, and loads what it writes.
#[test]
fn init_container_fills_in_the_tokens() {
    let Some(docs) = render("") else { return };
    let deployment: Deployment = one(&docs, "Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let init = &pod.init_containers.unwrap()[0];
    let command = init.command.clone().unwrap();
    assert_eq!(command[..2], ["bash", "-c"]);
    let mounts = init.volume_mounts.clone().unwrap();
    let mount = |volume: &str| {
        mounts
            .iter()
            .find(|m| m.name == volume)
            .unwrap()
            .mount_path
            .clone()
    };
    let (template_dir, config_dir) = (mount("config-template"), mount("config"));
    let runner_mounts = pod.containers[0].volume_mounts.clone().unwrap();
    assert!(
        runner_mounts
            .iter()
            .any(|m| m.name == "config" && m.mount_path == config_dir),
        "the runner reads the init container's output"
    );

    let tmp = tempfile::tempdir().unwrap();
    let (t, c) = (tmp.path().join("template"), tmp.path().join("config"));
    std::fs::create_dir_all(&t).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    let text = config_text(&docs);
    std::fs::write(t.join("config.toml"), &text).unwrap();
    let script = command[2]
        .replace(&template_dir, t.to_str().unwrap())
        .replace(&config_dir, c.to_str().unwrap());
    let names = placeholders(&text);
    let token = |n: &str| format!("glrt-{}_x-1", n.to_lowercase());

    let mut run = Command::new("bash");
    run.arg("-c").arg(&script).env_clear();
    for n in &names {
        run.env(n, token(n));
    }
    let out = match run.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: no bash");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = c.join("config.toml");
    let config = Config::load(&written).unwrap().config;
    let got: BTreeSet<String> = config.runners.iter().map(|r| r.token.clone()).collect();
    let want: BTreeSet<String> = names.iter().map(|n| token(n)).collect();
    assert_eq!(got, want);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&written).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the tokens are the runner's alone");

    // The placeholder in runner-token.env is refused with a message, not passed to GitLab.
    let mut run = Command::new("bash");
    run.arg("-c").arg(&script).env_clear();
    for n in &names {
        run.env(n, "glrt-REPLACE-ME");
    }
    let out = run.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runner-token.env"));
}

/// Top-level keys of a `.gitlab-ci.yml` that are not jobs.
const GLOBAL_KEYS: &[&str] = &[
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

#[test]
fn gitlab_ci_jobs_use_tags_the_example_routes() {
    let tags = documented_tags();
    assert!(tags.len() >= 2, "tags.txt names both entries: {tags:?}");
    let dir = examples().join("gitlab-ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(".gitlab-ci.yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "examples/gitlab-ci holds the CI examples");
    let mut routed: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            text.contains("Needs from the runner"),
            "{}: say what the jobs need from the runner",
            f.display()
        );
        let doc: Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
        let top = doc.as_object().expect("a mapping of jobs");
        let default_tags = top.get("default").and_then(|d| d.get("tags")).cloned();
        let mut jobs = 0;
        for (job, body) in top {
            if GLOBAL_KEYS.contains(&job.as_str()) || job.starts_with('.') {
                continue;
            }
            jobs += 1;
            let where_ = format!("{}: job {job}", f.display());
            assert!(
                body.get("script").is_some() || body.get("trigger").is_some(),
                "{where_}: no script"
            );
            let job_tags: BTreeSet<String> = body
                .get("tags")
                .or(default_tags.as_ref())
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{where_}: no tags, so any runner could take it"))
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect();
            // GitLab gives a job to a runner that has all of the job's tags.
            let entry = tags
                .iter()
                .find(|(_, t)| job_tags.is_subset(t))
                .unwrap_or_else(|| {
                    panic!("{where_}: tags {job_tags:?} match no entry of tags.txt {tags:?}")
                });
            routed.insert(entry.0.clone());
        }
        assert!(jobs > 0, "{}: no jobs", f.display());
    }
    let all: BTreeSet<String> = tags.keys().cloned().collect();
    assert_eq!(routed, all, "the examples route jobs to every entry");
}
