//! The `KUBERNETES_*` job variables, honoured as gitlab-runner documents them: each only
//! where the entry's `*_overwrite_allowed` regex or `*_overwrite_max_allowed` ceiling allows
//! it; anything else is refused with a warning for the job's trace.

use crate::config::kubernetes::{KubernetesConfig, ResourceTarget, RESOURCES};
use crate::config::parse_quantity;
use crate::gitlab::JobResponse;
use regex::Regex;
use std::collections::BTreeMap;

/// The settings after the job's overrides.
#[derive(Debug, Default)]
pub(super) struct Effective {
    pub namespace: String,
    pub service_account: Option<String>,
    /// `(target, API resource name, "limit"|"request")` → quantity.
    pub resources: BTreeMap<(u8, &'static str, &'static str), String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

const TARGETS: [ResourceTarget; 3] = [
    ResourceTarget::Build,
    ResourceTarget::Service,
    ResourceTarget::Helper,
];

/// The index of `t` in the resources map's key.
pub(super) fn target_index(t: ResourceTarget) -> u8 {
    match t {
        ResourceTarget::Build => 0,
        ResourceTarget::Service => 1,
        ResourceTarget::Helper => 2,
    }
}

/// A job variable's value unless it is masked: a masked value must not reach the pod spec.
fn public_var<'a>(job: &'a JobResponse, key: &str, warnings: &mut Vec<String>) -> Option<&'a str> {
    let v = job.variables.iter().rev().find(|v| v.key == key)?;
    if v.masked {
        warnings.push(format!(
            "{key} ignored: a masked variable cannot go into the pod spec"
        ));
        return None;
    }
    Some(v.value.as_str()).filter(|v| !v.is_empty())
}

/// gitlab-runner matches these regexes unanchored (Go's `MatchString`); so does kiln.
fn allowed(re: Option<&str>, value: &str) -> Result<(), String> {
    match re {
        None | Some("") => Err("overwriting is not enabled for this runner".into()),
        Some(re) => match Regex::new(re) {
            Ok(r) if r.is_match(value) => Ok(()),
            Ok(_) => Err(format!("does not match {re:?}")),
            Err(e) => Err(format!("invalid regex {re:?}: {e}")),
        },
    }
}

pub(super) fn effective(
    job: &JobResponse,
    k: &KubernetesConfig,
    protected_labels: &[&str],
    warnings: &mut Vec<String>,
) -> Effective {
    let mut out = Effective {
        namespace: k.namespace.clone().unwrap_or_else(|| "default".into()),
        service_account: k.service_account.clone(),
        ..Effective::default()
    };
    if let Some(ns) = public_var(job, "KUBERNETES_NAMESPACE_OVERWRITE", warnings) {
        match allowed(k.namespace_overwrite_allowed.as_deref(), ns) {
            Ok(()) if super::is_dns_label(ns) => out.namespace = ns.to_owned(),
            Ok(()) => warnings.push(format!(
                "KUBERNETES_NAMESPACE_OVERWRITE={ns:?} refused: not a valid namespace name"
            )),
            Err(why) => warnings.push(format!(
                "KUBERNETES_NAMESPACE_OVERWRITE={ns:?} refused: {why} (namespace_overwrite_allowed)"
            )),
        }
    }
    if let Some(sa) = public_var(job, "KUBERNETES_SERVICE_ACCOUNT_OVERWRITE", warnings) {
        match allowed(k.service_account_overwrite_allowed.as_deref(), sa) {
            Ok(()) => out.service_account = Some(sa.to_owned()),
            Err(why) => warnings.push(format!(
                "KUBERNETES_SERVICE_ACCOUNT_OVERWRITE={sa:?} refused: {why} \
                 (service_account_overwrite_allowed)"
            )),
        }
    }
    for target in TARGETS {
        let (key_prefix, var_infix) = target.prefixes();
        for (resource, api_name) in RESOURCES {
            for bound in ["limit", "request"] {
                let (value, ceiling) = k.resources.get(target, resource, bound);
                let mut value = value.map(str::to_owned);
                let var = format!(
                    "KUBERNETES_{var_infix}{}_{}",
                    resource.to_ascii_uppercase(),
                    bound.to_ascii_uppercase()
                );
                let max_key = format!("{key_prefix}{resource}_{bound}_overwrite_max_allowed");
                if let Some(wanted) = public_var(job, &var, warnings) {
                    match (parse_quantity(wanted), ceiling.and_then(parse_quantity)) {
                        (None, _) => warnings.push(format!(
                            "{var}={wanted:?} refused: not a Kubernetes quantity"
                        )),
                        (Some(_), None) => warnings.push(format!(
                            "{var}={wanted:?} refused: overwriting is not enabled ({max_key} is not set)"
                        )),
                        (Some(w), Some(max)) if w > max => warnings.push(format!(
                            "{var}={wanted:?} refused: above {max_key} = {:?}",
                            ceiling.unwrap_or_default()
                        )),
                        (Some(_), Some(_)) => value = Some(wanted.to_owned()),
                    }
                }
                if let Some(v) = value {
                    out.resources
                        .insert((target_index(target), api_name, bound_name(bound)), v);
                }
            }
        }
    }
    out.labels = k.pod_labels.clone();
    out.annotations = k.pod_annotations.clone();
    for (prefix, re, key, map) in [
        (
            "KUBERNETES_POD_LABELS_",
            k.pod_labels_overwrite_allowed.as_deref(),
            "pod_labels_overwrite_allowed",
            &mut out.labels,
        ),
        (
            "KUBERNETES_POD_ANNOTATIONS_",
            k.pod_annotations_overwrite_allowed.as_deref(),
            "pod_annotations_overwrite_allowed",
            &mut out.annotations,
        ),
    ] {
        let names: Vec<&str> = job
            .variables
            .iter()
            .filter(|v| v.key.starts_with(prefix))
            .map(|v| v.key.as_str())
            .collect();
        for name in names {
            let Some(text) = public_var(job, name, warnings) else {
                continue;
            };
            let Some((k, v)) = text.split_once('=') else {
                warnings.push(format!("{name}={text:?} refused: not key=value"));
                continue;
            };
            if protected_labels.contains(&k) || k.contains("runner.gitlab.com/") {
                warnings.push(format!(
                    "{name} refused: {k:?} is set by the runner and cannot be overwritten"
                ));
                continue;
            }
            match allowed(re, text) {
                Ok(()) => {
                    map.insert(k.to_owned(), v.to_owned());
                }
                Err(why) => warnings.push(format!("{name}={text:?} refused: {why} ({key})")),
            }
        }
    }
    out
}

fn bound_name(b: &str) -> &'static str {
    if b == "limit" {
        "limit"
    } else {
        "request"
    }
}
