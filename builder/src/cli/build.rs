//! `kiln build` on kiln's own backend: the Dockerfile is read and parsed here, once, and the
//! library plans and builds it; `--dry-run` prints what the front end understood.

use super::args::{self, Backend, BuildArgs};
use kiln::context::dockerignore::DockerIgnore;
use kiln::context::walk::BuildContext;
use kiln::dockerfile;
use kiln::plan::{self, NoBaseImages};

/// `kiln build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    if args.backend.backend == Backend::Docker {
        return super::docker_backend::run(args);
    }
    args::check_context(args)?;
    let source = args::read_dockerfile(args)?;
    let parsed = dockerfile::parse(&source.text, &source.name).map_err(kiln::Error::from)?;
    for w in &parsed.warnings {
        eprintln!(
            "kiln: warning: {}:{}: {}",
            source.name.display(),
            w.line,
            w.message
        );
    }
    let plan_opts = args::plan_options(args)?;
    if args.dry_run {
        // The dry run plans without fetching base images: it shows the Dockerfile's own steps.
        let plan = plan::plan(&parsed, &source.name, &plan_opts, &NoBaseImages)
            .map_err(kiln::Error::from)?;
        print!(
            "{}",
            plan::display::render(&plan, &source.name.display().to_string())
        );
        let ignore = DockerIgnore::load_for_dockerfile(&args.context, &source.name)
            .map_err(kiln::Error::from)?;
        let context =
            BuildContext::with_ignore(&args.context, ignore).map_err(kiln::Error::from)?;
        println!(
            "\ncontext {}: {} paths visible to COPY and ADD ({} .dockerignore patterns)",
            args.context.display(),
            context.entries().len(),
            context.ignore().patterns().len()
        );
        return Ok(());
    }
    let opts = super::build_options::options(args, source.name, parsed, plan_opts)?;
    let progress = kiln::executor::Progress::for_stderr(args.progress);
    let outcome = kiln::executor::build(&opts, progress)?;
    match args.timings.timings.as_deref() {
        Some("json") => eprintln!("{}", outcome.timings.json()),
        Some(_) => eprint!("{}", outcome.timings.table()),
        None => {}
    }
    println!("{}", outcome.image.digest);
    Ok(())
}
