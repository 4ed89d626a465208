//! Pushes through a fault-injecting proxy in front of a real `docker-registry`: an expired token
//! mid-upload, a 416 whose `Range` does not advance, a reset connection, 5xx and 429. Each push
//! either completes, or fails with an error naming what went wrong, and then no tag names the
//! image (checked with a GET straight to the registry).

use kiln_testkit::registry as registry_server;

use kiln::blob::BlobStore;
use kiln::registry::{
    CredentialResolver, Environment, Reference, RegistryClient, RegistryConfig, RegistryError,
};
use kiln_registry_auth::Credential;
use registry_server::{make_image, Fault, Proxy, Registry, TokenIssuer};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn client(insecure: &str, tweak: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut cfg = RegistryConfig {
        insecure_registries: vec![insecure.to_string()],
        retry_base_delay: Duration::from_millis(20),
        chunk_size: MIB,
        monolithic_threshold: MIB as u64,
        ..RegistryConfig::default()
    };
    tweak(&mut cfg);
    RegistryClient::new(cfg, CredentialResolver::new(Environment::new())).unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// The tag `tag` of `repo` does not exist on the registry itself (no proxy, no faults).
async fn assert_no_tag(reg: &Registry, repo: &str, tag: &str) {
    let direct = client(&reg.addr, |_| {});
    match direct
        .get_manifest(&r(&format!("{}/{repo}:{tag}", reg.addr)))
        .await
    {
        Err(RegistryError::NotFound { .. }) => {}
        other => panic!("{repo}:{tag} exists after a failed push: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_upload_is_renewed_and_the_push_completes() {
    let password = "ci-Pa55word-expiring";
    // The registry takes each token for 2 s, while the issuer tells the client 300 s.
    let issuer = TokenIssuer::start_with_validity(&[("ci", password, Some("team/"))], 2).await;
    let reg = Registry::token(&issuer);
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 201, &[3 * MIB]);
    let c = RegistryClient::new(
        RegistryConfig {
            insecure_registries: vec![proxy.addr.clone()],
            retry_base_delay: Duration::from_millis(20),
            chunk_size: MIB,
            monolithic_threshold: MIB as u64,
            ..RegistryConfig::default()
        },
        CredentialResolver::new(Environment::new())
            .with_credential(&proxy.addr, Credential::basic("ci", password)),
    )
    .unwrap();
    // The second chunk reaches the registry after the token has expired there.
    proxy.add_rule(
        "PATCH",
        "/v2/team/expiring/blobs/uploads/",
        1,
        1,
        Fault::Delay(Duration::from_millis(3500)),
    );
    let dest = r(&format!("{}/team/expiring:v1", proxy.addr));
    let report = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    let log = proxy.requests();
    assert!(
        issuer.tokens().len() >= 2,
        "no new token: {:?}",
        issuer.requests
    );
    // The upload went on in its session: one POST per blob, no restart.
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 2, "{log:#?}");
    let got = c.get_manifest(&dest).await.unwrap();
    assert_eq!(got.bytes, image.manifest);
    assert_eq!(got.digest, report.digest);
    let pulled = BlobStore::open(dir.path().join("pulled")).unwrap();
    let layer = &image.layers[0];
    c.pull_blob(&dest.repository, &layer.digest, Some(layer.size), &pulled)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_whose_range_does_not_advance_fails_clearly_and_leaves_no_tag() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 202, &[3 * MIB]);
    let c = client(&proxy.addr, |cfg| cfg.retries = 2);
    // The first chunk goes through; every later one is refused, while the session's status
    // keeps saying the registry is where the client is.
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        1,
        100,
        Fault::Respond(416, vec![("Range".into(), format!("0-{}", MIB - 1))]),
    );
    let dest = r(&format!("{}/team/stuck:v1", proxy.addr));
    let started = Instant::now();
    let e = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("416: {msg}");
    assert!(matches!(e, RegistryError::Protocol { .. }), "{e:?}");
    assert!(
        msg.contains(&proxy.addr)
            && msg.contains("team/stuck")
            && msg.contains("416")
            && msg.contains("cannot go on"),
        "{msg}"
    );
    // Bounded: one session per allowed restart, each given up at the first stuck answer.
    let log = proxy.requests();
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 3, "{log:#?}");
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 4, "{log:#?}");
    assert_eq!(proxy.count("PUT", "/manifests/"), 0, "{log:#?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_no_tag(&reg, "team/stuck", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_accepted_without_progress_end_in_a_clear_error() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 208, &[3 * MIB]);
    let c = client(&proxy.addr, |cfg| cfg.retries = 1);
    // After the first chunk, every chunk is "accepted" while the Range stays put.
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        1,
        100,
        Fault::Respond(
            202,
            vec![
                ("Location".into(), "{path}".into()),
                ("Range".into(), format!("0-{}", MIB - 1)),
            ],
        ),
    );
    let dest = r(&format!("{}/team/still:v1", proxy.addr));
    let e = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("no progress: {msg}");
    assert!(matches!(e, RegistryError::Protocol { .. }), "{e:?}");
    assert!(
        msg.contains("team/still") && msg.contains(&format!("stays at byte {MIB} of")),
        "{msg}"
    );
    assert!(proxy.count("PATCH", "/blobs/uploads/") < 20);
    assert_no_tag(&reg, "team/still", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_blob_resumes_where_the_registry_stands() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 203, &[5 * MIB, 2000]);
    let c = client(&proxy.addr, |_| {});
    // The third chunk's connection is reset half-way (RST).
    proxy.add_rule("PATCH", "/blobs/uploads/", 2, 1, Fault::ResetAfter(MIB / 2));
    let dest = r(&format!("{}/team/reset:v1", proxy.addr));
    let report = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    let log = proxy.requests();
    // Asked where the upload stands once, sent the lost chunk again, never restarted.
    assert_eq!(proxy.count("GET", "/blobs/uploads/"), 1, "{log:#?}");
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 6, "{log:#?}");
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 3, "{log:#?}");
    let direct = client(&reg.addr, |_| {});
    let at_registry = r(&format!("{}/team/reset:v1", reg.addr));
    let got = direct.get_manifest(&at_registry).await.unwrap();
    assert_eq!(got.digest, report.digest);
    let pulled = BlobStore::open(dir.path().join("pulled")).unwrap();
    for l in &image.layers {
        direct
            .pull_blob(&at_registry.repository, &l.digest, Some(l.size), &pulled)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_lasting_ones_leave_no_tag() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 204, &[3 * MIB]);
    let c = client(&proxy.addr, |cfg| cfg.retries = 2);
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        1,
        1,
        Fault::Respond(500, vec![]),
    );
    // The chunked upload's closing PUT, then the manifest by digest.
    proxy.add_rule("PUT", "/blobs/uploads/", 0, 1, Fault::Respond(503, vec![]));
    proxy.add_rule(
        "PUT",
        "/manifests/sha256:",
        0,
        1,
        Fault::Respond(500, vec![]),
    );
    let dest = r(&format!("{}/team/flaky:v1", proxy.addr));
    let report = c
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    let direct = client(&reg.addr, |_| {});
    let got = direct
        .get_manifest(&r(&format!("{}/team/flaky:v1", reg.addr)))
        .await
        .unwrap();
    assert_eq!(got.digest, report.digest);

    // A blob the registry never takes: the push stops before any manifest.
    proxy.clear();
    let image2 = make_image(&store, 205, &[3 * MIB]);
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        0,
        1000,
        Fault::Respond(503, vec![]),
    );
    let e = c
        .push_image(
            &[r(&format!("{}/team/flaky:v2", proxy.addr))],
            &image2,
            &store,
        )
        .await
        .unwrap_err();
    eprintln!("lasting 503 on chunks: {e}");
    assert!(
        matches!(e, RegistryError::Status { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("team/flaky"), "{e}");
    assert_eq!(proxy.count("PUT", "/manifests/"), 0);
    assert_no_tag(&reg, "team/flaky", "v2").await;

    // The tag itself refused: the manifest is there by digest, but no tag points to it.
    proxy.clear();
    proxy.rules.lock().unwrap().clear();
    let image3 = make_image(&store, 206, &[1000]);
    proxy.add_rule("PUT", "/manifests/v3", 0, 1000, Fault::Respond(503, vec![]));
    let e = c
        .push_image(
            &[r(&format!("{}/team/flaky:v3", proxy.addr))],
            &image3,
            &store,
        )
        .await
        .unwrap_err();
    eprintln!("lasting 503 on the tag: {e}");
    assert!(
        matches!(e, RegistryError::Status { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("put manifest v3"), "{e}");
    assert_eq!(proxy.count("PUT", "/manifests/v3"), 3);
    assert_no_tag(&reg, "team/flaky", "v3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_a_chunk_waits_as_long_as_retry_after_says() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 207, &[3 * MIB]);
    let c = client(&proxy.addr, |_| {});
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        1,
        1,
        Fault::Respond(429, vec![("Retry-After".into(), "2".into())]),
    );
    let dest = r(&format!("{}/team/slow:v1", proxy.addr));
    let started = Instant::now();
    c.push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured: {:?}",
        started.elapsed()
    );
    let log = proxy.requests();
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 4, "{log:#?}");
    assert_eq!(proxy.count("GET", "/blobs/uploads/"), 1, "{log:#?}");
    assert_eq!(c.get_manifest(&dest).await.unwrap().bytes, image.manifest);
}

/// A download broken mid-body goes on from the bytes already written (a `Range` request), and
/// the blob is stored only when the whole of it matches its digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_mid_body_resumes_from_where_it_broke() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("pushed")).unwrap();
    let image = make_image(&store, 303, &[4 * MIB]);
    let c = client(&proxy.addr, |cfg| cfg.retries = 2);
    let dest = r(&format!("{}/resume/app:1", proxy.addr));
    c.push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    let layer = &image.layers[0];
    let blob_path = format!("/blobs/{}", layer.digest);

    // Three cuts in a row, each after about a megabyte: more than `retries`, yet each attempt
    // brings bytes, so the download goes on to the end.
    proxy.clear();
    proxy.add_rule("GET", &blob_path, 0, 3, Fault::CutResponseAfter(MIB));
    // The whole blob, stored under its digest, or the pull fails.
    let pull_whole = |into: &str| {
        let pulled = BlobStore::open(dir.path().join(into)).unwrap();
        let (c, repo) = (&c, &dest.repository);
        async move {
            let n = c
                .pull_blob(repo, &layer.digest, Some(layer.size), &pulled)
                .await
                .unwrap();
            assert_eq!(n, layer.size);
            assert_eq!(pulled.size(&layer.digest), Some(layer.size));
        }
    };
    pull_whole("pulled").await;
    let gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("GET ") && l.contains(&blob_path))
        .collect();
    assert_eq!(gets.len(), 4, "{gets:#?}");
    assert!(!gets[0].contains("Range"), "{gets:#?}");
    let mut last = 0;
    for g in &gets[1..] {
        let from: u64 = g
            .split("Range: bytes=")
            .nth(1)
            .and_then(|r| r.trim_end_matches('-').parse().ok())
            .unwrap_or_else(|| panic!("no resuming Range in {g}"));
        assert!(from > last, "resumed at {from} after {last}: {gets:#?}");
        last = from;
    }
    assert!(last < layer.size);

    // A server that ignores Range sends the whole blob again: the download starts over and
    // still stores exactly the blob.
    proxy.clear();
    proxy.add_rule("GET", &blob_path, 0, 1, Fault::CutResponseAfter(MIB));
    proxy.add_rule("GET", &blob_path, 0, 1, Fault::DropRange);
    pull_whole("pulled-again").await;
    assert_eq!(proxy.count("GET", &blob_path), 2);
}

