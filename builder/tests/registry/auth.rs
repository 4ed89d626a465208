//! Authentication against a real `docker-registry`: htpasswd over TLS with a test CA, and token
//! auth with an in-process issuer granting per-user rights. Secrets never show in errors.

use kiln_testkit::registry as registry_server;

use base64::Engine as _;
use kiln::blob::BlobStore;
use kiln::registry::{
    BlobOutcome, CredentialResolver, Environment, Reference, RegistryClient, RegistryConfig,
    RegistryError,
};
use kiln_registry_auth::Credential;
use registry_server::{make_image, Fault, Proxy, Registry, Storage, TokenIssuer};
use std::time::Duration;

const CI_PASSWORD: &str = "ci-Pa55word-9f3e1c";
const READER_PASSWORD: &str = "reader-Pa55word-77ab0d";

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn config() -> RegistryConfig {
    RegistryConfig {
        retry_base_delay: Duration::from_millis(20),
        ..RegistryConfig::default()
    }
}

/// The forms a password can leak in: itself and inside Basic credentials.
fn leak_forms(user: &str, password: &str) -> Vec<String> {
    vec![
        password.to_string(),
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
    ]
}

fn assert_no_secret(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "secret leaked in: {text}");
    }
}

fn docker_auth_config(host: &str, user: &str, password: &str) -> Environment {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Environment::new().with(
        "DOCKER_AUTH_CONFIG",
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_over_tls_with_a_custom_ca() {
    let reg = Registry::htpasswd_tls(&[("ci", CI_PASSWORD)]);
    let ca = reg.ca_pem.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 10, &[2048, 4096]);
    let dest = r(&format!("{}/team/tls:v1", reg.addr));
    let secrets = leak_forms("ci", CI_PASSWORD);

    let good = RegistryClient::new(
        RegistryConfig {
            ca_certificates: vec![ca.clone()],
            ..config()
        },
        CredentialResolver::new(Environment::new())
            .with_credential(&reg.addr, Credential::basic("ci", CI_PASSWORD)),
    )
    .unwrap();
    let report = good
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    let got = good.get_manifest(&dest).await.unwrap();
    assert_eq!(got.bytes, image.manifest);
    assert_eq!(got.digest, report.digest);
    assert_no_secret(&format!("{good:?}"), &secrets);

    // Without the CA, TLS fails (and says so without secrets).
    let untrusting = RegistryClient::new(
        config(),
        CredentialResolver::new(Environment::new())
            .with_credential(&reg.addr, Credential::basic("ci", CI_PASSWORD)),
    )
    .unwrap();
    let e = untrusting.get_manifest(&dest).await.unwrap_err();
    assert!(matches!(e, RegistryError::Transport { .. }), "{e:?}");
    assert_no_secret(&format!("{e} {e:?}"), &secrets);

    // A wrong password is refused, naming registry and repository, without showing either password.
    let wrong = "not-the-Pa55word-31337";
    let bad = RegistryClient::new(
        RegistryConfig {
            ca_certificates: vec![ca.clone()],
            ..config()
        },
        CredentialResolver::new(Environment::new())
            .with_credential(&reg.addr, Credential::basic("ci", wrong)),
    )
    .unwrap();
    let e = bad.get_manifest(&dest).await.unwrap_err();
    let text = format!("{e} {e:?} {bad:?}");
    eprintln!("wrong password: {e}");
    assert!(matches!(e, RegistryError::Rejected { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!(
            "{} refused the given credentials for team/tls",
            reg.addr
        )),
        "{e}"
    );
    assert!(
        text.contains(&reg.addr) && text.contains("team/tls"),
        "{text}"
    );
    assert_no_secret(&text, &leak_forms("ci", wrong));
    assert_no_secret(&text, &secrets);

    // Anonymous push: denied, and the message says whose rights are missing.
    let anon = RegistryClient::new(
        RegistryConfig {
            ca_certificates: vec![ca],
            ..config()
        },
        CredentialResolver::new(Environment::new()),
    )
    .unwrap();
    let e = anon
        .push_image(&[dest.with_tag("anon").unwrap()], &image, &store)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "push to {}/team/tls denied: anonymous access lacks push rights",
            reg.addr
        )),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_tls_verify_accepts_an_unknown_ca_for_the_named_registries_only() {
    let reg = Registry::htpasswd_tls(&[("ci", CI_PASSWORD)]);
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 11, &[1024, 70_000]);
    let dest = r(&format!("{}/team/skip:v1", reg.addr));
    let creds = || {
        CredentialResolver::new(Environment::new())
            .with_credential(&reg.addr, Credential::basic("ci", CI_PASSWORD))
    };
    // Named: push and pull work without the CA.
    let named = RegistryClient::new(
        RegistryConfig {
            skip_tls_verify_registries: vec![reg.addr.clone()],
            ..config()
        },
        creds(),
    )
    .unwrap();
    named
        .push_image(std::slice::from_ref(&dest), &image, &store)
        .await
        .unwrap();
    assert_eq!(
        named.get_manifest(&dest).await.unwrap().bytes,
        image.manifest
    );
    // Every registry: the same.
    let all = RegistryClient::new(
        RegistryConfig {
            skip_tls_verify: true,
            ..config()
        },
        creds(),
    )
    .unwrap();
    assert_eq!(all.get_manifest(&dest).await.unwrap().bytes, image.manifest);
    // Another registry named: this one is still verified, and its certificate refused.
    let other = RegistryClient::new(
        RegistryConfig {
            skip_tls_verify_registries: vec!["127.0.0.1:1".into()],
            ..config()
        },
        creds(),
    )
    .unwrap();
    let e = other.get_manifest(&dest).await.unwrap_err();
    assert!(matches!(e, RegistryError::Transport { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_rights_mounts_and_denials() {
    let issuer = TokenIssuer::start(&[
        ("ci", CI_PASSWORD, Some("team/")),
        ("reader", READER_PASSWORD, None),
    ])
    .await;
    let reg = Registry::token(&issuer);
    let proxy = Proxy::start(&reg.addr).await;
    let host = proxy.addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 20, &[3000, 5000]);
    let mk = |env: Environment| {
        RegistryClient::new(
            RegistryConfig {
                insecure_registries: vec![host.clone()],
                ..config()
            },
            CredentialResolver::new(env),
        )
        .unwrap()
    };
    let ci = mk(docker_auth_config(&host, "ci", CI_PASSWORD));
    let reader = mk(docker_auth_config(&host, "reader", READER_PASSWORD));

    // ci pushes team/app and reads it back.
    let app = r(&format!("{host}/team/app:v1"));
    let report = ci
        .push_image(std::slice::from_ref(&app), &image, &store)
        .await
        .unwrap();
    assert_eq!(ci.get_manifest(&app).await.unwrap().bytes, image.manifest);

    // A cross-repository mount asks for pull on the source too, and happens.
    proxy.clear();
    let mut image2 = image.clone();
    for b in image2.layers.iter_mut().chain([&mut image2.config]) {
        b.mount_from = Some(app.repository.clone());
    }
    let other = r(&format!("{host}/team/other:v1"));
    let rep2 = ci
        .push_image(std::slice::from_ref(&other), &image2, &store)
        .await
        .unwrap();
    assert!(
        rep2.blobs
            .iter()
            .all(|(_, _, o)| *o == BlobOutcome::Mounted),
        "{rep2:?} {:#?}",
        proxy.requests()
    );
    assert_eq!(proxy.count("PATCH", "/blobs/uploads/"), 0);
    let scopes = issuer.requests.lock().unwrap().clone();
    assert!(
        scopes
            .iter()
            .any(|s| s.contains("repository:team/other:pull,push")
                && s.contains("repository:team/app:pull")),
        "{scopes:#?}"
    );

    // A 401 mid-push (token revoked): the client forgets its token, gets a new one, goes on.
    let before = issuer.tokens().len();
    let challenge = format!(
        "Bearer realm=\"{}\",service=\"{}\",error=\"invalid_token\"",
        issuer.realm,
        TokenIssuer::SERVICE
    );
    proxy.add_rule(
        "HEAD",
        "/v2/team/third/blobs/",
        0,
        1,
        Fault::Respond(401, vec![("WWW-Authenticate".into(), challenge)]),
    );
    let third = r(&format!("{host}/team/third:v1"));
    ci.push_image(std::slice::from_ref(&third), &image, &store)
        .await
        .unwrap();
    assert!(issuer.tokens().len() > before);

    // reader may pull ...
    assert_eq!(
        reader.get_manifest(&app).await.unwrap().digest,
        report.digest
    );
    // ... but not push: the error names registry, repository, the right and the credentials'
    // origin, and no tag appears.
    let target = r(&format!("{host}/team/app2:v1"));
    let e = reader
        .push_image(std::slice::from_ref(&target), &image, &store)
        .await
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("reader push: {msg}");
    assert!(
        msg.starts_with(&format!(
            "push to {host}/team/app2 denied: the credentials from DOCKER_AUTH_CONFIG lack push rights (registry said: "
        )),
        "{msg}"
    );
    match ci.get_manifest(&target).await {
        Err(RegistryError::NotFound { .. }) => {}
        other => panic!("tag exists after a denied push: {other:?}"),
    }

    // No password and no token in any error or Debug output.
    let mut secrets = leak_forms("ci", CI_PASSWORD);
    secrets.extend(leak_forms("reader", READER_PASSWORD));
    secrets.extend(issuer.tokens());
    assert!(!issuer.tokens().is_empty());
    let bad = mk(docker_auth_config(&host, "ci", "wrong-Pa55-1234"));
    let e2 = bad.get_manifest(&app).await.unwrap_err();
    secrets.extend(leak_forms("ci", "wrong-Pa55-1234"));
    let text = format!("{e} {e:?} {e2} {e2:?} {ci:?} {reader:?} {bad:?}");
    eprintln!("wrong password: {e2}");
    assert!(text.contains("team/app"), "{text}");
    assert_no_secret(&text, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_storage_carry_no_authorization() {
    let issuer = TokenIssuer::start(&[("ci", CI_PASSWORD, Some("team/"))]).await;
    let reg = Registry::token(&issuer);
    let proxy = Proxy::start(&reg.addr).await;
    let host = proxy.addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let image = make_image(&store, 30, &[777]);
    let ci = RegistryClient::new(
        RegistryConfig {
            insecure_registries: vec![host.clone()],
            ..config()
        },
        CredentialResolver::new(docker_auth_config(&host, "ci", CI_PASSWORD)),
    )
    .unwrap();
    let app = r(&format!("{host}/team/redirect:v1"));
    ci.push_image(std::slice::from_ref(&app), &image, &store)
        .await
        .unwrap();

    let layer = &image.layers[0];
    let bytes = std::fs::read(store.path(&layer.digest)).unwrap();
    let storage = Storage::start(bytes).await;
    proxy.add_rule(
        "GET",
        &format!("/blobs/{}", layer.digest),
        0,
        1,
        Fault::Respond(307, vec![("Location".into(), storage.url.clone())]),
    );
    let fresh = BlobStore::open(dir.path().join("fresh")).unwrap();
    ci.pull_blob(&app.repository, &layer.digest, Some(layer.size), &fresh)
        .await
        .unwrap();
    assert!(fresh.contains(&layer.digest));
    let seen = storage.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0]
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("authorization")),
        "{seen:?}"
    );
    // The registry itself did get a token (the redirecting GET was authorized).
    assert!(!issuer.tokens().is_empty());
}
