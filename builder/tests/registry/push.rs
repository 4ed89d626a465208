//! Push and pull against a real `docker-registry` over plain HTTP, with a request-logging proxy
//! in front of it for counting requests and injecting failures.

use kiln_testkit::registry as registry_server;

use kiln::blob::{BlobStore, Digest};
use kiln::registry::{
    BlobOutcome, CredentialResolver, Environment, Reference, RegistryClient, RegistryConfig,
    RegistryError, Repository,
};
use registry_server::{make_image, store_random_blob, Fault, Proxy, Registry};
use std::time::{Duration, Instant};

fn client(insecure: &[&str], tweak: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut cfg = RegistryConfig {
        insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
        retry_base_delay: Duration::from_millis(20),
        ..RegistryConfig::default()
    };
    tweak(&mut cfg);
    RegistryClient::new(cfg, CredentialResolver::new(Environment::new())).unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_by_tag_and_digest_and_skopeo_agrees() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("push")).unwrap();
    let image = make_image(&store, 1, &[1000, 70_000, 300_000]);
    let c = client(&[&reg.addr], |_| {});
    let dest = r(&format!("{}/team/app:v1", reg.addr));
    let report = c
        .push_image(
            &[dest.clone(), dest.with_tag("latest").unwrap()],
            &image,
            &store,
        )
        .await
        .unwrap();
    assert_eq!(report.digest, Digest::of(&image.manifest));
    assert!(
        report
            .blobs
            .iter()
            .all(|(_, _, o)| *o == BlobOutcome::Uploaded),
        "{report:?}"
    );

    // By tag and by digest, the exact bytes come back.
    let by_tag = c.get_manifest(&dest).await.unwrap();
    assert_eq!(by_tag.bytes, image.manifest);
    assert_eq!(by_tag.media_type, image.media_type);
    assert_eq!(by_tag.digest, report.digest);
    let pinned = r(&format!("{}/team/app@{}", reg.addr, report.digest));
    assert_eq!(c.get_manifest(&pinned).await.unwrap().bytes, image.manifest);
    let head = c
        .head_manifest(&dest.with_tag("latest").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.digest, Some(report.digest.clone()));
    assert!(c
        .head_manifest(&dest.with_tag("nope").unwrap())
        .await
        .unwrap()
        .is_none());

    // Blobs stream into another store with their digests checked.
    let store2 = BlobStore::open(dir.path().join("pull")).unwrap();
    for b in image.layers.iter().chain([&image.config]) {
        let n = c
            .pull_blob(&dest.repository, &b.digest, Some(b.size), &store2)
            .await
            .unwrap();
        assert_eq!(n, b.size);
        assert_eq!(
            std::fs::read(store2.path(&b.digest)).unwrap(),
            std::fs::read(store.path(&b.digest)).unwrap()
        );
    }

    // A second push finds everything there already.
    let again = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    assert!(again
        .blobs
        .iter()
        .all(|(_, _, o)| *o == BlobOutcome::Existed));

    // A real peer reads the same manifest.
    let out = std::process::Command::new("/usr/bin/skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/team/app:v1", reg.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(Digest::of(&out.stdout), report.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_repository_mounts_instead_of_uploading() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 2, &[5000, 6000, 7000]);
    let c = client(&[&proxy.addr], |_| {});
    let a = r(&format!("{}/team/base:1", proxy.addr));
    c.push_image(std::slice::from_ref(&a), &image, &store)
        .await
        .unwrap();
    assert_eq!(proxy.count("POST", "/v2/team/base/blobs/uploads/"), 4);
    proxy.clear();

    // A new image sharing the layers, pushed to another repository, names the first as source.
    let b = r(&format!("{}/team/other:1", proxy.addr));
    let mut image2 = image.clone();
    for l in &mut image2.layers {
        l.mount_from = Some(a.repository.clone());
    }
    image2.config.mount_from = Some(a.repository.clone());
    let report = c
        .push_image(std::slice::from_ref(&b), &image2, &store)
        .await
        .unwrap();
    let log = proxy.requests();
    let mounts = log
        .iter()
        .filter(|l| l.starts_with("POST /v2/team/other/blobs/uploads/?mount="))
        .count();
    assert_eq!(mounts, 4, "{log:#?}");
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 0, "{log:#?}");
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("PUT /v2/team/other/blobs/uploads/"))
            .count(),
        0,
        "{log:#?}"
    );
    assert!(
        report
            .blobs
            .iter()
            .all(|(_, _, o)| *o == BlobOutcome::Mounted),
        "{report:?}"
    );
    assert_eq!(c.get_manifest(&b).await.unwrap().bytes, image.manifest);

    // Two destinations at once: the second mounts from the first.
    proxy.clear();
    let image3 = make_image(&store, 3, &[100, 200]);
    let x = r(&format!("{}/team/x:1", proxy.addr));
    let y = r(&format!("{}/team/y:1", proxy.addr));
    let rep = c
        .push_image(&[x, y.clone()], &image3, &store)
        .await
        .unwrap();
    let y_outcomes: Vec<_> = rep
        .blobs
        .iter()
        .filter(|(repo, _, _)| *repo == y.repository)
        .map(|(_, _, o)| *o)
        .collect();
    assert_eq!(y_outcomes, vec![BlobOutcome::Mounted; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_and_resume_after_a_cut_patch() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let big = store_random_blob(&store, 42, 20 << 20);
    let chunk = 1 << 20;
    let c = client(&[&proxy.addr], |cfg| {
        cfg.monolithic_threshold = 1 << 20;
        cfg.chunk_size = chunk;
    });
    let repo = Repository::parse(&format!("{}/team/big", proxy.addr)).unwrap();
    // The fourth PATCH is cut after half its bytes: the client asks where the upload stands
    // and goes on from there.
    proxy.add_rule(
        "PATCH",
        "/v2/team/big/blobs/uploads/",
        3,
        1,
        Fault::CutAfter(chunk / 2),
    );
    let outcome = c.ensure_blob(&repo, &big, &store).await.unwrap();
    assert_eq!(outcome, BlobOutcome::Uploaded);
    let log = proxy.requests();
    let patches = proxy.count("PATCH", "/v2/team/big/blobs/uploads/");
    assert_eq!(patches, 21, "20 chunks plus the one cut: {log:#?}");
    assert_eq!(
        proxy.count("GET", "/v2/team/big/blobs/uploads/"),
        1,
        "{log:#?}"
    );
    assert_eq!(
        proxy.count("POST", "/v2/team/big/blobs/uploads/"),
        1,
        "no restart: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("PUT ") && l.contains("digest=sha256%3A")),
        "{log:#?}"
    );
    let pulled = BlobStore::open(dir.path().join("pulled")).unwrap();
    assert_eq!(
        c.pull_blob(&repo, &big.digest, Some(big.size), &pulled)
            .await
            .unwrap(),
        20 << 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_429_with_retry_after_and_on_5xx() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 4, &[1234]);
    let c = client(&[&proxy.addr], |_| {});
    proxy.add_rule("HEAD", "/blobs/", 0, 2, Fault::Respond(503, vec![]));
    proxy.add_rule(
        "PUT",
        "/manifests/v1",
        0,
        1,
        Fault::Respond(429, vec![("Retry-After".into(), "1".into())]),
    );
    proxy.add_rule("POST", "/blobs/uploads/", 0, 1, Fault::Respond(502, vec![]));
    let dest = r(&format!("{}/team/retry:v1", proxy.addr));
    let started = Instant::now();
    c.push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(
        proxy.count("PUT", "/manifests/v1"),
        2,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(c.get_manifest(&dest).await.unwrap().bytes, image.manifest);

    // Retries run out: the error names the registry, repository and status.
    let c0 = client(&[&proxy.addr], |cfg| cfg.retries = 1);
    proxy.clear();
    proxy.add_rule("GET", "/manifests/v1", 0, 5, Fault::Respond(500, vec![]));
    let e = c0.get_manifest(&dest).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Status { status: 500, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&proxy.addr) && msg.contains("team/retry") && msg.contains("500"),
        "{msg}"
    );
    assert_eq!(proxy.count("GET", "/manifests/v1"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_content_is_refused_and_nothing_is_stored() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("a")).unwrap();
    let image = make_image(&store, 5, &[4096]);
    let c = client(&[&reg.addr], |_| {});
    let dest = r(&format!("{}/team/tamper:v1", reg.addr));
    let report = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();

    // Same length, other bytes: the registry serves them as they are.
    let layer = &image.layers[0];
    std::fs::write(reg.blob_data(&layer.digest), vec![0u8; 4096]).unwrap();
    let fresh = BlobStore::open(dir.path().join("b")).unwrap();
    let e = c
        .pull_blob(&dest.repository, &layer.digest, None, &fresh)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e:?}");
    assert!(!fresh.contains(&layer.digest));
    assert_eq!(
        std::fs::read_dir(dir.path().join("b/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("b/tmp")).unwrap().count(),
        0
    );

    // Still valid JSON of the same length, so only the digest tells.
    let m = String::from_utf8(image.manifest.clone())
        .unwrap()
        .replacen("  ", "\t ", 1)
        .into_bytes();
    assert_eq!(m.len(), image.manifest.len());
    std::fs::write(reg.blob_data(&report.digest), &m).unwrap();
    let pinned = r(&format!("{}/team/tamper@{}", reg.addr, report.digest));
    let e = c.get_manifest(&pinned).await.unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_pulls_go_to_the_mirror_first() {
    let reg = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 6, &[10]);
    let c = client(&[&reg.addr], |_| {});
    c.push_image(
        &[r(&format!("{}/library/busybox:1.36", reg.addr))],
        &image,
        &store,
    )
    .await
    .unwrap();
    // A mirror that is down is passed over.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let m = client(&[&reg.addr], |cfg| {
        cfg.retries = 0;
        cfg.registry_mirrors = vec![format!("http://{dead}"), format!("http://{}", reg.addr)]
    });
    let got = m.get_manifest(&r("busybox:1.36")).await.unwrap();
    assert_eq!(got.bytes, image.manifest);
    let fresh = BlobStore::open(dir.path().join("f")).unwrap();
    m.pull_blob(
        &r("busybox").repository,
        &image.layers[0].digest,
        None,
        &fresh,
    )
    .await
    .unwrap();
    assert!(fresh.contains(&image.layers[0].digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_things_are_named() {
    let reg = Registry::plain();
    let c = client(&[&reg.addr], |_| {});
    let e = c
        .get_manifest(&r(&format!("{}/team/none:v9", reg.addr)))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("manifest v9 not found in {}/team/none", reg.addr)
    );
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let d = Digest::of(b"nothing");
    let e = c
        .pull_blob(
            &Repository::parse(&format!("{}/team/none", reg.addr)).unwrap(),
            &d,
            None,
            &store,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("blob {d} not found")),
        "{e}"
    );
    assert!(e.to_string().contains(&reg.addr), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_halves_the_chunk_size_and_a_too_large_put_goes_chunked() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let blob = store_random_blob(&store, 77, 3 << 20);
    let c = client(&[&proxy.addr], |cfg| {
        cfg.monolithic_threshold = 0;
        cfg.chunk_size = 2 << 20;
    });
    let repo = Repository::parse(&format!("{}/team/limit", proxy.addr)).unwrap();
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        0,
        1,
        Fault::Respond(413, vec![]),
    );
    assert_eq!(
        c.ensure_blob(&repo, &blob, &store).await.unwrap(),
        BlobOutcome::Uploaded
    );
    // 413 on 2 MiB, then 1 MiB chunks: 3 of them.
    assert_eq!(
        proxy.count("PATCH", "/blobs/uploads/"),
        4,
        "{:#?}",
        proxy.requests()
    );

    // A monolithic PUT refused as too large is sent again in chunks.
    proxy.clear();
    let blob2 = store_random_blob(&store, 78, 100_000);
    let c2 = client(&[&proxy.addr], |_| {});
    proxy.add_rule("PUT", "/blobs/uploads/", 0, 1, Fault::Respond(413, vec![]));
    assert_eq!(
        c2.ensure_blob(&repo, &blob2, &store).await.unwrap(),
        BlobOutcome::Uploaded
    );
    assert_eq!(
        proxy.count("PATCH", "/blobs/uploads/"),
        1,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        2,
        "{:#?}",
        proxy.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_recover_when_the_registry_kept_part_of_a_broken_request() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let repo = Repository::parse(&format!("{}/team/partial", proxy.addr)).unwrap();

    // A chunk the registry got half of: the session is beyond repair in distribution (its
    // state no longer matches the file), so the client starts a new upload.
    let big = store_random_blob(&store, 90, 4 << 20);
    let c = client(&[&proxy.addr], |cfg| {
        cfg.monolithic_threshold = 0;
        cfg.chunk_size = 1 << 20;
    });
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        1,
        1,
        Fault::ForwardThenCut(300_000),
    );
    assert_eq!(
        c.ensure_blob(&repo, &big, &store).await.unwrap(),
        BlobOutcome::Uploaded
    );
    let log = proxy.requests();
    assert_eq!(proxy.count("GET", "/blobs/uploads/"), 1, "{log:#?}");
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 2, "{log:#?}");
    let pulled = BlobStore::open(dir.path().join("p")).unwrap();
    c.pull_blob(&repo, &big.digest, Some(big.size), &pulled)
        .await
        .unwrap();

    // A monolithic PUT cut mid-way: a new session, the whole blob again.
    proxy.clear();
    let small = store_random_blob(&store, 91, 500_000);
    let c2 = client(&[&proxy.addr], |_| {});
    proxy.add_rule(
        "PUT",
        "/blobs/uploads/",
        0,
        1,
        Fault::ForwardThenCut(200_000),
    );
    assert_eq!(
        c2.ensure_blob(&repo, &small, &store).await.unwrap(),
        BlobOutcome::Uploaded
    );
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        2,
        "{:#?}",
        proxy.requests()
    );
    c2.pull_blob(&repo, &small.digest, Some(small.size), &pulled)
        .await
        .unwrap();
}
