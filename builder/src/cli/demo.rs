//! `kiln demo`: builds the Dockerfile and context embedded in kiln, so a fresh machine can see a
//! real multi-stage build with RUN steps without any outside service. The base image is made in
//! the build itself from the host's static busybox.

use super::args::BuildArgs;
use super::build;
use anyhow::Context as _;
use clap::{Args, Parser};
use std::path::{Path, PathBuf};

const FILES: &[(&str, &str)] = &[
    ("Dockerfile", include_str!("../../demo/Dockerfile")),
    ("greet.sh", include_str!("../../demo/greet.sh")),
    (".dockerignore", include_str!("../../demo/.dockerignore")),
];

/// Debian's `busybox-static` puts a statically linked busybox here.
const BUSYBOX: &str = "/bin/busybox";

/// `kiln demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo's context and the image (a new temporary directory by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the plan only.
    #[arg(long)]
    pub dry_run: bool,
    /// The shared cache directory (kiln's default when not given).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// `--timings`, as `kiln build` takes it.
    #[command(flatten)]
    pub timings: super::args::TimingsArg,
}

/// Writes the embedded context and builds it into an OCI layout and a `docker load` tarball.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kiln-demo-{}", std::process::id())),
    };
    let ctx = dir.join("context");
    std::fs::create_dir_all(&ctx).with_context(|| format!("creating {}", ctx.display()))?;
    for (name, text) in FILES {
        let path = ctx.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.dry_run {
        copy_busybox(&ctx)?;
    }
    eprintln!("kiln: demo context written to {}", ctx.display());
    let oci = dir.join("image-oci");
    let tar = dir.join("image.tar");
    let mut argv: Vec<String> = vec![
        "kiln".into(),
        "--context".into(),
        ctx.display().to_string(),
        "--no-push".into(),
        "--destination".into(),
        "kiln-demo:latest".into(),
        "--oci-layout-path".into(),
        oci.display().to_string(),
        "--tar-path".into(),
        tar.display().to_string(),
    ];
    if let Some(c) = &args.cache_dir {
        argv.extend(["--cache-dir".into(), c.display().to_string()]);
    }
    if args.dry_run {
        argv.push("--dry-run".into());
    }
    if let Some(t) = &args.timings.timings {
        argv.push(format!("--timings={t}"));
    }
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        build: BuildArgs,
    }
    let wrap = Wrap::try_parse_from(argv).context("the demo's own build flags")?;
    build::run(&wrap.build)?;
    if !args.dry_run {
        eprintln!(
            "kiln: the demo image is in {} (OCI layout) and {} (`docker load -i {}`, then \
             `docker run --rm kiln-demo`)",
            oci.display(),
            tar.display(),
            tar.display()
        );
    }
    Ok(())
}

fn copy_busybox(ctx: &Path) -> anyhow::Result<()> {
    let dest = ctx.join("busybox");
    std::fs::copy(BUSYBOX, &dest).with_context(|| {
        format!(
            "the demo makes its base image from a static busybox at {BUSYBOX}: install Debian's \
             busybox-static (apt-get install busybox-static)"
        )
    })?;
    Ok(())
}
