//! kaniko's CI shape for every corpus case (issue 13): a job builds with `--cache-repo` and
//! pushes, the next starts with an empty cache directory and builds the same again. That
//! rebuild must run no step, download no layer (its summary says `0 B downloaded`, which
//! counts a build stage's layers too, and the logging proxy in front of the registry sees no
//! GET of a blob of the image's layers) and push the same layers.
//!
//! Needs root (chroot isolation for the RUN steps), buildah (the corpus's base image),
//! docker-registry and busybox-static: skipped without them, failed in CI.
//! `KILN_CORPUS_CASES` filters the cases as in `tests/equivalence.rs`.

use kiln_testkit::registry as registry_server;

use kiln_tests::corpus::{
    buildah_store, case_filter, load_cases, missing_as_root, push_base, run, tail, tools_here,
    Case, BASE_REF,
};
use registry_server::{Proxy, Registry};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

fn missing_tools() -> Option<String> {
    missing_as_root(
        &[
            "/usr/bin/buildah",
            registry_server::REGISTRY_BIN,
            "/usr/bin/busybox",
        ],
        "buildah docker-registry busybox-static",
    )
}

/// `kiln build` of `case` pushed to `image` through the proxy at `addr`, with the case's
/// cache repository and a cache directory of its own.
fn build(case: &Case, base: &str, addr: &str, image: &str, cache: &Path) -> (bool, String) {
    let mut c = case.kiln_build(base);
    c.arg("--destination")
        .arg(image)
        .arg("--cache=true")
        .arg(format!("--cache-repo={addr}/kiln-cache/{}", case.name))
        .arg("--cache-dir")
        .arg(cache)
        .arg("--insecure-registry")
        .arg(addr)
        .arg("--progress")
        .arg("plain");
    let o = c.output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), log)
}

/// The layer digests of `image`'s manifest, read through skopeo.
fn layers(image: &str) -> Result<Vec<String>, String> {
    let o = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{image}")))?;
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    Ok(m["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["digest"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn image(proxy: &Proxy, case: &Case, n: u32) -> String {
    format!("{}/kiln-rebuild/{}:{n}", proxy.addr, case.name)
}

/// The first job: builds `case` from nothing and fills its cache repository.
fn first(case: &Case, base: &str, proxy: &Proxy, work: &Path) -> Result<(), String> {
    let (ok, log) = build(
        case,
        base,
        &proxy.addr,
        &image(proxy, case, 1),
        &work.join("cache1"),
    );
    if !ok {
        return Err(format!(
            "the first build failed:\n{}",
            tail(log.as_bytes(), 20)
        ));
    }
    Ok(())
}

/// The second job, on fresh state: what it got wrong, if anything. Layer GETs are checked
/// after all of them (no build of this phase may fetch one).
fn second(
    case: &Case,
    base: &str,
    proxy: &Proxy,
    registry: &str,
    work: &Path,
) -> Result<Vec<String>, String> {
    let (ok, log) = build(
        case,
        base,
        &proxy.addr,
        &image(proxy, case, 2),
        &work.join("cache2"),
    );
    if !ok {
        return Err(format!("the rebuild failed:\n{}", tail(log.as_bytes(), 20)));
    }
    let summary = log
        .lines()
        .rfind(|l| l.contains(" built sha256:"))
        .unwrap_or_default();
    if !summary.contains(" 0 steps run,") || !summary.contains("; 0 B downloaded)") {
        return Err(format!(
            "the rebuild ran or downloaded:\n{}",
            tail(log.as_bytes(), 30)
        ));
    }
    // Read from the registry itself: skopeo waits on the proxy's connection handling.
    let direct = |n| image(proxy, case, n).replacen(&proxy.addr, registry, 1);
    let first = layers(&direct(1))?;
    let second = layers(&direct(2))?;
    if first != second {
        return Err(format!(
            "the rebuild pushed other layers: {first:?} then {second:?}"
        ));
    }
    Ok(second)
}

/// Runs `job` for every case, two at a time; the failures, by case.
fn each_case<T: Send>(
    cases: &[Case],
    phase: &str,
    job: impl Fn(&Case) -> Result<T, String> + Sync,
) -> Vec<(String, Result<T, String>)> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let t = Instant::now();
                    let r = job(case);
                    eprintln!(
                        "{} {phase} {} ({:.1}s)",
                        if r.is_ok() { "ok  " } else { "FAIL" },
                        case.name,
                        t.elapsed().as_secs_f64()
                    );
                    results.lock().unwrap().push((case.name.clone(), r));
                }
            });
        }
    });
    let mut r = results.into_inner().unwrap();
    r.sort_by(|a, b| a.0.cmp(&b.0));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_rebuild_of_every_case_on_fresh_state_downloads_nothing() {
    if !tools_here(
        "a_cached_rebuild_of_every_case_on_fresh_state_downloads_nothing",
        missing_tools(),
    ) {
        return;
    }
    let start = Instant::now();
    let registry = Registry::plain();
    let proxy = Proxy::start(&registry.addr).await;
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("buildah");
    push_base(&registry.addr, &buildah_store(&store));
    let base = format!("{}/{BASE_REF}", proxy.addr);
    let cases = load_cases(&case_filter());
    assert!(!cases.is_empty(), "no corpus case selected");
    let dir = |case: &Case, n: &str| {
        let d = work.path().join(&case.name).join(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let mut failed: Vec<String> = Vec::new();
    for (name, r) in each_case(&cases, "first", |c| first(c, &base, &proxy, &dir(c, "1"))) {
        if let Err(e) = r {
            failed.push(format!("=== {name}\n{e}"));
        }
    }
    proxy.clear();
    let rebuilt = each_case(&cases, "rebuild", |c| {
        second(c, &base, &proxy, &registry.addr, &dir(c, "2"))
    });
    let gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/"))
        .collect();
    for (name, r) in rebuilt {
        match r {
            Err(e) => failed.push(format!("=== {name}\n{e}")),
            Ok(layers) => {
                let fetched: Vec<&String> = gets
                    .iter()
                    .filter(|g| layers.iter().any(|l| g.contains(l.as_str())))
                    .collect();
                if !fetched.is_empty() {
                    failed.push(format!("=== {name}\nlayer blobs fetched: {fetched:?}"));
                }
            }
        }
    }
    eprintln!(
        "{} cases in {:.1}s, {} failed",
        cases.len(),
        start.elapsed().as_secs_f64(),
        failed.len()
    );
    assert!(failed.is_empty(), "\n{}", failed.join("\n\n"));
}
