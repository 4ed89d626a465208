//! `kiln warm` against a real `docker-registry`: concurrent warmers leave a consistent store,
//! and builds then find their bases with the registry gone: a base pinned by digest without
//! asking it, a tag from its recorded answer when the registry cannot answer.

use kiln_testkit::registry as registry_server;

use kiln::blob::{BlobStore, Digest};
use kiln::cache::{from_dockerfiles, lookup_base, read_manifest};
use kiln::cache_dir::CacheDir;
use kiln::plan::Platform;
use kiln::registry::{
    CredentialResolver, Environment, ImageToPush, Reference, RegistryClient, RegistryConfig,
};
use registry_server::{make_image, Fault, Proxy, Registry};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn client(insecure: &str) -> RegistryClient {
    let cfg = RegistryConfig {
        insecure_registries: vec![insecure.to_string()],
        retry_base_delay: Duration::from_millis(20),
        ..RegistryConfig::default()
    };
    RegistryClient::new(cfg, CredentialResolver::new(Environment::new())).unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn platform(s: &str) -> Platform {
    Platform::parse(s).unwrap()
}

/// Pushes a plain image as `<addr>/team/a:1` and an index as `<addr>/team/b:v1` (amd64 and
/// arm64 images). Returns the images pushed: a, b for amd64, b for arm64, and b's index bytes.
async fn push_images(
    addr: &str,
    store: &BlobStore,
) -> (ImageToPush, ImageToPush, ImageToPush, Vec<u8>) {
    let c = client(addr);
    let a = make_image(store, 11, &[1 << 20, 3 << 20, 1000]);
    c.push_image(&[r(&format!("{addr}/team/a:1"))], &a, store)
        .await
        .unwrap();
    let b_amd = make_image(store, 12, &[2 << 20, 5000]);
    let b_arm = make_image(store, 13, &[2 << 20, 6000]);
    let b_repo = r(&format!("{addr}/team/b:v1"));
    let by_digest = |img: &ImageToPush| Reference {
        repository: b_repo.repository.clone(),
        tag: None,
        digest: Some(Digest::of(&img.manifest)),
    };
    c.push_image(&[by_digest(&b_amd)], &b_amd, store)
        .await
        .unwrap();
    c.push_image(&[by_digest(&b_arm)], &b_arm, store)
        .await
        .unwrap();
    let entry = |img: &ImageToPush, arch: &str| {
        serde_json::json!({
            "mediaType": img.media_type,
            "digest": Digest::of(&img.manifest).to_string(),
            "size": img.manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&b_amd, "amd64"), entry(&b_arm, "arm64")],
    }))
    .unwrap();
    c.put_manifest(
        &b_repo.repository,
        "v1",
        &index,
        "application/vnd.oci.image.index.v1+json",
    )
    .await
    .unwrap();
    (a, b_amd, b_arm, index)
}

