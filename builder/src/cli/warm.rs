//! `kiln warm`: fetches base images into the cache directory ahead of builds (kaniko's warmer
//! flags: `--image`, `--dockerfile`, `--cache-dir`, `--force`, `--build-arg`).

use super::args::{build_args, platform};
use super::Usage;
use anyhow::Context as _;
use clap::Args;
use kiln::cache::{self, WarmOptions};
use kiln::cache_dir::CacheDir;
use kiln::plan::Platform;
use kiln::registry::{CredentialResolver, Environment, Reference, RegistryClient, RegistryConfig};
use std::path::PathBuf;

/// `kiln warm` flags.
#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Image to cache (repeat for several).
    #[arg(short = 'i', long)]
    pub image: Vec<String>,
    /// Dockerfile whose base images to cache (repeat for several).
    #[arg(short = 'd', long)]
    pub dockerfile: Vec<PathBuf>,
    /// Build argument NAME=value for the Dockerfiles' FROM lines.
    #[arg(long = "build-arg", value_name = "NAME=value")]
    pub build_arg: Vec<String>,
    /// Cache directory (else $KILN_CACHE_DIR, /var/cache/kiln for root, ~/.cache/kiln).
    #[arg(short = 'c', long)]
    pub cache_dir: Option<PathBuf>,
    /// Re-check cached blobs and fetch again those that do not match their digest.
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub force: Option<bool>,
    /// Talk plain HTTP to the images' registries.
    #[arg(long, alias = "insecure-pull", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: Option<bool>,
    /// Talk plain HTTP to this registry (repeatable).
    #[arg(long)]
    pub insecure_registry: Vec<String>,
    /// Mirror for Docker Hub (repeatable).
    #[arg(long)]
    pub registry_mirror: Vec<String>,
    /// Platform to cache images for (os/arch[/variant]); the host's by default.
    #[arg(long, alias = "customPlatform", alias = "platform")]
    pub custom_platform: Option<String>,
}

/// `kiln warm`.
pub fn run(args: &WarmArgs) -> anyhow::Result<()> {
    let platform = match platform(args.custom_platform.as_deref())? {
        Some(p) => p,
        None => Platform::host(),
    };
    let mut images = Vec::new();
    for i in &args.image {
        images.push(Reference::parse(i).map_err(|e| Usage(format!("--image: {e}")))?);
    }
    let build_args = build_args(&args.build_arg)?;
    for r in cache::from_dockerfiles(&args.dockerfile, &build_args, &platform)
        .map_err(kiln::Error::from)?
    {
        if !images.contains(&r) {
            images.push(r);
        }
    }
    if images.is_empty() {
        return Err(Usage("nothing to warm: give --image or --dockerfile".into()).into());
    }
    let cache_dir = CacheDir::open(args.cache_dir.clone().unwrap_or_else(cache::default_dir))
        .map_err(kiln::Error::from)?;
    if let Some(note) = cache_dir.tightened() {
        eprintln!("{note}");
    }
    let mut insecure = args.insecure_registry.clone();
    if args.insecure == Some(true) {
        insecure.extend(images.iter().map(|r| r.repository.registry.clone()));
    }
    let config = RegistryConfig {
        insecure_registries: insecure,
        registry_mirrors: args.registry_mirror.clone(),
        ..RegistryConfig::default()
    };
    let client = RegistryClient::new(config, CredentialResolver::new(Environment::from_process()))
        .map_err(kiln::Error::from)?;
    let opts = WarmOptions {
        force: args.force == Some(true),
        ..WarmOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let warmed = rt
        .block_on(cache::warm(&images, &platform, &client, &cache_dir, &opts))
        .map_err(kiln::Error::from)?;
    for w in &warmed {
        println!(
            "warmed {} for {platform}: manifest {}, config {}, {} layers; fetched {} blobs ({} bytes), {} already cached; {} layer indexes recorded",
            w.reference,
            w.base.manifest,
            w.base.config,
            w.layers.len(),
            w.fetched,
            w.fetched_bytes,
            w.present,
            w.indexed
        );
    }
    println!("cache directory {}", cache_dir.path().display());
    Ok(())
}
