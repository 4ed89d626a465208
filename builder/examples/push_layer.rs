//! Benchmark driver: writes a directory tree as one gzip layer (all cores) into a blob store,
//! builds a one-layer image around it and pushes it, printing what each phase took. Used by
//! `bench/push.sh`; not part of the `kiln` CLI.
//!
//! `push_layer TREE STORE_DIR DEST [--insecure]`, e.g.
//! `push_layer /var/cache/kiln-bench/tree /tmp/store 127.0.0.1:5000/bench/kiln:1 --insecure`

use anyhow::Context as _;
use kiln::blob::BlobStore;
use kiln::image::{History, ImageBuilder};
use kiln::layer::{write_layer, LayerOptions};
use kiln::plan::Platform;
use kiln::registry::{
    CredentialResolver, Environment, ImageToPush, Reference, RegistryClient, RegistryConfig,
};
use std::path::PathBuf;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tree, store_dir, dest, rest @ ..] = &args[..] else {
        anyhow::bail!("usage: push_layer TREE STORE_DIR DEST [--insecure]");
    };
    let insecure = rest.iter().any(|a| a == "--insecure");
    let dest = Reference::parse(dest)?;
    let store = BlobStore::open(PathBuf::from(store_dir)).context("blob store")?;

    let started = Instant::now();
    let tree = PathBuf::from(tree);
    let info = tokio::task::spawn_blocking({
        let store = store.clone();
        move || {
            write_layer(
                &store,
                &tree,
                &LayerOptions {
                    reproducible_epoch: Some(0),
                    ..LayerOptions::default()
                },
            )
        }
    })
    .await??;
    let layer_secs = started.elapsed().as_secs_f64();
    let mut b = ImageBuilder::scratch(&Platform::parse("linux/amd64").map_err(anyhow::Error::msg)?);
    b.created(0)
        .add_layer(info.layer.clone(), History::default());
    let image = b.write(&store)?;

    let cfg = RegistryConfig {
        insecure_registries: if insecure {
            vec![dest.repository.registry.clone()]
        } else {
            Vec::new()
        },
        ..RegistryConfig::default()
    };
    let client = RegistryClient::new(cfg, CredentialResolver::new(Environment::from_process()))?;
    let pushed = Instant::now();
    let report = client
        .push_image(
            std::slice::from_ref(&dest),
            &ImageToPush::from(&image),
            &store,
        )
        .await?;
    let push_secs = pushed.elapsed().as_secs_f64();
    let mib = info.layer.size as f64 / (1 << 20) as f64;
    println!(
        "layer {} ({mib:.0} MiB gzip) written in {layer_secs:.2}s; pushed in {push_secs:.2}s ({:.0} MiB/s); manifest {}",
        info.layer.digest,
        mib / push_secs,
        report.digest
    );
    Ok(())
}
