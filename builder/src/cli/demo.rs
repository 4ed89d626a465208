//! `kiln demo`: builds the Dockerfile and context embedded in kiln, so a fresh machine can see a
//! real multi-stage build with RUN steps without any outside service.

use super::build::{self, BuildArgs};
use anyhow::Context as _;
use clap::{Args, Parser};
use std::path::PathBuf;

const FILES: &[(&str, &str)] = &[
    ("Dockerfile", include_str!("../../demo/Dockerfile")),
    ("greet.sh", include_str!("../../demo/greet.sh")),
    (".dockerignore", include_str!("../../demo/.dockerignore")),
];

/// `kiln demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo's context (a new temporary directory by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the plan only.
    #[arg(long)]
    pub dry_run: bool,
}

/// Writes the embedded context and builds it.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kiln-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("kiln: demo context written to {}", dir.display());
    let mut argv = vec![
        "kiln".to_string(),
        "--context".into(),
        dir.display().to_string(),
    ];
    // The build executor has not landed yet: the demo stops after planning, and says so.
    argv.push("--dry-run".into());
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        build: BuildArgs,
    }
    let wrap = Wrap::try_parse_from(argv).context("the demo's own build flags")?;
    build::run(&wrap.build)?;
    if !args.dry_run {
        eprintln!("kiln: note: this kiln stops after planning; running the steps lands with the build executor");
    }
    Ok(())
}
