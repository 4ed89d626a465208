//! dind mode: `build` runs the job's image as an ordinary container and talks to a Docker
//! daemon over mutual TLS on `tcp://docker:2376`; the daemon is the only privileged
//! container.

use super::env::{plain, set};
use super::overrides::Effective;
use super::resources::requirements;
use super::secret::SecretData;
use super::volumes::{empty_dir, mount, secret_items};
use super::{Parts, SpecError, DAEMON_CONTAINER};
use crate::config::kubernetes::{KubernetesConfig, ResourceTarget, DEFAULT_DIND_IMAGE};
use crate::gitlab::{JobResponse, JobService};
use k8s_openapi::api::core::v1::{Container, ContainerPort, ExecAction, Probe, SecurityContext};
use kiln_dind_certs::JobCerts;

/// Where the daemon image (`DOCKER_TLS_CERTDIR`) and the client look for certificates.
pub const CERT_DIR: &str = "/certs";
/// The client half, in `build` (`DOCKER_CERT_PATH`) and in the daemon (for its probe).
pub const CLIENT_CERT_DIR: &str = "/certs/client";
/// The daemon's address as `build` sees it (`docker` resolves to 127.0.0.1 via hostAliases).
pub const DOCKER_HOST: &str = "tcp://docker:2376";

const SERVER_VOLUME: &str = "kiln-docker-certs-server";
const CLIENT_VOLUME: &str = "kiln-docker-certs-client";
const DATA_VOLUME: &str = "kiln-docker-data";

/// The job's daemon service: the first whose image name contains `dind`.
pub(super) fn daemon_service(job: &JobResponse) -> Option<(usize, &JobService)> {
    job.services
        .iter()
        .enumerate()
        .find(|(_, s)| s.name.contains("dind"))
}

/// The exec probe that says the daemon is up: a `docker version` over the same mutual TLS,
/// by the same name, as `build` will use. A tcpSocket probe would pass as soon as the port
/// listens, before the daemon answers; the `docker:*-dind` images ship the CLI.
fn daemon_probe(period: i32, timeout_s: u64) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(
                [
                    "docker",
                    &format!("--host={DOCKER_HOST}"),
                    "--tlsverify",
                    &format!("--tlscacert={CLIENT_CERT_DIR}/ca.pem"),
                    &format!("--tlscert={CLIENT_CERT_DIR}/cert.pem"),
                    &format!("--tlskey={CLIENT_CERT_DIR}/key.pem"),
                    "version",
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(
            i32::try_from(timeout_s / period as u64)
                .unwrap_or(60)
                .max(1),
        ),
        ..Default::default()
    }
}

/// The readiness wait `step_script.sh` starts with when the daemon is a plain container
/// (`native_sidecars = false`): nothing orders the containers then. It uses the docker CLI
/// when the image has one, else bash's `/dev/tcp` (only that the port listens), and gives
/// up after `timeout_s` seconds.
pub(super) fn wait_prefix(timeout_s: u64) -> String {
    format!(
        "kiln_wait=0\n\
         until if command -v docker >/dev/null 2>&1; then docker version >/dev/null 2>&1; \
         else (exec 3<>/dev/tcp/docker/2376) 2>/dev/null; fi; do\n  \
         kiln_wait=$((kiln_wait + 1))\n  \
         if [ \"$kiln_wait\" -ge {timeout_s} ]; then echo 'The Docker daemon did not answer on {DOCKER_HOST} within {timeout_s}s' >&2; exit 1; fi\n  \
         sleep 1\n\
         done\n"
    )
}

