//! `kiln build --backend docker`: the flags that pick the backend and find the daemon, and the
//! hand-over of a parsed `kiln build` to [`kiln::dind::build`].

use super::build::{build_args, BuildArgs};
use super::Usage;
use clap::{Args, ValueEnum};
use kiln::dind::build::{DockerBuild, DockerfileSource};
use kiln::dind::EndpointFlags;
use kiln::registry::Environment;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Who runs the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// kiln itself, without a daemon.
    Native,
    /// A Docker daemon (DOCKER_HOST), over its API.
    Docker,
}

/// Backend flags of `kiln build`.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Who runs the build: native (kiln itself) or docker (a Docker daemon).
    #[arg(long, value_enum, default_value_t = Backend::Native)]
    pub backend: Backend,
    /// Docker daemon address (unix:///path or tcp://host:port); default $DOCKER_HOST.
    #[arg(long, value_name = "ADDRESS")]
    pub docker_host: Option<String>,
    /// Directory with ca.pem, cert.pem, key.pem; default $DOCKER_CERT_PATH.
    #[arg(long, value_name = "DIR")]
    pub docker_cert_path: Option<PathBuf>,
    /// Use TLS and verify the daemon; default: whether $DOCKER_TLS_VERIFY is set.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub docker_tls_verify: Option<bool>,
    /// Network mode for RUN steps in the daemon (host, none, ...).
    #[arg(long, value_name = "MODE")]
    pub docker_network: Option<String>,
    /// Seconds to wait for the daemon to answer /_ping.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub docker_ready_timeout: u64,
}

/// Runs `args` through the Docker daemon.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    if !args.context.is_dir() {
        return Err(Usage(format!(
            "--context {}: not a directory",
            args.context.display()
        ))
        .into());
    }
    for (set, flag) in [
        (args.tar_path.is_some(), "--tar-path"),
        (args.oci_layout_path.is_some(), "--oci-layout-path"),
        (args.cache_repo.is_some(), "--cache-repo"),
        (args.dry_run, "--dry-run"),
    ] {
        if set {
            return Err(Usage(format!("{flag} is not available with --backend docker")).into());
        }
    }
    let dockerfile = match args.dockerfile.as_deref() {
        Some("-") => {
            let source = super::build::read_dockerfile(args)?;
            DockerfileSource::Text {
                name: source.name,
                text: source.text,
            }
        }
        Some(given) => {
            let given = PathBuf::from(given);
            DockerfileSource::Path(if given.is_absolute() || given.exists() {
                given
            } else {
                args.context.join(given)
            })
        }
        None => DockerfileSource::Path(args.context.join("Dockerfile")),
    };
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let b = &args.backend;
    let req = DockerBuild {
        endpoint: EndpointFlags {
            host: b.docker_host.clone(),
            tls_verify: b.docker_tls_verify,
            cert_path: b.docker_cert_path.clone(),
        },
        ready_timeout: Duration::from_secs(b.docker_ready_timeout),
        context: args.context.clone(),
        dockerfile,
        destinations: args.destination.clone(),
        build_args: build_args(&args.build_arg)?,
        target: args.target.clone(),
        labels,
        network: b.docker_network.clone(),
        platform: args.custom_platform.clone(),
        push: !args.no_push.unwrap_or(false),
        digest_file: args.digest_file.clone(),
        image_name_with_digest_file: args.image_name_with_digest_file.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut print = |line: &str| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
    };
    let outcome = rt
        .block_on(kiln::dind::build::build(
            &req,
            &Environment::from_process(),
            &mut print,
        ))
        .map_err(kiln::Error::from)?;
    if let Some(id) = outcome.image_id {
        println!("image {id}");
    }
    Ok(())
}
