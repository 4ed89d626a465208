//! Compressed layers against real peers: `gzip -t`, `tar -xzf`, `zstd -t`; parallel gzip is
//! byte-for-byte the single-threaded stream; and (ignored by default, run with `--release`)
//! throughput figures.

use kiln::blob::BlobStore;
use kiln::layer::{self, Compression, ExtractOptions, LayerOptions};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// A few MiB of mixed content: text, incompressible bytes, zeros, many small files.
fn tree(root: &Path, scale: usize) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect::<Vec<u8>>()
    };
    for i in 0..scale {
        let d = root.join(format!("pkg{i:03}"));
        fs::create_dir_all(d.join("lib")).unwrap();
        let text: String = (0..20_000)
            .map(|j| format!("line {j} of package {i}\n"))
            .collect();
        fs::write(d.join("README"), text).unwrap();
        fs::write(d.join("lib/blob.bin"), noise(256 * 1024)).unwrap();
        fs::write(d.join("lib/zeros"), vec![0u8; 512 * 1024]).unwrap();
        for k in 0..20 {
            fs::write(d.join(format!("lib/small{k}")), format!("{k}")).unwrap();
        }
    }
}

fn opts(c: Compression, threads: usize) -> LayerOptions {
    LayerOptions {
        compression: c,
        threads,
        ..LayerOptions::default()
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[test]
fn gzip_layers_pass_gzip_t_and_gnu_tar_and_match_the_plain_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 6);
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let (diff_id, plain) = layer::write_tar(&src, &LayerOptions::default(), Vec::new()).unwrap();
    let par = layer::write_layer(&store, &src, &opts(Compression::Gzip, 4)).unwrap();
    let one = layer::write_layer(&store, &src, &opts(Compression::Gzip, 1)).unwrap();
    assert_eq!(par, one, "parallel and single-threaded gzip differ");
    assert_eq!(par.layer.diff_id, diff_id);
    assert!(
        par.layer.size < plain.len() as u64 / 2,
        "{} vs {}",
        par.layer.size,
        plain.len()
    );
    let blob = store.path(&par.layer.digest);
    run(Command::new("gzip").arg("-t").arg(&blob));
    let unzipped = Command::new("gzip")
        .arg("-dc")
        .arg(&blob)
        .output()
        .unwrap()
        .stdout;
    assert!(unzipped == plain, "gzip -dc output is not the layer's tar");
    let out = tmp.path().join("gnu");
    fs::create_dir(&out).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(&out));
    run(Command::new("diff").arg("-r").arg(&src).arg(&out));
    // Higher levels are honoured and smaller.
    let best = layer::write_layer(
        &store,
        &src,
        &LayerOptions {
            level: Some(9),
            ..opts(Compression::Gzip, 0)
        },
    )
    .unwrap();
    assert!(
        best.layer.size < par.layer.size,
        "level 9 {} >= level 1 {}",
        best.layer.size,
        par.layer.size
    );
    assert_eq!(best.layer.diff_id, diff_id);
}

#[test]
fn zstd_layers_pass_zstd_t_and_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 4);
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let info = layer::write_layer(&store, &src, &opts(Compression::Zstd, 0)).unwrap();
    assert_eq!(
        info.layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let (diff_id, plain) = layer::write_tar(&src, &LayerOptions::default(), Vec::new()).unwrap();
    assert_eq!(info.layer.diff_id, diff_id);
    let mut back = Vec::new();
    zstd::stream::read::Decoder::new(store.read(&info.layer.digest).unwrap())
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == plain);
    if have("zstd") {
        let blob = store.path(&info.layer.digest);
        run(Command::new("zstd").arg("-q").arg("-t").arg(&blob));
        let out = tmp.path().join("gnu");
        fs::create_dir(&out).unwrap();
        run(Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&blob)
            .arg("-C")
            .arg(&out));
        run(Command::new("diff").arg("-r").arg(&src).arg(&out));
    } else {
        eprintln!("zstd not installed: checked with the zstd crate only");
    }
}

#[test]
fn layers_compressed_by_peers_are_extracted_too() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 2);
    let tar_path = tmp.path().join("l.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&src)
        .arg("."));
    run(Command::new("gzip").arg("-k").arg(&tar_path));
    let mut tools = vec![("l.tar", "plain"), ("l.tar.gz", "gzip")];
    if have("zstd") {
        run(Command::new("zstd").arg("-q").arg("-k").arg(&tar_path));
        tools.push(("l.tar.zst", "zstd"));
    }
    let want = fs::read(&tar_path).unwrap();
    for (file, what) in tools {
        let dst = tmp.path().join(format!("x-{what}"));
        let info = layer::extract(
            fs::File::open(tmp.path().join(file)).unwrap(),
            &dst,
            &ExtractOptions::default(),
        )
        .unwrap();
        assert_eq!(info.diff_id, kiln::blob::Digest::of(&want), "{what}");
        run(Command::new("diff").arg("-r").arg(&src).arg(&dst));
    }
    // Concatenated gzip members (what `cat a.gz b.gz` or other parallel writers produce).
    let mut two = Vec::new();
    for half in [&want[..want.len() / 2], &want[want.len() / 2..]] {
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(half).unwrap();
        two.extend(g.finish().unwrap());
    }
    let dst = tmp.path().join("x-members");
    let info = layer::extract(&two[..], &dst, &ExtractOptions::default()).unwrap();
    assert_eq!(info.diff_id, kiln::blob::Digest::of(&want));
}

/// Throughput figures on a ~200 MiB tree: `cargo test --release -p kiln-builder --test
/// layer_compress -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, 160);
    let store = BlobStore::open(tmp.path().join("blobs")).unwrap();
    let t = Instant::now();
    let (_, counted) = layer::write_tar(
        &src,
        &LayerOptions::default(),
        kiln::blob::DigestWriter::new(std::io::sink()),
    )
    .unwrap();
    let plain_secs = t.elapsed().as_secs_f64();
    let mib = counted.size() as f64 / (1 << 20) as f64;
    println!(
        "tree: {mib:.0} MiB of tar; walk+tar+sha256 alone {:.0} MiB/s",
        mib / plain_secs
    );
    for (c, level, threads) in [
        (Compression::Gzip, 1, 1),
        (Compression::Gzip, 1, 0),
        (Compression::Gzip, 6, 1),
        (Compression::Gzip, 6, 0),
        (Compression::Zstd, 3, 1),
        (Compression::Zstd, 3, 0),
    ] {
        let t = Instant::now();
        let info = layer::write_layer(
            &store,
            &src,
            &LayerOptions {
                level: Some(level),
                ..opts(c, threads)
            },
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{c:?} level {level} threads {}: {:.0} MiB/s, {:.1} MiB out",
            if threads == 0 {
                "all".to_string()
            } else {
                threads.to_string()
            },
            mib / secs,
            info.layer.size as f64 / (1 << 20) as f64
        );
    }
}
