//! Requests and limits of each container, from the entry's (possibly overridden) settings.

use super::overrides::{target_index, Effective};
use crate::config::kubernetes::ResourceTarget;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The requirements of a `target` container, `None` when nothing is set.
pub(super) fn requirements(
    eff: &Effective,
    target: ResourceTarget,
) -> Option<ResourceRequirements> {
    let t = target_index(target);
    let pick = |bound: &str| -> Option<BTreeMap<String, Quantity>> {
        let m: BTreeMap<String, Quantity> = eff
            .resources
            .iter()
            .filter(|((ti, _, b), _)| *ti == t && *b == bound)
            .map(|((_, name, _), v)| ((*name).to_owned(), Quantity(v.clone())))
            .collect();
        (!m.is_empty()).then_some(m)
    };
    let (limits, requests) = (pick("limit"), pick("request"));
    (limits.is_some() || requests.is_some()).then(|| ResourceRequirements {
        limits,
        requests,
        ..Default::default()
    })
}
