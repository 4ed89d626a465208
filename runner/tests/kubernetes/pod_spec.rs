//! The job pod: golden files of each shape and config-key group, each key's effect, the
//! API server's name and label rules, and no secret in clear.
//!
//! The golden files are `tests/golden/kubernetes/<entry>.yaml`, compared byte for byte.
//! After an intended change, regenerate them with
//! `KILN_UPDATE_GOLDEN=1 cargo test -p kiln-runner --test kubernetes pod_spec::` and review the diff.

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kiln_runner::config::{Config, RunnerConfig};
use kiln_runner::executor::kubernetes::spec::{self, JobObjects};
use kiln_runner::gitlab::JobResponse;
use kiln_runner::job::plan::{JobPlan, VarKind};
use kiln_runner::trace::Trace;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ENTRIES: [&str; 6] = [
    "dind",
    "rootless",
    "legacy-sidecars",
    "resources",
    "scheduling",
    "volumes",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubernetes")
}

fn config() -> Config {
    let loaded = Config::load(&fixtures().join("config.toml")).unwrap();
    assert!(loaded.unknown_keys.is_empty(), "{:?}", loaded.unknown_keys);
    loaded.config
}

fn job() -> JobResponse {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("job.json")).unwrap()).unwrap()
}

fn entry<'a>(c: &'a Config, name: &str) -> &'a RunnerConfig {
    c.runners.iter().find(|r| r.name == name).unwrap()
}

fn plan(job: &JobResponse, entry: &RunnerConfig) -> JobPlan {
    let trace = Trace::new(Vec::<String>::new(), usize::MAX);
    JobPlan::new(job, entry, spec::job_layout(job, entry), &trace)
}

fn objects(name: &str) -> JobObjects {
    let c = config();
    let job = job();
    let e = entry(&c, name);
    let certs = spec::placeholder_certs();
    spec::job_objects(&job, e, &plan(&job, e), Some(&certs)).unwrap()
}

fn pod_spec(o: &JobObjects) -> &k8s_openapi::api::core::v1::PodSpec {
    o.pod.spec.as_ref().unwrap()
}

fn container<'a>(o: &'a JobObjects, name: &str) -> &'a Container {
    let s = pod_spec(o);
    s.containers
        .iter()
        .chain(s.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("KILN_UPDATE_GOLDEN").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kubernetes");
    let mut stale = Vec::new();
    for name in ENTRIES {
        let o = objects(name);
        let mut text = spec::to_yaml(&o).unwrap();
        for w in &o.warnings {
            text.push_str(&format!("# warning: {w}\n"));
        }
        let path = dir.join(format!("{name}.yaml"));
        if update {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ (KILN_UPDATE_GOLDEN=1 regenerates): {stale:?}"
    );
}

/// The YAML documents of a stream.
fn documents(text: &str) -> Vec<String> {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            d.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

#[test]
fn every_object_reads_back_and_passes_the_api_servers_rules() {
    for name in ENTRIES {
        let o = objects(name);
        let docs = documents(&spec::to_yaml(&o).unwrap());
        assert_eq!(docs.len(), 2, "{name}");
        let pod: Pod = serde_norway::from_str(&docs[0]).unwrap();
        let secret: Secret = serde_norway::from_str(&docs[1]).unwrap();
        assert_eq!(pod, o.pod, "{name}: the pod reads back as written");
        assert_eq!(
            secret
                .string_data
                .as_ref()
                .map(|d| d.keys().collect::<Vec<_>>()),
            o.secret.data.as_ref().map(|d| d.keys().collect::<Vec<_>>()),
        );
        check_api_rules(name, &o);
    }
}

fn check_api_rules(name: &str, o: &JobObjects) {
    let meta = &o.pod.metadata;
    let pod_name = meta.name.as_deref().unwrap();
    assert!(spec::is_dns_label(pod_name), "{name}: {pod_name}");
    assert_eq!(o.secret.metadata.name.as_deref(), Some(pod_name));
    assert!(spec::is_dns_label(meta.namespace.as_deref().unwrap()));
    for (k, v) in meta.labels.iter().flatten() {
        assert!(spec::is_label_key(k), "{name}: label key {k}");
        assert!(spec::is_label_value(v), "{name}: label {k}={v:?}");
    }
    let annotations: usize = meta
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| {
            assert!(spec::is_label_key(k), "{name}: annotation key {k}");
            k.len() + v.len()
        })
        .sum();
    assert!(annotations < 256 * 1024);
    for k in o.secret.data.iter().flatten().map(|(k, _)| k) {
        assert!(
            k.len() <= 253
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
            "{name}: secret key {k}"
        );
    }
    let s = pod_spec(o);
    assert_eq!(s.restart_policy.as_deref(), Some("Never"));
    let mut names = BTreeSet::new();
    let volumes: BTreeSet<&str> = s
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        volumes.len(),
        s.volumes.as_ref().map_or(0, Vec::len),
        "{name}: volume names unique"
    );
    for v in &volumes {
        assert!(spec::is_dns_label(v), "{name}: volume {v}");
    }
    let all = s.init_containers.iter().flatten().chain(&s.containers);
    for c in all {
        assert!(spec::is_dns_label(&c.name), "{name}: container {}", c.name);
        assert!(
            names.insert(c.name.clone()),
            "{name}: container {} twice",
            c.name
        );
        assert!(c.image.as_deref().is_some_and(|i| !i.is_empty()));
        let mut paths = BTreeSet::new();
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                volumes.contains(m.name.as_str()),
                "{name}: mount of unknown {}",
                m.name
            );
            assert!(m.mount_path.starts_with('/'));
            assert!(
                paths.insert(&m.mount_path),
                "{name}: {} mounted twice",
                m.mount_path
            );
        }
        for e in c.env.iter().flatten() {
            assert!(!e.name.is_empty() && !e.name.contains('='));
            assert!(e.value.is_none() || e.value_from.is_none());
        }
    }
    // A native sidecar is an init container that keeps running: `restartPolicy: Always`.
    for c in s.init_containers.iter().flatten() {
        if c.startup_probe.is_some() {
            assert_eq!(
                c.restart_policy.as_deref(),
                Some("Always"),
                "{name}: {}",
                c.name
            );
        }
    }
    for c in &s.containers {
        assert!(c.restart_policy.is_none(), "{name}: {}", c.name);
    }
}