/// Fills `parts` for dind mode.
pub(super) fn shape(
    job: &JobResponse,
    k: &KubernetesConfig,
    eff: &Effective,
    certs: Option<&JobCerts>,
    secret_name: &str,
    data: &mut SecretData,
    parts: &mut Parts,
) -> Result<(), SpecError> {
    if !k.privileged {
        return Err(SpecError::NotPrivileged);
    }
    let certs = certs.ok_or(SpecError::MissingCerts)?;
    let key_mode = if parts.fs_group.is_some() {
        0o440
    } else {
        0o400
    };
    let mut server = Vec::new();
    let mut client = Vec::new();
    // Only the server and client halves: `ca/cert.pem` is in both already.
    for f in certs
        .files(false)
        .into_iter()
        .filter(|f| !f.path.starts_with("ca/"))
    {
        let key = data.put("", &f.secret_key(), f.contents.as_bytes());
        let mode = if f.private { key_mode } else { 0o444 };
        let (dir, file) = f.path.split_once('/').unwrap_or(("", f.path));
        match dir {
            "server" => server.push((key, file.to_owned(), mode)),
            "client" => client.push((key, file.to_owned(), mode)),
            _ => {}
        }
    }
    parts
        .volumes
        .push(secret_items(SERVER_VOLUME, secret_name, &server));
    parts
        .volumes
        .push(secret_items(CLIENT_VOLUME, secret_name, &client));
    parts.volumes.push(empty_dir(DATA_VOLUME));

    let native = k.native_sidecars.unwrap_or(true);
    let poll_timeout = k.poll_timeout.unwrap_or(super::DEFAULT_POLL_TIMEOUT);
    let service = daemon_service(job);
    let default_service;
    let (image, svc) = match service {
        Some((_, s)) => (s.name.clone(), s),
        None => {
            default_service = JobService::default();
            (
                k.dind_image
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DIND_IMAGE.into()),
                &default_service,
            )
        }
    };
    let mut aliases = vec!["docker".to_owned()];
    if service.is_some() {
        aliases.extend(svc.aliases());
    }
    for a in aliases {
        if !parts.localhost_aliases.contains(&a) {
            parts.localhost_aliases.push(a);
        }
    }
    let mut env = Vec::new();
    for v in &svc.variables {
        set(&mut env, plain(&v.key, &v.value));
    }
    // The daemon's TLS is kiln's, whatever the job's variables say.
    set(&mut env, plain("DOCKER_TLS_CERTDIR", CERT_DIR));
    let probe = daemon_probe(1, poll_timeout);
    let daemon = Container {
        name: DAEMON_CONTAINER.into(),
        image: Some(image),
        command: (!svc.entrypoint.is_empty()).then(|| svc.entrypoint.clone()),
        args: (!svc.command.is_empty()).then(|| svc.command.clone()),
        env: Some(env),
        image_pull_policy: svc
            .pull_policy
            .first()
            .and_then(|p| crate::config::kubernetes::pull_policy(p))
            .map(str::to_owned)
            .or_else(|| parts.pull_policy.clone()),
        ports: Some(vec![ContainerPort {
            container_port: 2376,
            name: Some("docker-tls".into()),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: requirements(eff, ResourceTarget::Service),
        restart_policy: native.then(|| "Always".into()),
        // The one privileged container; as root whatever the pod's default user is.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            ..Default::default()
        }),
        startup_probe: native.then(|| probe.clone()),
        readiness_probe: (!native).then_some(probe),
        volume_mounts: Some(vec![
            mount(SERVER_VOLUME, &format!("{CERT_DIR}/server"), true),
            mount(CLIENT_VOLUME, CLIENT_CERT_DIR, true),
            mount(DATA_VOLUME, "/var/lib/docker", false),
        ]),
        ..Default::default()
    };
    if native {
        parts.init_after_clone.push(daemon);
    } else {
        parts.containers.push(daemon);
    }

    let b = &mut parts.build;
    b.image = Some(if !job.image.name.is_empty() {
        job.image.name.clone()
    } else {
        k.image
            .clone()
            .unwrap_or_else(|| crate::config::kubernetes::DEFAULT_DIND_BUILD_IMAGE.into())
    });
    if !job.image.entrypoint.is_empty() {
        parts.warnings.push(
            "image:entrypoint ignored: the build container runs a shell that stages are exec'd in"
                .into(),
        );
    }
    for (k, v) in [
        ("DOCKER_HOST", DOCKER_HOST),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", CLIENT_CERT_DIR),
        ("DOCKER_TLS_CERTDIR", CERT_DIR),
        ("KILN_MODE", "dind"),
    ] {
        set(&mut parts.env, plain(k, v));
    }
    parts
        .build_mounts
        .push(mount(CLIENT_VOLUME, CLIENT_CERT_DIR, true));
    b.security_context = Some(SecurityContext {
        privileged: Some(false),
        ..Default::default()
    });
    parts.native = native;
    Ok(())
}
