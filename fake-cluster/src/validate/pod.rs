//! Pod spec validation and defaulting, the subset a CI pod uses, worded as the API server words it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, Probe, Toleration};

use super::names;
use crate::status::Cause;

/// Every failed check of a pod's spec.
pub(crate) fn validate(pod: &Pod) -> Vec<Cause> {
    let mut c = Vec::new();
    let Some(spec) = &pod.spec else {
        c.push(Cause::required("spec.containers", ""));
        return c;
    };
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let f = format!("spec.volumes[{i}].name");
        for e in names::dns1123_label_errors(&v.name) {
            c.push(Cause::invalid(&f, &v.name, &e));
        }
        if !volumes.insert(v.name.clone()) {
            c.push(Cause::duplicate(&f, &v.name));
        }
        let sources = [
            v.empty_dir.is_some(),
            v.secret.is_some(),
            v.host_path.is_some(),
            v.persistent_volume_claim.is_some(),
            v.config_map.is_some(),
            v.projected.is_some(),
            v.downward_api.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => c.push(Cause::required(
                format!("spec.volumes[{i}]"),
                "must specify a volume type",
            )),
            1 => {}
            _ => c.push(Cause::forbidden(
                format!("spec.volumes[{i}]"),
                "may not specify more than 1 volume type",
            )),
        }
        if let Some(s) = &v.secret {
            if s.secret_name.as_deref().unwrap_or_default().is_empty() {
                c.push(Cause::required(
                    format!("spec.volumes[{i}].secret.secretName"),
                    "",
                ));
            }
        }
    }
    if spec.containers.is_empty() {
        c.push(Cause::required("spec.containers", ""));
    }
    let mut seen = BTreeSet::new();
    for (i, ct) in spec.init_containers.iter().flatten().enumerate() {
        let f = format!("spec.initContainers[{i}]");
        container(&mut c, &f, ct, &volumes, &mut seen);
        let sidecar = match ct.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                c.push(Cause::not_supported(
                    format!("{f}.restartPolicy"),
                    other,
                    &["Always"],
                ));
                false
            }
        };
        if !sidecar {
            for (probe, name) in [
                (&ct.startup_probe, "startupProbe"),
                (&ct.readiness_probe, "readinessProbe"),
                (&ct.liveness_probe, "livenessProbe"),
            ] {
                if probe.is_some() {
                    c.push(Cause::forbidden(
                        format!("{f}.{name}"),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    for (i, ct) in spec.containers.iter().enumerate() {
        let f = format!("spec.containers[{i}]");
        container(&mut c, &f, ct, &volumes, &mut seen);
        if ct.restart_policy.is_some() {
            c.push(Cause::forbidden(
                format!("{f}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    if let Some(p) = spec.restart_policy.as_deref() {
        if !matches!(p, "Always" | "OnFailure" | "Never") {
            c.push(Cause::not_supported(
                "spec.restartPolicy",
                p,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    for (i, h) in spec.host_aliases.iter().flatten().enumerate() {
        if h.ip.parse::<std::net::IpAddr>().is_err() {
            c.push(Cause::invalid(
                format!("spec.hostAliases[{i}].ip"),
                &h.ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if let Some(g) = spec.termination_grace_period_seconds {
        if g < 0 {
            c.push(Cause::invalid(
                "spec.terminationGracePeriodSeconds",
                &g.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    c
}

fn container(
    c: &mut Vec<Cause>,
    f: &str,
    ct: &Container,
    volumes: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
) {
    if ct.name.is_empty() {
        c.push(Cause::required(format!("{f}.name"), ""));
    } else {
        for e in names::dns1123_label_errors(&ct.name) {
            c.push(Cause::invalid(format!("{f}.name"), &ct.name, &e));
        }
    }
    if !ct.name.is_empty() && !seen.insert(ct.name.clone()) {
        c.push(Cause::duplicate(format!("{f}.name"), &ct.name));
    }
    if ct.image.as_deref().unwrap_or_default().trim().is_empty() {
        c.push(Cause::required(format!("{f}.image"), ""));
    }
    if let Some(p) = ct.image_pull_policy.as_deref() {
        if !matches!(p, "Always" | "IfNotPresent" | "Never") {
            c.push(Cause::not_supported(
                format!("{f}.imagePullPolicy"),
                p,
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
    let mut paths = BTreeSet::new();
    for (j, m) in ct.volume_mounts.iter().flatten().enumerate() {
        let mf = format!("{f}.volumeMounts[{j}]");
        if m.name.is_empty() {
            c.push(Cause::required(format!("{mf}.name"), ""));
        } else if !volumes.contains(&m.name) {
            c.push(Cause::not_found(format!("{mf}.name"), &m.name));
        }
        if m.mount_path.is_empty() {
            c.push(Cause::required(format!("{mf}.mountPath"), ""));
        } else if !paths.insert(m.mount_path.clone()) {
            c.push(Cause::invalid(
                format!("{mf}.mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
    }
    for (j, e) in ct.env.iter().flatten().enumerate() {
        if e.name.is_empty() {
            c.push(Cause::required(format!("{f}.env[{j}].name"), ""));
        }
        if let Some(vf) = &e.value_from {
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
                c.push(Cause::invalid(
                    format!("{f}.env[{j}].valueFrom"),
                    "",
                    "may not be specified when `value` is not empty",
                ));
            }
            if let Some(s) = &vf.secret_key_ref {
                if s.key.is_empty() {
                    c.push(Cause::required(
                        format!("{f}.env[{j}].valueFrom.secretKeyRef.key"),
                        "",
                    ));
                }
            }
        }
    }
    if let Some(u) = ct.security_context.as_ref().and_then(|s| s.run_as_user) {
        if u < 0 {
            c.push(Cause::invalid(
                format!("{f}.securityContext.runAsUser"),
                &u.to_string(),
                "must be between 0 and 2147483647, inclusive",
            ));
        }
    }
}

fn probe_defaults(p: &mut Option<Probe>) {
    if let Some(p) = p {
        p.period_seconds.get_or_insert(10);
        p.timeout_seconds.get_or_insert(1);
        p.success_threshold.get_or_insert(1);
        p.failure_threshold.get_or_insert(3);
    }
}

fn container_defaults(ct: &mut Container) {
    let image = ct.image.clone().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    let tag_latest = !last.contains(':') && !image.contains('@') || last.ends_with(":latest");
    ct.image_pull_policy.get_or_insert_with(|| {
        if tag_latest {
            "Always".into()
        } else {
            "IfNotPresent".into()
        }
    });
    ct.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    ct.termination_message_policy
        .get_or_insert_with(|| "File".into());
    ct.resources.get_or_insert_with(Default::default);
    probe_defaults(&mut ct.startup_probe);
    probe_defaults(&mut ct.readiness_probe);
    probe_defaults(&mut ct.liveness_probe);
    for e in ct.env.iter_mut().flatten() {
        if let Some(fr) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            fr.api_version.get_or_insert_with(|| "v1".into());
        }
    }
}

/// Fills the defaults the API server writes into a created pod.
pub(crate) fn set_defaults(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    let sa = spec
        .service_account_name
        .get_or_insert_with(|| "default".into())
        .clone();
    spec.service_account = Some(sa);
    spec.enable_service_links.get_or_insert(true);
    spec.priority.get_or_insert(0);
    spec.preemption_policy
        .get_or_insert_with(|| "PreemptLowerPriority".into());
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(key)) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                ..Default::default()
            });
        }
    }
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(s) = v.secret.as_mut() {
            s.default_mode.get_or_insert(0o644);
        }
    }
    for ct in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container_defaults(ct);
    }
}

/// BestEffort without requests or limits; Guaranteed/Burstable otherwise (not told apart here:
/// CI pods without limits are BestEffort, and the fake does not enforce resources).
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let any = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .any(|c| {
            c.resources.as_ref().is_some_and(|r| {
                r.requests.as_ref().is_some_and(|m| !m.is_empty())
                    || r.limits.as_ref().is_some_and(|m| !m.is_empty())
            })
        });
    if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}
