//! Executing a build plan: each stage's steps in order (stages of one wave at the same time),
//! metadata steps applied to the config, RUN in the sandbox over an overlay of the parent's
//! layers, COPY/ADD into an empty upper directory, each upper directory written as a layer, the
//! step cache consulted before any step runs, and the image exported or pushed at the end.
//!
//! Nothing is downloaded before a step needs files: FROM reads the base's manifest and config
//! only, and a push mounts or finds the base's layers in the registry.

mod background;
mod base;
pub mod config_step;
mod copy_step;
pub mod error;
pub mod history;
mod index;
mod layers;
mod output;
pub mod progress;
mod render;
mod run_step;
mod squash;
mod stage;
mod status;
pub mod timings;

pub use base::{BaseResolver, ResolvedBase};
pub use error::BuildError;
pub use layers::LayerRef;
pub use progress::{Progress, ProgressMode};
pub use timings::{Phase, Timings};

use crate::cache::{LocalCache, RepoCache};
use crate::cache_dir::CacheDir;
use crate::image::{BuiltImage, ImageFormat};
use crate::layer::LayerOptions;
use crate::path_io::IoAt;
use crate::plan::{self, Plan};
use crate::registry::{PushReport, Reference, RegistryClient, RegistryConfig, Repository};
use crate::sandbox::{Isolation, Network};
use crate::snapshot::{self, ExtractedLayers};
use kiln_registry_auth::CredentialResolver;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a `RUN --mount=type=secret` gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file's content.
    File(PathBuf),
    /// An environment variable of kiln's process.
    Env(String),
}

/// A `--secret id=...,src=...|env=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The id RUN mounts refer to.
    pub id: String,
    /// Its value's source.
    pub source: SecretSource,
}

/// Everything a build needs besides the Dockerfile's steps.
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile's path (as shown in messages; also where `.dockerignore` is looked up).
    pub dockerfile: PathBuf,
    /// The Dockerfile, parsed (once: its warnings are the caller's to show).
    pub parsed: crate::dockerfile::Dockerfile,
    /// `--insecure-pull`: images the build pulls (bases, `COPY --from`, mounts) come over plain
    /// HTTP.
    pub insecure_pull: bool,
    /// Build args, target, platforms.
    pub plan: plan::Options,
    /// The image's names: where it is pushed, and its tags in a tarball or OCI layout.
    pub destinations: Vec<Reference>,
    /// Whether to push to the destinations (`--no-push` clears it).
    pub push: bool,
    /// `--label` pairs added to the final image.
    pub labels: Vec<(String, String)>,
    /// Whether to look steps up in the step cache (`--cache`).
    pub cache: bool,
    /// `--cache-repo`.
    pub cache_repo: Option<Repository>,
    /// `--cache-dir`: the cache directory shared by builds ([`crate::cache_dir`]).
    pub cache_dir: PathBuf,
    /// `--cache-ttl`.
    pub cache_ttl: Duration,
    /// `--tar-path`.
    pub tar_path: Option<PathBuf>,
    /// `--oci-layout-path`.
    pub oci_layout_path: Option<PathBuf>,
    /// `--digest-file`.
    pub digest_file: Option<PathBuf>,
    /// `--image-name-with-digest-file`.
    pub image_name_with_digest_file: Option<PathBuf>,
    /// `--reproducible`: the time every timestamp is set to.
    pub reproducible: Option<i64>,
    /// `--single-snapshot`: the layers the build adds above the image base become one.
    pub single_snapshot: bool,
    /// `--max-layer-size`: the most bytes one layer may expand to when extracted.
    pub max_layer_bytes: u64,
    /// Registry client settings.
    pub registry: RegistryConfig,
    /// Registry credentials.
    pub credentials: CredentialResolver,
    /// Compression and the like for new layers.
    pub layer: LayerOptions,
    /// OCI (default) or Docker schema 2.
    pub format: ImageFormat,
    /// How RUN steps are isolated.
    pub isolation: Isolation,
    /// RUN's network unless a step asks otherwise.
    pub network: Network,
    /// RUN steps' process limit.
    pub pids_limit: Option<u32>,
    /// `--secret`s.
    pub secrets: Vec<Secret>,
}