#[test]
fn no_secret_value_is_in_the_pod() {
    let c = config();
    let job = job();
    // Real certificates here: their keys must not show either.
    let certs = kiln_dind_certs::generate(&Default::default()).unwrap();
    for name in ENTRIES {
        let e = entry(&c, name);
        let plan = plan(&job, e);
        let o = spec::job_objects(&job, e, &plan, Some(&certs)).unwrap();
        let pod = serde_json::to_string(&o.pod).unwrap();
        let mut secrets: Vec<String> = plan
            .vars
            .iter()
            .filter(|v| v.kind != VarKind::Plain)
            .map(|v| v.value.clone())
            .collect();
        secrets.push(job.token.clone());
        secrets.push(certs.client_key.expose().to_owned());
        secrets.push(certs.server_key.expose().to_owned());
        secrets.push("secret-file-content-9999".into());
        for s in &secrets {
            assert!(
                !pod.contains(s.as_str()),
                "{name}: a secret is in the pod spec"
            );
        }
        let yaml = spec::to_yaml(&o).unwrap();
        for s in &secrets {
            assert!(
                !yaml.contains(s.as_str()),
                "{name}: a secret is in the output"
            );
        }
        // …and they are in the Secret, where the pod's references point.
        let data = o.secret.data.as_ref().unwrap();
        let stored: Vec<&[u8]> = data.values().map(|v| v.0.as_slice()).collect();
        assert!(stored.contains(&job.token.as_bytes()), "{name}");
    }
}

