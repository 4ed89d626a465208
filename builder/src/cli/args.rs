//! `kiln build`'s flags and the parsing both backends share: where the Dockerfile is, build
//! arguments, labels and the platform. A leaf: the backends import it, it imports neither.

use super::Usage;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln::path_io::IoAt;
use kiln::plan::{self, Platform};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

/// `kiln build` flags; names follow kaniko's so a kaniko job switches by changing its command.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory.
    #[arg(short = 'c', long, default_value = ".")]
    pub context: PathBuf,
    /// Dockerfile path: `<context>/Dockerfile` when not given; a relative path is looked up in the
    /// current directory, then in the context (as kaniko does); `-` reads stdin.
    #[arg(short = 'f', long)]
    pub dockerfile: Option<String>,
    /// Image to push to (repeat for several tags).
    #[arg(short = 'd', long)]
    pub destination: Vec<String>,
    /// Build argument NAME=value (NAME alone takes the value from the environment).
    #[arg(long = "build-arg", value_name = "NAME=value")]
    pub build_arg: Vec<String>,
    /// Stage to build (the last one by default).
    #[arg(long)]
    pub target: Option<String>,
    /// Label KEY=value added to the image.
    #[arg(long, value_name = "KEY=value")]
    pub label: Vec<String>,
    /// Print the stages and steps the build would run, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Look steps up in the step cache (`--cache-dir`, `--cache-repo`) and record them there:
    /// kaniko's layer cache.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cache: Option<bool>,
    /// Registry repository holding cached layers.
    #[arg(long)]
    pub cache_repo: Option<String>,
    /// Local directory for cached layers and base images.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// How long cached layers stay valid (e.g. 336h).
    #[arg(long)]
    pub cache_ttl: Option<String>,
    /// Build without pushing.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_push: Option<bool>,
    /// Write the image as a `docker load` tarball.
    #[arg(long)]
    pub tar_path: Option<PathBuf>,
    /// Write the image as an OCI layout directory.
    #[arg(long)]
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image's digest to this file.
    #[arg(long)]
    pub digest_file: Option<PathBuf>,
    /// Write `image@digest` lines to this file.
    #[arg(long)]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Make the image reproducible (timestamps from SOURCE_DATE_EPOCH or 0).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub reproducible: Option<bool>,
    /// Talk plain HTTP to every registry.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: Option<bool>,
    /// Talk plain HTTP to this registry (repeatable).
    #[arg(long)]
    pub insecure_registry: Vec<String>,
    /// Do not verify registries' TLS certificates.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub skip_tls_verify: Option<bool>,
    /// Mirror for Docker Hub (repeatable).
    #[arg(long)]
    pub registry_mirror: Vec<String>,
    /// How many times to retry a failed push.
    #[arg(long)]
    pub push_retry: Option<u32>,
    /// Platform to build for (os/arch[/variant]).
    #[arg(long, alias = "platform")]
    pub custom_platform: Option<String>,
    /// Layer compression: gzip or zstd.
    #[arg(long)]
    pub compression: Option<String>,
    /// Append one layer to the base image: everything the build adds, merged (steps still run,
    /// and are cached, one by one).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub single_snapshot: Option<bool>,
    /// The most a base or cached layer may expand to when extracted, in bytes or with a K, M,
    /// G or T suffix (powers of 1024): a guard against decompression bombs [default: 64G].
    #[arg(long, value_name = "SIZE")]
    pub max_layer_size: Option<String>,
    /// Paths left out of snapshots (repeatable).
    #[arg(long)]
    pub ignore_path: Vec<PathBuf>,
    /// Log level: panic, fatal, error, warn, info, debug, trace.
    #[arg(short = 'v', long, default_value = "info")]
    pub verbosity: String,
    /// Pull base images over plain HTTP (kaniko's `--insecure-pull`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure_pull: Option<bool>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`.
    #[arg(long, value_name = "id=NAME,src=FILE")]
    pub secret: Vec<String>,
    /// How RUN steps are isolated: auto, rootless, chroot or none (kaniko's way, inside a
    /// container only). kiln-runner's rootless pods set it through the environment.
    #[arg(long, env = "KILN_ISOLATION", default_value = "auto")]
    pub isolation: String,
    /// RUN steps' network: host (default) or none.
    #[arg(long, default_value = "host")]
    pub network: String,
    /// At most this many processes in a RUN step (a cgroup's `pids.max`; 0: no limit).
    #[arg(long, default_value_t = kiln::sandbox::DEFAULT_PIDS_LIMIT)]
    pub pids_limit: u32,
    /// CA certificates (PEM) to trust for registries' TLS: `FILE` or kaniko's `HOST=FILE`
    /// (repeatable).
    #[arg(long, value_name = "[HOST=]FILE")]
    pub registry_certificate: Vec<String>,
    /// Image format: oci (default) or docker.
    #[arg(long, default_value = "oci")]
    pub format: String,
    /// Progress output (BuildKit's flag): auto (tty on a terminal outside CI, else plain), plain
    /// (one line per event, timestamped when not on a terminal) or tty (a status line with the
    /// running step and the layers moving, redrawn in place).
    #[arg(long, default_value = "auto")]
    pub progress: kiln::executor::ProgressMode,
    /// `--timings`.
    #[command(flatten)]
    pub timings: TimingsArg,
    /// Who runs the build, and where the Docker daemon is.
    #[command(flatten)]
    pub backend: BackendArgs,
}

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