/// What a build made.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The final image (config and manifest in the local blob store).
    pub image: BuiltImage,
    /// What the push did, when there was one.
    pub push: Option<PushReport>,
    /// Steps run.
    pub steps_run: usize,
    /// Steps found in the cache.
    pub steps_cached: usize,
    /// Bytes of layer blobs downloaded (what the summary says): image configs, manifests and
    /// layer indexes are not counted.
    pub downloaded: u64,
    /// Where the time went, step by step.
    pub timings: Timings,
}

/// A build in progress: what every stage shares.
pub(crate) struct Build<'a> {
    pub opts: &'a BuildOptions,
    pub file: String,
    pub plan: Plan,
    pub progress: Progress,
    pub runtime: Arc<tokio::runtime::Runtime>,
    pub client: RegistryClient,
    pub bases: BaseResolver,
    pub layers: layers::Layers,
    /// `opts.cache_dir`, opened.
    pub cache_dir: CacheDir,
    pub local: Option<LocalCache>,
    pub repo: Option<RepoCache>,
    /// Steps' writable roots and their commits, by the mode chosen for this build.
    pub snapshotter: snapshot::Snapshotter,
    /// RUN steps' isolation as [`sandbox::choose`](crate::sandbox::choose) decided it.
    pub isolation: Isolation,
    pub context: crate::copy::ContextView,
    pub counts: std::sync::Mutex<(usize, usize)>,
    /// Layer indexes this build has read or looked for (`None`: none to be had), and those
    /// it has published: each COPY step and each stage would otherwise decode or ask again.
    pub indexes: index::Seen,
    /// Steps started so far, numbering progress lines.
    pub steps: std::sync::atomic::AtomicUsize,
    /// Each step's phase times.
    pub timings: Arc<timings::Recorder>,
    /// Uploads and cache writes running alongside the steps.
    pub background: background::Background,
}

/// Builds the image `opts` describe, printing progress to `progress`.
pub fn build(opts: &BuildOptions, progress: Progress) -> Result<BuildOutcome, crate::Error> {
    let result = build_with(opts, progress.clone());
    // An error goes below on a line of its own, not after the status line.
    progress.settle();
    result
}