#[test]
fn dind_shape() {
    let o = objects("dind");
    let s = pod_spec(&o);
    let daemon = container(&o, "docker");
    assert!(s
        .init_containers
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.name == "docker"));
    assert_eq!(daemon.restart_policy.as_deref(), Some("Always"));
    assert_eq!(daemon.image.as_deref(), Some("docker:27-dind"));
    let probe = daemon
        .startup_probe
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap();
    assert!(probe
        .command
        .as_ref()
        .unwrap()
        .contains(&"--tlsverify".to_owned()));
    assert_eq!(
        env_value(daemon, "DOCKER_TLS_CERTDIR"),
        Some("/certs"),
        "kiln's, not the job's \"\""
    );
    // Only the daemon is privileged.
    for c in s
        .containers
        .iter()
        .chain(s.init_containers.iter().flatten())
    {
        let privileged = c.security_context.as_ref().and_then(|x| x.privileged) == Some(true);
        assert_eq!(privileged, c.name == "docker", "{}", c.name);
    }
    let build = container(&o, "build");
    assert_eq!(env_value(build, "DOCKER_HOST"), Some("tcp://docker:2376"));
    assert_eq!(env_value(build, "DOCKER_TLS_VERIFY"), Some("1"));
    assert_eq!(env_value(build, "DOCKER_CERT_PATH"), Some("/certs/client"));
    assert_eq!(build.image.as_deref(), Some("docker:27"));
    assert_eq!(build.working_dir.as_deref(), Some("/builds/group/sub/app"));
    let aliases = &s.host_aliases.as_ref().unwrap()[0];
    assert_eq!(aliases.ip, "127.0.0.1");
    assert_eq!(aliases.hostnames.as_deref().unwrap(), ["docker", "cache"]);
    let mounts: Vec<_> = daemon
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/certs/server"));
    let keys: Vec<_> = o.secret.data.as_ref().unwrap().keys().cloned().collect();
    for k in [
        "server-key.pem",
        "client-key.pem",
        "step_script.sh",
        "get_sources.sh",
        "after_script.sh",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
    }
    assert!(
        !keys.iter().any(|k| k == "ca-key.pem"),
        "the CA key stays out"
    );
    // The clone container gets the token only by reference.
    let clone = container(&o, "clone");
    let url = clone
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "KILN_GIT_CLONE_URL")
        .unwrap();
    assert!(url.value.is_none() && url.value_from.is_some());
    assert_eq!(
        s.init_containers
            .as_ref()
            .unwrap()
            .first()
            .map(|c| c.name.as_str()),
        Some("clone"),
        "sources first, then the daemon"
    );
    assert_eq!(s.automount_service_account_token, Some(false));
    assert_eq!(
        s.active_deadline_seconds,
        Some(3600 + spec::DEADLINE_MARGIN)
    );
    assert_eq!(env_value(build, "WEIRD"), Some("keeps $$(HOME) literal"));
    let deploy_key = env_value(build, "DEPLOY_KEY").unwrap();
    assert_eq!(deploy_key, "/kiln/files/DEPLOY_KEY");
}

#[test]
fn legacy_sidecars_wait_in_the_script() {
    let o = objects("legacy-sidecars");
    let s = pod_spec(&o);
    let daemon = s.containers.iter().find(|c| c.name == "docker").unwrap();
    assert!(daemon.restart_policy.is_none() && daemon.startup_probe.is_none());
    assert!(daemon.readiness_probe.is_some());
    // The job's dind service wins over dind_image.
    assert_eq!(daemon.image.as_deref(), Some("docker:27-dind"));
    let script = &o.secret.data.as_ref().unwrap()["step_script.sh"].0;
    let script = String::from_utf8_lossy(script);
    assert!(script.starts_with("kiln_wait=0\n"), "{script}");
}

#[test]
fn rootless_shape() {
    let o = objects("rootless");
    let s = pod_spec(&o);
    assert!(o
        .warnings
        .iter()
        .any(|w| w.contains("docker:27-dind") && w.contains("ignored")));
    let build = container(&o, "build");
    assert_eq!(
        build.image.as_deref(),
        Some("registry.example.com/kiln:1.0")
    );
    let sc = build.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(1000));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "Unconfined");
    assert_eq!(sc.proc_mount.as_deref(), Some("Unmasked"));
    assert_eq!(s.host_users, Some(false));
    assert_eq!(
        env_value(build, "KILN_CACHE_DIR"),
        Some(kiln_runner::executor::kubernetes::spec::KILN_CACHE_DIR)
    );
    assert_eq!(env_value(build, "KILN_ISOLATION"), Some("rootless"));
    assert_eq!(env_value(build, "DOCKER_CONFIG"), Some("/kiln/docker"));
    let cache = s
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kiln-cache")
        .unwrap();
    assert_eq!(
        cache.persistent_volume_claim.as_ref().unwrap().claim_name,
        "kiln-cache"
    );
    let config = &o.secret.data.as_ref().unwrap()["docker-config.json"].0;
    let config: serde_json::Value = serde_json::from_slice(config).unwrap();
    assert!(config["auths"]["registry.example.com"]["auth"].is_string());
    for c in s
        .containers
        .iter()
        .chain(s.init_containers.iter().flatten())
    {
        let p = c.security_context.as_ref().and_then(|x| x.privileged);
        assert_ne!(p, Some(true), "{}", c.name);
    }
    assert!(!s
        .containers
        .iter()
        .chain(s.init_containers.iter().flatten())
        .any(|c| c.name == "docker"));
    assert_eq!(s.security_context.as_ref().unwrap().fs_group, Some(1000));
}

