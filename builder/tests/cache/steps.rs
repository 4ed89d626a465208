//! The step caches: the local one shared by processes, and the registry one (`--cache-repo`)
//! against a real `docker-registry`, counted through the request-logging proxy.

use kiln_testkit::registry as registry_server;

use kiln::blob::{BlobStore, Digest};
use kiln::cache::{base_key, step_key, CacheKey, CachedStep, LocalCache, RepoCache};
use kiln::cache_dir::CacheDir;
use kiln::image::ImageConfig;
use kiln::layer::Layer;
use kiln::plan::Platform;
use kiln::registry::{
    CredentialResolver, Environment, Reference, RegistryClient, RegistryConfig, Repository,
};
use registry_server::{store_random_blob, Proxy, Registry};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CHILD_DIR: &str = "KILN_TEST_CACHE_CHILD_DIR";
const CHILD_ID: &str = "KILN_TEST_CACHE_CHILD_ID";

fn key(n: u64) -> CacheKey {
    CacheKey(Digest::of(format!("key {n}").as_bytes()))
}

fn step(writer: u64, i: u64) -> CachedStep {
    CachedStep {
        layer: Some(Layer {
            digest: Digest::of(format!("layer {writer} {i}").as_bytes()),
            size: 1000 + i,
            diff_id: Digest::of(format!("diff {writer} {i}").as_bytes()),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }),
        // Long enough that a torn write would show.
        created_by: format!("RUN writer {writer} step {i} {}", "x".repeat(20_000)),
    }
}

/// Not a test by itself: the body of the child processes of
/// `local_cache_is_shared_by_processes_and_survives_concurrent_puts`.
#[test]
fn local_cache_child_writer() {
    let (Ok(dir), Ok(id)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID)) else {
        return;
    };
    let id: u64 = id.parse().unwrap();
    let cache = LocalCache::open(&CacheDir::open(&dir).unwrap()).unwrap();
    for i in 0..200 {
        // Everyone writes the shared key; each also writes one of its own.
        cache.put(&key(0), &step(id, i)).unwrap();
        cache.put(&key(100 + id), &step(id, i)).unwrap();
    }
}

/// The writer test's name as the harness knows it: its module path without the binary's name.
fn child_test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::local_cache_child_writer")
        .trim_start_matches("::")
        .to_string()
}

#[test]
fn local_cache_is_shared_by_processes_and_survives_concurrent_puts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LocalCache::open(&CacheDir::open(dir.path()).unwrap()).unwrap();
    assert_eq!(cache.get(&key(0)), None);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (1..=4u64)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    &child_test_name(),
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_ID, id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    // While they write, every read is a whole entry of one of them, or (at first) nothing.
    let mut seen = 0;
    for _ in 0..2000 {
        if let Some(s) = cache.get(&key(0)) {
            let writer: u64 = s.created_by.split(' ').nth(2).unwrap().parse().unwrap();
            let i: u64 = s.created_by.split(' ').nth(4).unwrap().parse().unwrap();
            assert_eq!(s, step(writer, i));
            seen += 1;
        }
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert!(seen > 0);
    for id in 1..=4 {
        assert_eq!(cache.get(&key(100 + id)), Some(step(id, 199)));
    }
    let last = cache.get(&key(0)).unwrap();
    assert!(
        (1..=4).any(|w| last == step(w, 199)),
        "{}",
        &last.created_by[..30]
    );
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".json")));
}

