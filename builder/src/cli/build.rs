//! `kiln build`: kaniko's flags; `--dry-run` prints what the front end understood.

use super::Usage;
use anyhow::Context as _;
use clap::Args;
use kiln::context::dockerignore::DockerIgnore;
use kiln::context::walk::BuildContext;
use kiln::dockerfile;
use kiln::plan::{self, NoBaseImages, Options, Platform};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

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
    /// Use the layer cache.
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
    pub progress: kiln::build::ProgressMode,
    /// `--timings`.
    #[command(flatten)]
    pub timings: TimingsArg,
    /// Who runs the build, and where the Docker daemon is.
    #[command(flatten)]
    pub backend: super::docker_backend::BackendArgs,
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

/// A Dockerfile's text and the name to show in messages.
pub struct Source {
    pub name: PathBuf,
    pub text: String,
}

/// Finds and reads the Dockerfile the way kaniko does.
pub fn read_dockerfile(args: &BuildArgs) -> anyhow::Result<Source> {
    let Some(given) = &args.dockerfile else {
        return read_in_context(args.context.join("Dockerfile"));
    };
    if given == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the Dockerfile from stdin")?;
        return Ok(Source {
            name: PathBuf::from("<stdin>"),
            text,
        });
    }
    let given = PathBuf::from(given);
    // A relative name is the context's file (kaniko's `--dockerfile Dockerfile --context .`),
    // whether found from here or in the context; an absolute one is the user's own choice.
    if given.is_absolute() {
        read(given)
    } else if given.exists() {
        read_in_context(given)
    } else {
        read_in_context(args.context.join(&given))
    }
}

/// Reads a Dockerfile found in the context, refusing a symlink there.
fn read_in_context(path: PathBuf) -> anyhow::Result<Source> {
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(kiln::context::ContextError::SymlinkedDockerfile { path }.into());
    }
    read(path)
}

fn read(path: PathBuf) -> anyhow::Result<Source> {
    let text = std::fs::read_to_string(&path).map_err(|source| kiln::Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(Source { name: path, text })
}

/// `NAME=value` pairs; `NAME` alone takes the value from the environment (as docker does).
pub fn build_args(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in raw {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            Some(_) => return Err(plan::PlanError::BadBuildArg(a.clone()).into()),
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// Reads, parses and plans the build.
pub fn make_plan(args: &BuildArgs, source: &Source) -> anyhow::Result<plan::Plan> {
    let df = dockerfile::parse(&source.text, &source.name)?;
    let mut opts = Options {
        build_args: build_args(&args.build_arg)?,
        target: args.target.clone(),
        ..Options::default()
    };
    if let Some(p) = &args.custom_platform {
        opts.target_platform =
            Platform::parse(p).map_err(|e| Usage(format!("--custom-platform: {e}")))?;
    }
    for w in &df.warnings {
        eprintln!(
            "kiln: warning: {}:{}: {}",
            source.name.display(),
            w.line,
            w.message
        );
    }
    Ok(plan::plan(&df, &source.name, &opts, &NoBaseImages)?)
}

/// `kiln build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    if args.backend.backend == super::docker_backend::Backend::Docker {
        return super::docker_backend::run(args);
    }
    if !args.context.is_dir() {
        return Err(Usage(format!(
            "--context {}: not a directory",
            args.context.display()
        ))
        .into());
    }
    let source = read_dockerfile(args)?;
    let plan = make_plan(args, &source)?;
    if args.dry_run {
        print!(
            "{}",
            plan::display::render(&plan, &display_name(&source.name))
        );
        let ignore = DockerIgnore::load_for_dockerfile(&args.context, &source.name)?;
        let context = BuildContext::with_ignore(&args.context, ignore)?;
        println!(
            "\ncontext {}: {} paths visible to COPY and ADD ({} .dockerignore patterns)",
            args.context.display(),
            context.entries().len(),
            context.ignore().patterns().len()
        );
        return Ok(());
    }
    let opts = super::build_options::options(args, source, &plan)?;
    let progress = kiln::build::Progress::for_stderr(args.progress);
    let outcome = kiln::build::build(&opts, progress)?;
    match args.timings.timings.as_deref() {
        Some("json") => eprintln!("{}", outcome.timings.json()),
        Some(_) => eprint!("{}", outcome.timings.table()),
        None => {}
    }
    println!("{}", outcome.image.digest);
    Ok(())
}

fn display_name(p: &Path) -> String {
    p.display().to_string()
}
