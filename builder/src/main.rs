//! `kiln`: the builder's command line.

fn main() {
    std::process::exit(kiln::cli::run());
}
