//! How parallel gzip scales: compresses the same in-memory layer-like stream (text, random
//! bytes, zeros) with 1 and with N threads, alternating, and prints medians and the ratio.
//! Both sha256 (diff_id of the input, digest of the output) are computed, as for a layer.
//!
//! `cargo run --release -p kiln-builder --example gzip_scaling -- [MiB] [runs] [threads...]`
//! (defaults: 256 MiB, 5 runs, threads 1 2).

use anyhow::Context as _;
use kiln::blob::DigestWriter;
use kiln::layer::{compress_stream, Compression};
use std::time::Instant;

/// Layer-like content: 60% text, 25% random bytes, 15% zeros, in 1 MiB pieces.
fn layer_like(mib: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(mib << 20);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut line = 0u64;
    for i in 0..mib {
        match i % 20 {
            0..=11 => {
                let start = out.len();
                while out.len() - start < 1 << 20 {
                    line += 1;
                    let s = format!(
                        "{line:08} /usr/lib/x86_64-linux-gnu/libexample{}.so.{} ok\n",
                        line % 613,
                        line % 7
                    );
                    out.extend_from_slice(s.as_bytes());
                }
                out.truncate(start + (1 << 20));
            }
            12..=16 => {
                for _ in 0..(1 << 17) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            _ => out.resize(out.len() + (1 << 20), 0),
        }
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second).
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: usize = args.first().map_or(Ok(256), |s| s.parse()).context("MiB")?;
    let runs: usize = args.get(1).map_or(Ok(5), |s| s.parse()).context("runs")?;
    let mut threads: Vec<usize> = args[2.min(args.len())..]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .context("threads")?;
    if threads.is_empty() {
        threads = vec![1, 2];
    }
    let data = layer_like(mib);
    println!(
        "gzip level 1, {mib} MiB layer-like input, {runs} runs alternated, {} cores; load average before: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg()
    );
    let mut speeds: Vec<Vec<f64>> = vec![Vec::new(); threads.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); threads.len()];
    let mut size = 0;
    for _ in 0..runs {
        for (i, &t) in threads.iter().enumerate() {
            let started = Instant::now();
            let cpu0 = cpu_secs();
            let (_, out) = compress_stream(
                &data[..],
                DigestWriter::new(std::io::sink()),
                Compression::Gzip,
                Some(1),
                t,
            )?;
            let secs = started.elapsed().as_secs_f64();
            size = out.size();
            speeds[i].push(mib as f64 / secs);
            cpu[i].push((cpu_secs() - cpu0) / (mib as f64 / 1024.0));
        }
    }
    let base = median(&mut speeds[0].clone());
    let base_cpu = median(&mut cpu[0].clone());
    for (i, &t) in threads.iter().enumerate() {
        let m = median(&mut speeds[i]);
        let (lo, hi) = (speeds[i][0], speeds[i][speeds[i].len() - 1]);
        let c = median(&mut cpu[i]);
        // What the wall-clock ratio would be on t idle cores if the work spread evenly: shows
        // the overhead the parallel version adds, whatever the neighbours do.
        let bound = base_cpu / (c / t as f64);
        println!(
            "  threads {t}: median {m:6.0} MiB/s (runs {lo:.0}-{hi:.0})  x{:.2} of {} thread(s); {c:.2} CPU-s/GiB (even-spread bound x{bound:.2})",
            m / base,
            threads[0]
        );
    }
    println!(
        "  compressed to {:.1}% ; load average after: {}",
        100.0 * size as f64 / (mib << 20) as f64,
        loadavg()
    );
    Ok(())
}
