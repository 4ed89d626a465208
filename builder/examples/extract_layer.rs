//! Benchmark driver: extracts one layer blob (gzip, zstd or plain tar) onto a directory as
//! kiln extracts base layers into its cache, and prints the entries and the time. Used by
//! `bench/extract.sh` (which counts the system calls per entry); not part of the `kiln` CLI.
//!
//! `extract_layer LAYER TARGET_DIR`

use kiln::layer::{extract, ExtractOptions};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layer, target] = &args[..] else {
        anyhow::bail!("usage: extract_layer LAYER TARGET_DIR");
    };
    let started = Instant::now();
    let info = extract(
        std::io::BufReader::new(std::fs::File::open(layer)?),
        std::path::Path::new(target),
        &ExtractOptions {
            overlay_whiteouts: true,
            ignore_owners: !kiln::layer::owners::settable(),
            max_bytes: None,
        },
    )?;
    println!(
        "entries {} in {:.3} s ({})",
        info.entries,
        started.elapsed().as_secs_f64(),
        info.diff_id
    );
    Ok(())
}
