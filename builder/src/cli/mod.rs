//! The `kiln` command line: argument parsing, error printing and exit codes.

mod args;
mod build;
mod build_options;
mod certs;
mod demo;
mod docker_backend;
mod kaniko;
mod warm;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the input is wrong or the build's own steps \
    failed (the Dockerfile, the build plan, the context, a RUN step exiting non-zero, a base \
    image that does not exist); 2 usage, or a failure of kiln or its environment (the sandbox, \
    the cache directory, a registry unreachable, failing or refusing the credentials).";

/// kiln builds container images from Dockerfiles without a Docker daemon.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (kaniko's flag names).
    Build(Box<args::BuildArgs>),
    /// Make one job's Docker TLS certificates (CA, server, client) in the docker:dind layout.
    Certs(certs::CertsArgs),
    /// Build kiln's embedded demo image (a multi-stage Dockerfile with RUN steps).
    Demo(demo::DemoArgs),
    /// Fetch base images into the cache directory ahead of builds (kaniko's warmer flags).
    Warm(warm::WarmArgs),
}

/// Runs kiln with the process's arguments and returns the exit code.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().collect();
    // The kaniko executor's flags screened out for `build` mean other things to the warmer
    // (`--force`).
    let screened = if argv.get(1).map(String::as_str) == Some("warm") {
        Ok(argv)
    } else {
        kaniko::screen(argv)
    };
    let argv = match screened {
        Ok(a) => a,
        Err(e) => return report(&e),
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if matches!(
        cli.command,
        Command::Build(_) | Command::Demo(_) | Command::Warm(_)
    ) {
        match kiln::sandbox::enter_own_namespace() {
            Ok(kiln::sandbox::Entered::Ran(code)) => return code,
            Ok(kiln::sandbox::Entered::NotNeeded) => {}
            // As before: files keep their owners by record, and the isolation check says
            // what RUN steps lack.
            Err(e) => eprintln!(
                "kiln: note: staying out of a user namespace of kiln's own ({}=0 skips it): {}",
                kiln::sandbox::OWN_NAMESPACE_ENV,
                kiln::error_chain::chain_line(&e)
            ),
        }
    }
    let result = match cli.command {
        Command::Build(args) => build::run(&args),
        Command::Certs(args) => certs::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Warm(args) => warm::run(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

/// Prints `kiln: error: cause: cause` and returns the exit code: the class of the library's
/// error ([`kiln::Error::exit_code`]: 1 the input, 2 kiln and its environment); 2 for usage
/// and failures of the command line's own.
fn report(e: &anyhow::Error) -> i32 {
    eprintln!("kiln: {}", kiln::error_chain::chain_line(e.as_ref()));
    e.chain()
        .find_map(|c| c.downcast_ref::<kiln::Error>())
        .map_or(2, kiln::Error::exit_code)
}

/// A command line kiln cannot act on (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);
