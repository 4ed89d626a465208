//! Service containers: native sidecars (init containers that keep running) or, for clusters
//! before 1.29, plain containers beside `build`.

use super::env::plain;
use super::overrides::Effective;
use super::resources::requirements;
use crate::config::kubernetes::ResourceTarget;
use crate::gitlab::JobService;
use k8s_openapi::api::core::v1::{Container, SecurityContext};

/// The names a service gives its container: `svc-<n>`.
pub(super) fn service_name(n: usize) -> String {
    format!("svc-{n}")
}

/// A non-daemon service: unprivileged, its own variables only (job secrets stay in `build`).
pub(super) fn service_container(
    s: &JobService,
    name: String,
    native: bool,
    eff: &Effective,
    pull_policy: Option<String>,
) -> Container {
    Container {
        name,
        image: Some(s.name.clone()),
        command: (!s.entrypoint.is_empty()).then(|| s.entrypoint.clone()),
        args: (!s.command.is_empty()).then(|| s.command.clone()),
        env: Some(
            s.variables
                .iter()
                .map(|v| plain(&v.key, &v.value))
                .collect(),
        )
        .filter(|e: &Vec<_>| !e.is_empty()),
        image_pull_policy: s
            .pull_policy
            .first()
            .and_then(|p| crate::config::kubernetes::pull_policy(p))
            .map(str::to_owned)
            .or(pull_policy),
        resources: requirements(eff, ResourceTarget::Service),
        restart_policy: native.then(|| "Always".into()),
        security_context: Some(SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}
