//! `kiln build --backend docker`: the flags that pick the backend and find the daemon, and the
//! hand-over of a parsed `kiln build` to [`kiln::dind::backend`].

use super::args::{self, BuildArgs, DockerfileAt};
use super::Usage;
use kiln::dind::backend::{DockerBuild, DockerfileSource};
use kiln::dind::EndpointFlags;
use kiln::registry::Environment;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

/// Runs `args` through the Docker daemon.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    args::check_context(args)?;
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
    let dockerfile = match args::find_dockerfile(args)? {
        DockerfileAt::File(path) => DockerfileSource::Path(path),
        DockerfileAt::Stdin => {
            let source = args::read_dockerfile(args)?;
            DockerfileSource::Text {
                name: source.name,
                text: source.text,
            }
        }
    };
    let labels: BTreeMap<String, String> = args::labels(&args.label)?.into_iter().collect();
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
        build_args: args::build_args(&args.build_arg)?,
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
        .block_on(kiln::dind::backend::build(
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