#[test]
fn local_cache_ttl_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LocalCache::open(&CacheDir::open(dir.path()).unwrap()).unwrap();
    cache.put(&key(1), &step(1, 1)).unwrap();
    let no_layer = CachedStep {
        layer: None,
        created_by: "ENV A=1".into(),
    };
    cache.put(&key(2), &no_layer).unwrap();
    assert_eq!(cache.get(&key(2)), Some(no_layer));
    std::thread::sleep(Duration::from_millis(1100));
    let fresh = LocalCache::open(&CacheDir::open(dir.path()).unwrap())
        .unwrap()
        .with_ttl(Duration::from_secs(3600));
    assert!(fresh.get(&key(1)).is_some());
    let stale = LocalCache::open(&CacheDir::open(dir.path()).unwrap())
        .unwrap()
        .with_ttl(Duration::from_secs(1));
    assert_eq!(stale.get(&key(1)), None);
    assert_eq!(cache.prune(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(cache.prune(Duration::from_secs(1)).unwrap(), 2);
    assert_eq!(cache.get(&key(1)), None);
    // A damaged entry is a miss, not an error.
    std::fs::write(
        dir.path()
            .join("keys")
            .join(format!("{}.json", key(3).hex())),
        "{",
    )
    .unwrap();
    assert_eq!(cache.get(&key(3)), None);
}

fn client(insecure: &str) -> RegistryClient {
    let cfg = RegistryConfig {
        insecure_registries: vec![insecure.to_string()],
        retry_base_delay: Duration::from_millis(20),
        ..RegistryConfig::default()
    };
    RegistryClient::new(cfg, CredentialResolver::new(Environment::new())).unwrap()
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_cache_hit_reads_the_manifest_only() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let layer = store_random_blob(&store, 7, 300_000);
    let repo = Repository::parse(&format!("{}/team/cache", proxy.addr)).unwrap();
    let writer = RepoCache::new(client(&proxy.addr), repo.clone(), Duration::from_secs(3600))
        .with_platform(amd64());
    let k = step_key(
        &base_key(None, &amd64()),
        &kiln::plan::Step {
            instruction: kiln::dockerfile::instructions::Instruction::User("app".into()),
            start_line: 2,
            end_line: 2,
            trigger: false,
            args: vec![],
            args_over_env: vec![],
            declared_args: vec![],
        },
        &[],
        None,
        &amd64(),
    );
    let with_layer = CachedStep {
        layer: Some(Layer {
            digest: layer.digest.clone(),
            size: layer.size,
            diff_id: Digest::of(b"the uncompressed tar"),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }),
        created_by: "RUN make -j4 # kiln".into(),
    };
    let k2 = CacheKey(Digest::of(b"a step without a layer"));
    let no_layer = CachedStep {
        layer: None,
        created_by: "ENV A=1".into(),
    };
    assert_eq!(writer.get(&k).await.unwrap(), None);
    writer.put(&k, &with_layer, &store).await.unwrap();
    writer.put(&k2, &no_layer, &store).await.unwrap();

    // A fresh client (another build) gets both back without any blob request.
    proxy.clear();
    let reader = RepoCache::new(client(&proxy.addr), repo.clone(), Duration::from_secs(3600));
    assert_eq!(reader.get(&k).await.unwrap(), Some(with_layer.clone()));
    assert_eq!(reader.get(&k2).await.unwrap(), Some(no_layer));
    assert_eq!(
        reader.get(&CacheKey(Digest::of(b"never"))).await.unwrap(),
        None
    );
    let reqs = proxy.requests();
    assert!(reqs.iter().all(|r| !r.contains("/blobs/")), "{reqs:?}");
    assert_eq!(
        proxy.count("GET", &format!("/manifests/{}", k.hex())),
        1,
        "{reqs:?}"
    );

    // The entry is tagged with the key's hex and is a valid image: its config records the
    // diff_id and the history.
    let c = client(&proxy.addr);
    let r = Reference::parse(&format!("{}/team/cache:{}", proxy.addr, k.hex())).unwrap();
    let m = c.get_manifest(&r).await.unwrap();
    let kiln::image::ParsedManifest::Image(img) =
        kiln::image::parse_manifest(Some(&m.media_type), &m.bytes).unwrap()
    else {
        panic!("not an image")
    };
    assert_eq!(img.layers.len(), 1);
    let pulled = BlobStore::open(dir.path().join("pulled")).unwrap();
    c.pull_blob(&repo, &img.config.digest, Some(img.config.size), &pulled)
        .await
        .unwrap();
    let cfg = ImageConfig::parse(&std::fs::read(pulled.path(&img.config.digest)).unwrap()).unwrap();
    assert_eq!(
        cfg.rootfs.diff_ids,
        vec![Digest::of(b"the uncompressed tar")]
    );
    assert_eq!(cfg.history.len(), 1);
    assert_eq!(
        cfg.history[0].created_by.as_deref(),
        Some("RUN make -j4 # kiln")
    );
    assert_eq!(cfg.architecture, "amd64");
    let out = Command::new("/usr/bin/skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/team/cache:{}", reg.addr, k.hex()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The ttl counts from when the step was cached.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let short = RepoCache::new(client(&proxy.addr), repo.clone(), Duration::from_secs(1));
    assert_eq!(short.get(&k).await.unwrap(), None);
    assert!(reader.get(&k).await.unwrap().is_some());
}

#[test]
fn keys_ignore_modification_times() {
    // The plan of a Dockerfile touched later gives the same keys: no file time is an input.
    let dir = tempfile::tempdir().unwrap();
    let df = dir.path().join("Dockerfile");
    let keys = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap();
        let d = kiln::dockerfile::parse(&text, p).unwrap();
        let opts = kiln::plan::Options {
            target_platform: amd64(),
            ..Default::default()
        };
        let plan = kiln::plan::plan(&d, p, &opts, &kiln::plan::NoBaseImages).unwrap();
        let mut k = base_key(None, &amd64());
        let mut out = vec![];
        for s in &plan.stages[0].steps {
            k = step_key(&k, s, &[], Some(&Digest::of(b"inputs")), &amd64());
            out.push(k.clone());
        }
        out
    };
    std::fs::write(&df, "FROM scratch\nCOPY a /a\nRUN x\n").unwrap();
    let before = keys(&df);
    let f = std::fs::File::options().write(true).open(&df).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert_eq!(keys(&df), before);
}

/// Layer indexes beside the cache: published as a one-blob OCI artifact under a tag derived
/// from the diff_id (blob before manifest), found by HEAD, fetched back byte for byte, and
/// absent for a layer nobody indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_cache_publishes_and_fetches_layer_indexes() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("w")).unwrap();
    let repo = Repository::parse(&format!("{}/team/cache", proxy.addr)).unwrap();
    let cache = RepoCache::new(client(&proxy.addr), repo.clone(), Duration::from_secs(3600));
    // A real layer's index: extracted from a small tar.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h.set_path("etc").unwrap();
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let layers =
        kiln::snapshot::ExtractedLayers::open(&CacheDir::open(dir.path().join("layers")).unwrap())
            .unwrap();
    layers
        .extract(&diff_id, kiln::layer::MEDIA_TYPE_TAR, &tar[..])
        .unwrap();
    let bytes = std::fs::read(layers.index_path(&diff_id)).unwrap();

    assert!(!cache.has_index(&diff_id).await.unwrap());
    assert_eq!(cache.get_index(&diff_id, &store).await.unwrap(), None);
    cache.put_index(&diff_id, &bytes, &store).await.unwrap();
    assert!(cache.has_index(&diff_id).await.unwrap());
    let order: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT "))
        .collect();
    let tag = kiln::cache::index_tag(&diff_id);
    assert!(
        order
            .last()
            .is_some_and(|r| r.contains(&format!("/manifests/{tag}"))),
        "{order:?}"
    );

    // Another build, another store: the same bytes, which decode as this layer's index.
    let other = BlobStore::open(dir.path().join("r")).unwrap();
    let fetched = cache.get_index(&diff_id, &other).await.unwrap().unwrap();
    assert_eq!(fetched, bytes);
    let idx = kiln::layer::LayerIndex::decode(&fetched[..], &diff_id).unwrap();
    assert_eq!(idx.get(b"etc").unwrap().mode, 0o755);
    let manifest = reg_manifest(&proxy.addr, &tag).await;
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.kiln.layer-index.v1"
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        cache
            .get_index(&Digest::of(b"another layer"), &other)
            .await
            .unwrap(),
        None
    );
}

/// The manifest tagged `tag` in `team/cache`, read with a plain GET.
async fn reg_manifest(addr: &str, tag: &str) -> serde_json::Value {
    let url = format!("http://{addr}/v2/team/cache/manifests/{tag}");
    let r = reqwest::Client::new()
        .get(url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}