#[test]
fn isolation_none_keeps_the_default_seccomp() {
    let o = objects("resources");
    let sc = container(&o, "build").security_context.clone().unwrap();
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert!(sc.proc_mount.is_none() && sc.app_armor_profile.is_none());
    assert_eq!(pod_spec(&o).host_users, None);
}

/// kaniko's pod: kiln changes root and sets owners as root in the container, with no privilege,
/// no escalation and only capabilities PodSecurity `baseline` allows.
#[test]
fn isolation_none_builds_as_root_with_baselines_capabilities() {
    const BASELINE: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let o = objects("resources");
    let sc = container(&o, "build").security_context.clone().unwrap();
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(0), Some(0)));
    assert_eq!(sc.run_as_non_root, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    let added = caps.add.unwrap();
    assert!(
        added.iter().all(|c| BASELINE.contains(&c.as_str())),
        "{added:?}"
    );
    for needed in ["SYS_CHROOT", "CHOWN", "SETUID", "SETGID"] {
        assert!(
            added.iter().any(|c| c == needed),
            "{needed} missing: {added:?}"
        );
    }
    assert!(!added.iter().any(|c| c == "NET_RAW"));
    // The clone still runs as the build user.
    let clone = container(&o, "clone").security_context.clone().unwrap();
    assert_eq!(clone.run_as_user, Some(1000));
    // The rootless isolation keeps uid 1000 and no capability.
    let o = objects("rootless");
    let sc = container(&o, "build").security_context.clone().unwrap();
    assert_eq!(
        (sc.run_as_user, sc.run_as_non_root),
        (Some(1000), Some(true))
    );
    assert_eq!(sc.capabilities.unwrap().add, None);
}

#[test]
fn resources_and_overrides() {
    let o = objects("resources");
    let build = container(&o, "build").resources.clone().unwrap();
    let q = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
             k: &str| { m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone()) };
    assert_eq!(
        q(&build.limits, "memory").as_deref(),
        Some("6Gi"),
        "within the ceiling"
    );
    assert_eq!(
        q(&build.limits, "cpu").as_deref(),
        Some("2"),
        "16 is above the ceiling of 4"
    );
    assert_eq!(q(&build.requests, "cpu").as_deref(), Some("500m"));
    assert_eq!(
        q(&build.limits, "ephemeral-storage").as_deref(),
        Some("20Gi")
    );
    let clone = container(&o, "clone").resources.clone().unwrap();
    assert_eq!(q(&clone.requests, "cpu").as_deref(), Some("100m"));
    assert_eq!(q(&clone.limits, "memory").as_deref(), Some("256Mi"));
    let svc = container(&o, "svc-1").resources.clone().unwrap();
    assert_eq!(q(&svc.limits, "memory").as_deref(), Some("1Gi"));
    assert!(o.warnings.iter().any(
        |w| w.contains("KUBERNETES_CPU_LIMIT") && w.contains("cpu_limit_overwrite_max_allowed")
    ));
    let meta = &o.pod.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("ci-team-a"));
    assert_eq!(o.secret.metadata.namespace.as_deref(), Some("ci-team-a"));
    let s = pod_spec(&o);
    assert_eq!(
        s.service_account_name.as_deref(),
        Some("kiln-build"),
        "default does not match ^kiln-"
    );
    assert!(o
        .warnings
        .iter()
        .any(|w| w.contains("KUBERNETES_SERVICE_ACCOUNT_OVERWRITE")));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "alpha");
    assert_eq!(labels["example.com/cost-center"], "builds");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"], "kiln-runner",
        "not overwritable"
    );
    assert_eq!(labels["job.runner.gitlab.com/id"], "4242");
    assert_eq!(labels["project.runner.gitlab.com/id"], "77");
    assert_eq!(labels["pipeline.runner.gitlab.com/id"], "900");
    assert_eq!(labels["project.runner.gitlab.com/namespace"], "group_sub");
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["example.com/reason"], "release");
    assert_eq!(annotations["example.com/owner"], "platform team");
    assert_eq!(
        annotations["job.runner.gitlab.com/sha"],
        "0123456789abcdef0123456789abcdef01234567"
    );
}