fn kiln_warm(cache: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("warm")
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(c: std::process::Child) -> Output {
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "kiln warm failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every blob in the store has the digest it is stored under, and no temporary file is left.
fn assert_store_consistent(cache: &Path) -> usize {
    let blobs = cache.join("blobs");
    let mut n = 0;
    for e in std::fs::read_dir(blobs.join("sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(Digest::of(&bytes).hex(), name, "blob {name} is damaged");
        n += 1;
    }
    assert_eq!(std::fs::read_dir(blobs.join("tmp")).unwrap().count(), 0);
    n
}

fn has_image(store: &BlobStore, img: &ImageToPush) -> bool {
    store.contains(&Digest::of(&img.manifest))
        && store.contains(&img.config.digest)
        && img.layers.iter().all(|l| store.contains(&l.digest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_warmers_leave_a_consistent_store_usable_offline() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = BlobStore::open(dir.path().join("src")).unwrap();
    let (a, b_amd, b_arm, index) = push_images(&reg.addr, &src).await;
    let cache = dir.path().join("cache");
    let a_ref = format!("{}/team/a:1", reg.addr);
    let b_ref = format!("{}/team/b:v1", reg.addr);
    let common = [
        "--insecure-registry",
        reg.addr.as_str(),
        "--image",
        a_ref.as_str(),
        "--image",
        b_ref.as_str(),
    ];
    // Two warmers of the same images and one of another platform, all at once.
    let w1 = kiln_warm(
        &cache,
        &[&common[..], &["--custom-platform", "linux/amd64"]].concat(),
    );
    let w2 = kiln_warm(
        &cache,
        &[&common[..], &["--customPlatform=linux/amd64"]].concat(),
    );
    let w3 = kiln_warm(
        &cache,
        &[
            "--insecure",
            "--image",
            &b_ref,
            "--custom-platform",
            "linux/arm64",
        ],
    );
    let outs: Vec<Output> = [w1, w2, w3].into_iter().map(finished).collect();
    let out1 = String::from_utf8_lossy(&outs[0].stdout).into_owned();
    assert!(
        out1.contains(&format!(
            "warmed {a_ref} for linux/amd64: manifest {}",
            Digest::of(&a.manifest)
        )),
        "{out1}"
    );
    assert!(
        out1.contains(&format!(
            "warmed {b_ref} for linux/amd64: manifest {}",
            Digest::of(&b_amd.manifest)
        )),
        "{out1}"
    );

    let store = BlobStore::open(cache.join("blobs")).unwrap();
    assert!(has_image(&store, &a));
    assert!(has_image(&store, &b_amd));
    assert!(has_image(&store, &b_arm));
    assert!(store.contains(&Digest::of(&index)));
    // a: manifest, config, 3 layers; b: index, and per platform manifest, config, 2 layers.
    assert_eq!(assert_store_consistent(&cache), 5 + 1 + 4 + 4);

    // A warm of what is there fetches no blob.
    let again = finished(kiln_warm(&cache, &common));
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.contains("fetched 0 blobs (0 bytes), 4 already cached"),
        "{again}"
    );

    // With the registry gone, builds still resolve both references for both platforms.
    drop(reg);
    let amd = platform("linux/amd64");
    let warmed = CacheDir::open(&cache).unwrap();
    let base_a = lookup_base(&warmed, &r(&a_ref), &amd).expect("a is known offline");
    assert_eq!(base_a.digest, Digest::of(&a.manifest));
    assert_eq!(base_a.manifest, Digest::of(&a.manifest));
    assert_eq!(base_a.config, a.config.digest);
    let m = read_manifest(&warmed, &base_a).unwrap();
    assert_eq!(m.layers.len(), 3);
    let base_b = lookup_base(&warmed, &r(&b_ref), &amd).unwrap();
    assert_eq!(base_b.digest, Digest::of(&index));
    assert_eq!(base_b.manifest, Digest::of(&b_amd.manifest));
    let base_b_arm = lookup_base(&warmed, &r(&b_ref), &platform("linux/arm64/v8")).unwrap();
    assert_eq!(base_b_arm.manifest, Digest::of(&b_arm.manifest));
    assert_eq!(
        lookup_base(&warmed, &r(&a_ref), &platform("linux/arm64")),
        None
    );
    assert_eq!(lookup_base(&warmed, &r(&format!("{a_ref}x")), &amd), None);

    // A damaged blob is fetched again only with --force; here it cannot be (no registry), so
    // --force fails loudly instead of trusting it.
    let layer = &a.layers[0].digest;
    std::fs::write(store.path(layer), b"damaged").unwrap();
    let forced = kiln_warm(&cache, &["--force", "--image", &a_ref])
        .wait_with_output()
        .unwrap();
    assert_ne!(forced.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_refetches_a_damaged_blob() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = BlobStore::open(dir.path().join("src")).unwrap();
    let (a, _, _, _) = push_images(&reg.addr, &src).await;
    let cache = dir.path().join("cache");
    let a_ref = format!("{}/team/a:1", reg.addr);
    let args = [
        "--insecure-registry",
        reg.addr.as_str(),
        "--image",
        a_ref.as_str(),
    ];
    finished(kiln_warm(&cache, &args));
    let store = BlobStore::open(cache.join("blobs")).unwrap();
    let layer = &a.layers[1].digest;
    std::fs::write(store.path(layer), b"damaged").unwrap();
    let plain = finished(kiln_warm(&cache, &args));
    assert!(String::from_utf8_lossy(&plain.stdout).contains("fetched 0 blobs"));
    let forced = finished(kiln_warm(&cache, &[&args[..], &["--force"]].concat()));
    let out = String::from_utf8_lossy(&forced.stdout).into_owned();
    assert!(
        out.contains(&format!(
            "fetched 1 blobs ({} bytes), 3 already cached",
            3 << 20
        )),
        "{out}"
    );
    assert_store_consistent(&cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_from_a_dockerfile_with_stages_and_args_in_from() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = BlobStore::open(dir.path().join("src")).unwrap();
    let (a, b_amd, _, _) = push_images(&reg.addr, &src).await;
    let df = dir.path().join("Dockerfile");
    std::fs::write(
        &df,
        "ARG REG\nARG TAG=1\nFROM $REG/team/a:$TAG AS build\nRUN make\nFROM build AS test\nRUN make test\nFROM scratch AS empty\nFROM ${REG}/team/b:v${TAG}\nCOPY --from=build /out /out\n",
    )
    .unwrap();
    let args: BTreeMap<String, String> = [("REG".to_string(), reg.addr.clone())].into();
    let amd = platform("linux/amd64");
    let refs = from_dockerfiles(std::slice::from_ref(&df), &args, &amd).unwrap();
    let a_ref = r(&format!("{}/team/a:1", reg.addr));
    let b_ref = r(&format!("{}/team/b:v1", reg.addr));
    assert_eq!(refs, vec![a_ref.clone(), b_ref.clone()]);

    let cache = dir.path().join("cache");
    let reg_arg = format!("REG={}", reg.addr);
    let out = finished(kiln_warm(
        &cache,
        &[
            "--insecure",
            "--dockerfile",
            df.to_str().unwrap(),
            "--build-arg",
            &reg_arg,
            "--custom-platform",
            "linux/amd64",
        ],
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.matches("warmed ").count(), 2, "{text}");
    let warmed = CacheDir::open(&cache).unwrap();
    assert_eq!(
        lookup_base(&warmed, &a_ref, &amd).unwrap().manifest,
        Digest::of(&a.manifest)
    );
    assert_eq!(
        lookup_base(&warmed, &b_ref, &amd).unwrap().manifest,
        Digest::of(&b_amd.manifest)
    );
    assert_store_consistent(&cache);

    // Without the build argument the FROM names no registry image kiln can reach: an error
    // naming the Dockerfile problem, not a silent skip.
    let bad = kiln_warm(&cache, &["--dockerfile", df.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `kiln build --no-push --reproducible` of `dockerfile` (a FROM and an ENV: nothing reads the
/// base's layers), through `registry`, on the cache directory `cache`; the image's digest is
/// written to `<cache>.digest`.
fn kiln_build_on(cache: &Path, registry: &str, dockerfile: &str) -> Output {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg("--context")
        .arg(ctx.path())
        .args([
            "--insecure-registry",
            registry,
            "--no-push",
            "--reproducible",
        ])
        .arg("--cache-dir")
        .arg(cache)
        .arg("--digest-file")
        .arg(cache.with_extension("digest"))
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap()
}

fn built_digest(cache: &Path, o: &Output) -> String {
    assert!(
        o.status.success(),
        "kiln build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(cache.with_extension("digest")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_read_pinned_bases_from_the_store_and_recorded_tags_when_the_registry_cannot_answer()
{
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let src = BlobStore::open(dir.path().join("src")).unwrap();
    let (a, _, _, _) = push_images(&reg.addr, &src).await;
    let at = &proxy.addr.clone();
    let by_tag = format!("FROM {at}/team/a:1\nENV X=1\n");
    let pinned = format!("FROM {at}/team/a@{}\nENV X=1\n", Digest::of(&a.manifest));
    let manifests = "/v2/team/a/manifests/";
    let cache = dir.path().join("cache");

    // Online: the tag is asked of the registry, and its answer recorded.
    let online = kiln_build_on(&cache, at, &by_tag);
    let image = built_digest(&cache, &online);
    assert!(proxy.count("GET", manifests) >= 1, "{:?}", proxy.requests());

    // Pinned by digest: the manifest the first build kept answers; the registry is not asked.
    proxy.clear();
    let o = kiln_build_on(&cache, at, &pinned);
    assert_eq!(built_digest(&cache, &o), image);
    assert_eq!(proxy.count("GET", manifests), 0, "{:?}", proxy.requests());
    assert_eq!(proxy.count("HEAD", manifests), 0, "{:?}", proxy.requests());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"));

    // Rate limited: the recorded answer builds the same image, and the build says why.
    let limited = Fault::Respond(429, vec![("Retry-After".into(), "0".into())]);
    proxy.add_rule("GET", manifests, 0, usize::MAX, limited.clone());
    let o = kiln_build_on(&cache, at, &by_tag);
    assert_eq!(built_digest(&cache, &o), image);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("warning: ") && err.contains("429"), "{err}");
    assert!(
        err.contains(&format!(
            "as last resolved here ({},",
            Digest::of(&a.manifest)
        )),
        "{err}"
    );

    // A cache directory with no record of the tag fails, naming the registry's answer.
    let fresh = dir.path().join("fresh");
    let o = kiln_build_on(&fresh, at, &by_tag);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unavailable registry is the environment's fault"
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("429") && err.contains(at.as_str()), "{err}");

    // A registry that answers no (the tag is gone) is believed, record or not.
    proxy.rules.lock().unwrap().clear();
    proxy.add_rule("GET", manifests, 0, usize::MAX, Fault::Respond(404, vec![]));
    let o = kiln_build_on(&cache, at, &by_tag);
    assert!(!o.status.success(), "a 404 must not fall back");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("not found") && !err.contains("as last resolved here"),
        "{err}"
    );

    // The registry gone altogether (connection refused): the record still answers.
    drop(proxy);
    let o = kiln_build_on(&cache, at, &by_tag);
    assert_eq!(built_digest(&cache, &o), image);
}
