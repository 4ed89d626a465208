//! `metadata.ownerReferences` checks, worded as the API server words them (it names the list, not
//! the entry).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::status::Cause;

const FIELD: &str = "metadata.ownerReferences";

/// Every failed check of an object's owner references.
pub(crate) fn causes(refs: &[OwnerReference]) -> Vec<Cause> {
    let mut c = Vec::new();
    for r in refs {
        // The version is what follows the group's slash, or the whole string for the core group.
        let version = r.api_version.rsplit('/').next().unwrap_or_default();
        for (field, value, what) in [
            ("apiVersion", &r.api_version, version),
            ("kind", &r.kind, r.kind.as_str()),
            ("name", &r.name, r.name.as_str()),
            ("uid", &r.uid, r.uid.as_str()),
        ] {
            if what.is_empty() {
                let noun = if field == "apiVersion" {
                    "version"
                } else {
                    field
                };
                c.push(Cause::invalid(
                    format!("{FIELD}.{field}"),
                    value,
                    &format!("{noun} must not be empty"),
                ));
            }
        }
    }
    let controllers: Vec<String> = refs
        .iter()
        .filter(|r| r.controller == Some(true))
        .map(|r| format!("{}/{}", r.kind, r.name))
        .collect();
    if controllers.len() > 1 {
        c.push(Cause::invalid(
            FIELD,
            &controllers.join(", "),
            &format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    c
}