fn build_with(opts: &BuildOptions, progress: Progress) -> Result<BuildOutcome, crate::Error> {
    let recorder = timings::Recorder::new();
    let file = opts.dockerfile.display().to_string();
    let cache_dir = CacheDir::open(&opts.cache_dir)?;
    if let Some(note) = cache_dir.tightened() {
        progress.line(&note);
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .at(std::path::Path::new("tokio runtime"))?,
    );
    let client = RegistryClient::new(opts.registry.clone(), opts.credentials.clone())
        .map_err(|e| BuildError::failed("registry client", e))?;
    let store = cache_dir.blob_store()?;
    let bases = BaseResolver::new(client.clone(), runtime.clone(), store.clone())
        .with_insecure_pull(opts.insecure_pull)
        .with_cache_dir(cache_dir.clone(), progress.clone());
    let plan = plan::plan(&opts.parsed, &opts.dockerfile, &opts.plan, &bases)?;
    for w in &plan.warnings {
        match w.line {
            Some(l) => progress.line(&format!("warning: {file}:{l}: {}", w.message)),
            None => progress.line(&format!("warning: {}", w.message)),
        }
    }
    let cache = ExtractedLayers::open(&cache_dir)
        .map_err(|e| BuildError::failed("extracted layers", e))?
        .with_max_layer_bytes(opts.max_layer_bytes);
    let chosen = choose_isolation(opts, &plan, &file, &progress)?;
    let isolation = chosen.unwrap_or(opts.isolation);
    let mode = if chosen.is_none() {
        // Only RUN steps use the snapshotter: a build without any need not try a mount.
        snapshot::Mode::TreeDiff {
            reason: "no RUN steps".into(),
        }
    } else if isolation == Isolation::Unconfined {
        // Unconfined steps run with no mount namespace: an overlay for them would be mounted
        // in the container's own, visible to everything in it and left behind if kiln dies.
        // They get a directory copy of the parent and a tree diff, as kaniko snapshots, and
        // the overlay probe (which could pass where kiln has CAP_SYS_ADMIN) is not asked.
        progress.line(
            "RUN steps are snapshotted by comparing the whole tree: isolation \"none\" has no \
             mount namespace to mount an overlay in",
        );
        snapshot::Mode::TreeDiff {
            reason: "isolation \"none\"".into(),
        }
    } else {
        let mode = snapshot::probe(&cache_dir);
        if let snapshot::Mode::TreeDiff { reason } = &mode {
            progress.line(&format!(
                "overlay cannot be mounted here ({reason}): RUN steps are snapshotted by \
                 comparing the whole tree, which is slower"
            ));
        }
        mode
    };
    let local = if opts.cache {
        Some(LocalCache::open(&cache_dir).map_err(|e| BuildError::failed("local cache", e))?)
    } else {
        None
    };
    let repo = match (&opts.cache_repo, opts.cache) {
        (Some(r), true) => Some(
            RepoCache::new(client.clone(), r.clone(), opts.cache_ttl)
                .with_platform(opts.plan.target_platform.clone()),
        ),
        _ => None,
    };
    let ignore = crate::context::dockerignore::DockerIgnore::load_for_dockerfile(
        &opts.context,
        &opts.dockerfile,
    )?;
    let context = crate::copy::ContextView::new(crate::context::walk::BuildContext::with_ignore(
        &opts.context,
        ignore,
    )?);
    let snapshotter =
        snapshot::Snapshotter::new(mode, cache_dir.clone(), cache.clone(), store.clone());
    let layers = layers::Layers::new(
        cache,
        store,
        client.clone(),
        runtime.clone(),
        progress.transfers(),
    );
    // Pushing layers as they are made only pays when they are the image's own: a squashed
    // image replaces them with one.
    let early = if opts.push && !opts.single_snapshot {
        opts.destinations.clone()
    } else {
        Vec::new()
    };
    let background = background::Background::new(
        runtime.clone(),
        client.clone(),
        layers.store.clone(),
        progress.clone(),
        early,
        &plan,
    );
    let b = Build {
        opts,
        file,
        plan,
        progress,
        layers,
        runtime,
        client,
        bases,
        cache_dir,
        local,
        repo,
        snapshotter,
        isolation,
        context,
        counts: std::sync::Mutex::new((0, 0)),
        indexes: index::Seen::default(),
        steps: std::sync::atomic::AtomicUsize::new(0),
        timings: recorder,
        background,
    };
    let result = stage::run_all(&b).and_then(|done| output::finish(&b, done));
    if result.is_err() {
        let clock = b.timings.row(0, "output", "(build failed)");
        b.background.abandon(&clock);
    }
    Ok(result?)
}

/// The isolation RUN steps get, decided before any step runs (a mode that cannot work here is
/// refused now, not at the first RUN) and said in the log; `None` for a build without RUN
/// steps, which asks nothing of the machine.
fn choose_isolation(
    opts: &BuildOptions,
    plan: &Plan,
    file: &str,
    progress: &Progress,
) -> Result<Option<Isolation>, crate::Error> {
    use crate::dockerfile::instructions::{Instruction, Network as StepNetwork};
    let runs: Vec<(usize, &crate::dockerfile::instructions::Run)> = plan
        .order
        .iter()
        .flat_map(|&i| &plan.stages[i].steps)
        .filter_map(|s| match &s.instruction {
            Instruction::Run(r) => Some((s.start_line, r)),
            _ => None,
        })
        .collect();
    if runs.is_empty() {
        return Ok(None);
    }
    let chosen = crate::sandbox::choose(opts.isolation)?;
    progress.line(&format!(
        "isolation: {} ({})",
        chosen.isolation.name(),
        chosen.reason
    ));
    if chosen.isolation == Isolation::Unconfined {
        progress.line(
            "isolation none: RUN steps get no /proc or /sys (kiln cannot mount them without a \
             mount namespace)",
        );
        // Without namespaces there is no network to take away and nothing to mount into.
        let refused = runs.iter().find_map(|(line, r)| {
            if !r.mounts.is_empty() {
                Some((*line, "RUN --mount"))
            } else if r.network == StepNetwork::None
                || (r.network == StepNetwork::Default && opts.network == Network::None)
            {
                Some((*line, "network \"none\""))
            } else {
                None
            }
        });
        if let Some((line, what)) = refused {
            return Err(crate::sandbox::SandboxError::IsolationUnavailable {
                mode: "none",
                why: format!(
                    "{file}:{line} needs {what}, which isolation \"none\" (no namespaces) cannot \
                     give"
                ),
            }
            .into());
        }
    }
    Ok(Some(chosen.isolation))
}
