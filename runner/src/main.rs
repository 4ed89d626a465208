//! `kiln-runner`: the runner's command line.

fn main() {
    eprintln!("kiln-runner: not implemented yet");
    std::process::exit(2);
}
