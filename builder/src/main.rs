//! `kiln`: the builder's command line. Errors print as a chain after `kiln: `; the exit code is
//! 0 on success, 1 when the build input is wrong or the build fails, 2 for usage errors and
//! kiln's own failures.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