/// A counted push reports every layer byte once, as it goes, through a delayed chunk and a
/// connection reset mid-chunk (whose resent bytes are not counted again); a counted pull
/// reports a blob's bytes before the caller finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_transfers_report_each_byte_once_through_a_reset() {
    use kiln::transfer::{Transfer, TransferSnapshot};
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 207, &[3 * MIB, 100 << 10]);
    let total: u64 = image.layers.iter().map(|l| l.size).sum();
    let c = client(&proxy.addr, |_| {});
    proxy.add_rule(
        "PATCH",
        "/blobs/uploads/",
        1,
        1,
        Fault::Delay(Duration::from_secs(3)),
    );
    // Rules apply first match first: the first PATCH passes, the second waits, the third is
    // reset half-way.
    proxy.add_rule("PATCH", "/blobs/uploads/", 0, 1, Fault::ResetAfter(MIB / 2));
    let t = Transfer::new();
    let dest = r(&format!("{}/team/counted:v1", proxy.addr));
    let push = {
        let (c, t, image, store, dest) = (
            c.clone(),
            t.clone(),
            image.clone(),
            store.clone(),
            dest.clone(),
        );
        tokio::spawn(async move {
            c.push_image_counted(std::slice::from_ref(&dest), &image, &store, Some(&t))
                .await
        })
    };
    // While the second chunk is held back (3 s, a long margin on a loaded machine), the first
    // is counted and the rest is not.
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.snapshot().bytes_done < MIB as u64 {
        assert!(
            Instant::now() < deadline,
            "the first chunk is never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mid = t.snapshot();
    assert_eq!(
        (mid.blobs, mid.bytes),
        (2, total),
        "announced up front: {mid:?}"
    );
    assert!(
        mid.bytes_done >= MIB as u64 && mid.bytes_done < total && mid.active(),
        "{mid:?}"
    );
    push.await.unwrap().unwrap();
    assert!(
        proxy.count("PATCH", "/blobs/uploads/") >= 4,
        "{:#?}",
        proxy.requests()
    );
    assert_eq!(
        t.snapshot(),
        TransferSnapshot {
            blobs: 2,
            blobs_done: 2,
            bytes: total,
            bytes_done: total,
            open_ended: false
        }
    );
    let pulled = BlobStore::open(dir.path().join("pulled")).unwrap();
    let big = &image.layers[0];
    let t = Transfer::new();
    let p = t.blob(Some(big.size));
    c.pull_blob_counted(
        &dest.repository,
        &big.digest,
        Some(big.size),
        &pulled,
        Some(&p),
    )
    .await
    .unwrap();
    assert_eq!(t.snapshot().bytes_done, big.size, "counted as received");
    assert_eq!(t.snapshot().blobs_done, 0);
    p.finish();
    assert_eq!(t.snapshot().blobs_done, 1);
}

/// A layer left in the registry for a cross-repository mount (a base or cache layer never
/// downloaded) still gets pushed when the registry refuses the mount: fetched from its source
/// repository, then uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_mount_fetches_the_blob_from_its_source_and_uploads_it() {
    let reg = Registry::plain();
    let proxy = Proxy::start(&reg.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path().join("first")).unwrap();
    let image = make_image(&store, 404, &[2 * MIB, MIB / 2]);
    let c = client(&proxy.addr, |_| {});
    let src = r(&format!("{}/base/img:1", proxy.addr));
    c.push_image(std::slice::from_ref(&src), &image, &store)
        .await
        .unwrap();
    // A fresh machine: only the config is local; the layers are the source's, to be mounted.
    let fresh = BlobStore::open(dir.path().join("fresh")).unwrap();
    fresh
        .put(&store_bytes(&store, &image.config.digest))
        .unwrap();
    let mut remote = image.clone();
    for l in &mut remote.layers {
        l.mount_from = Some(src.repository.clone());
    }
    proxy.clear();
    proxy.add_rule("POST", "mount=", 0, 100, Fault::Respond(403, vec![]));
    let dest = r(&format!("{}/app/img:1", proxy.addr));
    c.push_image(std::slice::from_ref(&dest), &remote, &fresh)
        .await
        .unwrap();
    for l in &image.layers {
        let from_source = format!("/v2/base/img/blobs/{}", l.digest);
        assert_eq!(
            proxy.count("GET", &from_source),
            1,
            "{:#?}",
            proxy.requests()
        );
        assert_eq!(fresh.size(&l.digest), Some(l.size));
    }
    let got = client(&reg.addr, |_| {})
        .get_manifest(&r(&format!("{}/app/img:1", reg.addr)))
        .await
        .unwrap();
    assert_eq!(got.bytes, image.manifest);
}

fn store_bytes(store: &BlobStore, d: &kiln::blob::Digest) -> Vec<u8> {
    std::fs::read(store.path(d)).unwrap()
}