/// Where the Dockerfile is, found the way kaniko finds it.
pub enum DockerfileAt {
    /// A file (checked not to be a symlink when it is the context's own).
    File(PathBuf),
    /// `--dockerfile -`.
    Stdin,
}

/// Finds the Dockerfile: `<context>/Dockerfile` when not given; a relative name is looked up
/// in the current directory, then in the context; `-` is stdin.
pub fn find_dockerfile(args: &BuildArgs) -> anyhow::Result<DockerfileAt> {
    let Some(given) = &args.dockerfile else {
        return in_context(args.context.join("Dockerfile"));
    };
    if given == "-" {
        return Ok(DockerfileAt::Stdin);
    }
    let given = PathBuf::from(given);
    // A relative name is the context's file (kaniko's `--dockerfile Dockerfile --context .`),
    // whether found from here or in the context; an absolute one is the user's own choice.
    if given.is_absolute() {
        Ok(DockerfileAt::File(given))
    } else if given.exists() {
        in_context(given)
    } else {
        in_context(args.context.join(&given))
    }
}

/// A Dockerfile found in the context, refusing a symlink there.
fn in_context(path: PathBuf) -> anyhow::Result<DockerfileAt> {
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(
            kiln::Error::from(kiln::context::ContextError::SymlinkedDockerfile { path }).into(),
        );
    }
    Ok(DockerfileAt::File(path))
}

/// A Dockerfile's text and the name to show in messages.
pub struct Source {
    /// The name shown in messages (`<stdin>` for stdin).
    pub name: PathBuf,
    /// The Dockerfile.
    pub text: String,
}

/// Finds and reads the Dockerfile.
pub fn read_dockerfile(args: &BuildArgs) -> anyhow::Result<Source> {
    match find_dockerfile(args)? {
        DockerfileAt::Stdin => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Dockerfile from stdin")?;
            Ok(Source {
                name: PathBuf::from("<stdin>"),
                text,
            })
        }
        DockerfileAt::File(path) => {
            let text = std::fs::read_to_string(&path)
                .at(&path)
                .map_err(kiln::Error::Read)?;
            Ok(Source { name: path, text })
        }
    }
}

/// `NAME=value` pairs; `NAME` alone takes the value from the environment (as docker does).
pub fn build_args(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(kiln::Error::from(plan::PlanError::BadBuildArg(a.clone())).into())
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// `--label KEY=value` pairs, in the order given; a bare `KEY` is refused (kaniko's rule).
pub fn labels(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Usage(format!("--label {l:?}: expected KEY=value")).into()),
        })
        .collect()
}

/// `--custom-platform`, when given.
pub fn platform(raw: Option<&str>) -> anyhow::Result<Option<Platform>> {
    raw.map(|p| Platform::parse(p).map_err(|e| Usage(format!("--custom-platform: {e}")).into()))
        .transpose()
}

/// Build arguments, `--target` and `--custom-platform` as the planner takes them.
pub fn plan_options(args: &BuildArgs) -> anyhow::Result<plan::Options> {
    let mut opts = plan::Options {
        build_args: build_args(&args.build_arg)?,
        target: args.target.clone(),
        ..plan::Options::default()
    };
    if let Some(p) = platform(args.custom_platform.as_deref())? {
        opts.target_platform = p;
    }
    Ok(opts)
}

/// `--timings`, shared by `kiln build` and `kiln demo`.
#[derive(Debug, Args)]
pub struct TimingsArg {
    /// At the end, print where the time went on standard error: per step, the seconds spent
    /// pulling, extracting, running, diffing, compressing, uploading, writing the cache and
    /// waiting, with totals and the wall time, as a table (`--timings`) or one line of JSON
    /// (`--timings=json`).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "table",
        value_name = "FORMAT",
        value_parser = ["table", "json"]
    )]
    pub timings: Option<String>,
}

/// Refuses a `--context` that is not a directory (both backends need one).
pub fn check_context(args: &BuildArgs) -> anyhow::Result<()> {
    if args.context.is_dir() {
        Ok(())
    } else {
        Err(Usage(format!(
            "--context {}: not a directory",
            args.context.display()
        ))
        .into())
    }
}
