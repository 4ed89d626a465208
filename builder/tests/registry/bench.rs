//! Upload throughput of a 200 MiB blob to a local `docker-registry`, monolithic vs chunk sizes.
//! Ignored by default: `cargo test --release -p kiln-builder --test registry -- --ignored bench:: --nocapture`.

use kiln_testkit::registry as registry_server;

use kiln::blob::BlobStore;
use kiln::registry::{
    BlobOutcome, CredentialResolver, Environment, RegistryClient, RegistryConfig, Repository,
};
use registry_server::{store_random_blob, Registry};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: 200 MiB upload"]
async fn push_200_mib_monolithic_vs_chunked() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let size = 200usize << 20;
    for (i, (name, threshold, chunk)) in [
        ("monolithic", u64::MAX, 4 << 20),
        ("chunked 4 MiB", 0, 4 << 20),
        ("chunked 16 MiB", 0, 16 << 20),
        ("chunked 64 MiB", 0, 64 << 20),
        ("chunked 128 MiB (default)", 0, 128 << 20),
        ("one streamed PATCH", 0, usize::MAX),
    ]
    .into_iter()
    .enumerate()
    {
        let blob = store_random_blob(&store, 1000 + i as u64, size);
        let c = RegistryClient::new(
            RegistryConfig {
                insecure_registries: vec![reg.addr.clone()],
                monolithic_threshold: threshold,
                chunk_size: chunk,
                ..RegistryConfig::default()
            },
            CredentialResolver::new(Environment::new()),
        )
        .unwrap();
        let repo = Repository::parse(&format!("{}/bench/{i}", reg.addr)).unwrap();
        let t = Instant::now();
        let o = c.ensure_blob(&repo, &blob, &store).await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(o, BlobOutcome::Uploaded);
        eprintln!(
            "{name}: {:.2} s, {:.0} MiB/s",
            secs,
            (size >> 20) as f64 / secs
        );
    }
}