#[test]
fn overrides_are_refused_without_their_allow_keys() {
    let o = objects("rootless");
    assert_eq!(o.pod.metadata.namespace.as_deref(), Some("ci"));
    let build = container(&o, "build");
    assert!(build.resources.is_none());
    for var in [
        "KUBERNETES_NAMESPACE_OVERWRITE",
        "KUBERNETES_MEMORY_LIMIT",
        "KUBERNETES_POD_LABELS_1",
    ] {
        assert!(
            o.warnings.iter().any(|w| w.contains(var)),
            "{var}: {:?}",
            o.warnings
        );
    }
}

#[test]
fn scheduling_keys() {
    let o = objects("scheduling");
    let s = pod_spec(&o);
    assert_eq!(
        s.node_selector.as_ref().unwrap()["kubernetes.io/arch"],
        "amd64"
    );
    let t = s.tolerations.as_ref().unwrap();
    assert!(t.iter().any(|t| t.key.as_deref() == Some("dedicated")
        && t.operator.as_deref() == Some("Equal")
        && t.value.as_deref() == Some("ci")
        && t.effect.as_deref() == Some("NoSchedule")));
    assert!(t.iter().any(
        |t| t.key.as_deref() == Some("node-role.kubernetes.io/builder")
            && t.operator.as_deref() == Some("Exists")
            && t.effect.is_none()
    ));
    let terms = &s
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(
        terms[0].match_expressions.as_ref().unwrap()[0].key,
        "example.com/pool"
    );
    assert_eq!(
        s.image_pull_secrets.as_ref().unwrap()[0].name,
        "registry-creds"
    );
    assert_eq!(s.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(s.termination_grace_period_seconds, Some(10));
    assert_eq!(s.automount_service_account_token, Some(true));
    assert_eq!(
        container(&o, "build").image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    let extra = s
        .host_aliases
        .as_ref()
        .unwrap()
        .iter()
        .find(|h| h.ip == "10.0.0.5")
        .unwrap();
    assert_eq!(
        extra.hostnames.as_deref().unwrap(),
        ["registry.internal", "mirror.internal"]
    );
    let psc = s.security_context.as_ref().unwrap();
    assert_eq!(
        (psc.run_as_user, psc.run_as_group, psc.fs_group),
        (Some(2000), Some(2000), Some(3000))
    );
    assert_eq!(psc.supplemental_groups.as_deref(), Some(&[4000][..]));
    assert_eq!(
        container(&o, "build")
            .security_context
            .as_ref()
            .unwrap()
            .run_as_user,
        Some(2000)
    );
    // fsGroup set: file variables are group-readable.
    let files = s
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kiln-files")
        .unwrap();
    assert_eq!(
        files.secret.as_ref().unwrap().items.as_ref().unwrap()[0].mode,
        Some(0o440)
    );
}

#[test]
fn volume_keys() {
    let o = objects("volumes");
    let s = pod_spec(&o);
    let v = |n: &str| {
        s.volumes
            .iter()
            .flatten()
            .find(|v| v.name == n)
            .unwrap()
            .clone()
    };
    let scratch = v("scratch").empty_dir.unwrap();
    assert_eq!(scratch.medium.as_deref(), Some("Memory"));
    assert_eq!(scratch.size_limit.unwrap().0, "1Gi");
    let pvc = v("shared-data").persistent_volume_claim.unwrap();
    assert_eq!(
        (pvc.claim_name.as_str(), pvc.read_only),
        ("shared-data", Some(true))
    );
    let secret = v("ca-bundle").secret.unwrap();
    assert_eq!(secret.items.unwrap()[0].path, "ca.pem");
    assert_eq!(
        v("build-settings").config_map.unwrap().name,
        "build-settings"
    );
    assert_eq!(v("host-certs").host_path.unwrap().path, "/etc/ssl/certs");
    assert_eq!(v("kiln-cache").host_path.unwrap().path, "/var/cache/kiln");
    let mounts: Vec<_> = container(&o, "build")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.clone(), m.read_only))
        .collect();
    for want in [
        ("/scratch", None),
        ("/data", Some(true)),
        ("/etc/ssl/extra", Some(true)),
        ("/etc/build", None),
        ("/etc/host-certs", Some(true)),
        ("/kiln/cache", None),
    ] {
        assert!(
            mounts.contains(&(want.0.to_owned(), want.1)),
            "{want:?} in {mounts:?}"
        );
    }
}

#[test]
fn layout_and_names_follow_the_job() {
    let c = config();
    let job = job();
    let e = entry(&c, "dind");
    let l = spec::job_layout(&job, e);
    assert_eq!(
        (l.builds_dir.as_str(), l.project_dir.as_str()),
        ("/builds", "/builds/group/sub/app")
    );
    assert_eq!(spec::pod_name(&job, e), "kiln-dindtok3-job-4242");
    assert_eq!(
        spec::runner_selector(e),
        "app.kubernetes.io/managed-by=kiln-runner,manager.runner.gitlab.com/id-short=DindTok3"
    );
    let o = objects("dind");
    let mut pod = o.pod.clone();
    pod.metadata.uid = Some("1234-abcd".into());
    let owner = spec::secret_owner_reference(&pod);
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Pod", "1234-abcd")
    );
}

#[test]
fn bad_config_values_are_named_by_key() {
    let text = std::fs::read_to_string(fixtures().join("config.toml")).unwrap();
    for (from, to, key) in [
        (
            "cpu_request = \"500m\"",
            "cpu_request = \"half\"",
            "runners[3].kubernetes.cpu_request",
        ),
        (
            "memory_limit_overwrite_max_allowed = \"8Gi\"",
            "memory_limit_overwrite_max_allowed = \"8GB\"",
            "memory_limit_overwrite_max_allowed",
        ),
        (
            "isolation = \"none\"",
            "isolation = \"chroot\"",
            "runners[3].kubernetes.isolation",
        ),
        (
            "dns_policy = \"cluster-first\"",
            "dns_policy = \"sometimes\"",
            "dns_policy",
        ),
        (
            "size_limit = \"1Gi\"",
            "size_limit = \"lots\"",
            "volumes.empty_dir",
        ),
    ] {
        let bad = text.replacen(from, to, 1);
        let err = Config::parse(&bad, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
    let unprivileged = text.replacen(
        "privileged = true\n    namespace = \"ci\"",
        "privileged = false\n    namespace = \"ci\"",
        1,
    );
    let err = Config::parse(&unprivileged, Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("runners[0].kubernetes.privileged"), "{err}");
}

#[test]
fn unknown_kubernetes_keys_are_reported_by_path() {
    let text = "[[runners]]\nurl = \"https://g\"\ntoken = \"t\"\nexecutor = \"kubernetes\"\n\
                [runners.kubernetes]\ncpu_limit = \"1\"\nhelper_memory_request_overwrite_max_allowed = \"1Gi\"\n\
                cpu_limitt = \"1\"\n[runners.kubernetes.pod_security_context]\nrun_as_usr = 1\n\
                [[runners.kubernetes.volumes.pvc]]\nname = \"a\"\nmount_path = \"/a\"\nclaim = \"x\"\n";
    let loaded = Config::parse(text, Path::new("c")).unwrap();
    assert_eq!(
        loaded.unknown_keys,
        [
            "runners[0].kubernetes.cpu_limitt",
            "runners[0].kubernetes.pod_security_context.run_as_usr",
            "runners[0].kubernetes.volumes.pvc[0].claim",
        ]
    );
}

#[test]
fn pod_spec_cli_prints_the_golden_stream() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-runner"))
        .args(["pod-spec", "--config"])
        .arg(fixtures().join("config.toml"))
        .arg("--job")
        .arg(fixtures().join("job.json"))
        .args(["--runner", "dind"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kubernetes/dind.yaml"),
    )
    .unwrap();
    let golden: String = golden
        .lines()
        .filter(|l| !l.starts_with("# warning"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stdout, golden);
    assert!(stdout.contains("<redacted: "));
    assert!(
        !stdout.contains("<generated per job>"),
        "placeholders are redacted too"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: KUBERNETES_"), "{stderr}");

    // Several kubernetes entries and no --runner: a usage error (2).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-runner"))
        .args(["pod-spec", "--config"])
        .arg(fixtures().join("config.toml"))
        .arg("--job")
        .arg(fixtures().join("job.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn yaml_1_1_booleans_are_quoted_for_kubectl() {
    let yaml = spec::to_yaml(&objects("dind")).unwrap();
    assert!(
        yaml.contains("      value: 'yes'\n"),
        "CI_SERVER=yes stays a string"
    );
}
