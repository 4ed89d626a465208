//! Precedence across credential sources, with real files and helper scripts.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::{env_with_path, write_helper};
use kiln_registry_auth::{
    Credential, CredentialResolver, CredentialSource, Environment, Secret, SourceError,
};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn auth_config(host: &str, user: &str, pass: &str) -> String {
    format!(
        r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
        b64(&format!("{user}:{pass}"))
    )
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

async fn resolve(r: &CredentialResolver, host: &str) -> Option<(Credential, CredentialSource)> {
    r.resolve(host)
        .await
        .unwrap()
        .map(|c| (c.credential, c.source))
}

#[tokio::test]
async fn full_precedence_chain() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let config = home.join(".docker/config.json");
    let kube = dir.path().join("kube/.dockerconfigjson");
    let host = "registry.example.com";
    write(&config, &auth_config(host, "file-user", "file-pw"));
    write(&kube, &auth_config(host, "kube-user", "kube-pw"));
    let env = Environment::new()
        .with("HOME", home.display().to_string())
        .with(
            "DOCKER_AUTH_CONFIG",
            auth_config(host, "env-user", "env-pw"),
        )
        .with("CI_REGISTRY", host)
        .with("CI_REGISTRY_USER", "gitlab-ci-token")
        .with("CI_REGISTRY_PASSWORD", "job-token");

    let base = CredentialResolver::new(env.clone()).with_kubernetes_secret(&kube);
    let explicit = base.clone().with_credential(
        "https://registry.example.com/",
        Credential::basic("cli", "cli-pw"),
    );
    assert_eq!(
        resolve(&explicit, host).await,
        Some((
            Credential::basic("cli", "cli-pw"),
            CredentialSource::Explicit
        ))
    );
    assert_eq!(
        resolve(&base, host).await,
        Some((
            Credential::basic("env-user", "env-pw"),
            CredentialSource::DockerAuthConfigEnv
        ))
    );

    let mut no_env_cfg = env.clone();
    no_env_cfg.set("DOCKER_AUTH_CONFIG", "");
    let r = CredentialResolver::new(no_env_cfg.clone()).with_kubernetes_secret(&kube);
    assert_eq!(
        resolve(&r, host).await,
        Some((
            Credential::basic("file-user", "file-pw"),
            CredentialSource::DockerConfigFile(config.clone())
        ))
    );

    std::fs::remove_file(&config).unwrap();
    assert_eq!(
        resolve(&r, host).await,
        Some((
            Credential::basic("kube-user", "kube-pw"),
            CredentialSource::KubernetesSecret(kube.clone())
        ))
    );

    let r = CredentialResolver::new(no_env_cfg);
    assert_eq!(
        resolve(&r, host).await,
        Some((
            Credential::basic("gitlab-ci-token", "job-token"),
            CredentialSource::GitLabRegistry
        ))
    );
    assert_eq!(resolve(&r, "other.example.com").await, None);
}

#[tokio::test]
async fn docker_config_env_var_beats_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let custom = dir.path().join("custom");
    write(
        &home.join(".docker/config.json"),
        &auth_config("ghcr.io", "home", "1"),
    );
    write(
        &custom.join("config.json"),
        &auth_config("ghcr.io", "custom", "2"),
    );
    let env = Environment::new().with("HOME", home.display().to_string());
    let r = CredentialResolver::new(env.clone());
    assert_eq!(
        resolve(&r, "ghcr.io").await.unwrap().0,
        Credential::basic("home", "1")
    );
    let r = CredentialResolver::new(env.with("DOCKER_CONFIG", custom.display().to_string()));
    assert_eq!(r.docker_config_path(), Some(custom.join("config.json")));
    assert_eq!(
        resolve(&r, "ghcr.io").await.unwrap().0,
        Credential::basic("custom", "2")
    );
    let explicit = dir.path().join("explicit.json");
    write(&explicit, &auth_config("ghcr.io", "explicit", "3"));
    let r = r.with_docker_config_file(&explicit);
    assert_eq!(
        resolve(&r, "ghcr.io").await.unwrap().0,
        Credential::basic("explicit", "3")
    );
}

#[tokio::test]
async fn docker_hub_spellings_share_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(
        &cfg,
        &auth_config("https://index.docker.io/v1/", "hub", "hub-pw"),
    );
    let r = CredentialResolver::new(Environment::new()).with_docker_config_file(&cfg);
    for host in [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io:443",
        "https://registry-1.docker.io/v2/",
    ] {
        assert_eq!(
            resolve(&r, host).await.unwrap().0,
            Credential::basic("hub", "hub-pw"),
            "{host}"
        );
    }
}

#[tokio::test]
async fn cred_helpers_before_creds_store_before_auths() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.path().join("calls.log");
    // Each helper logs what it was asked so the order can be checked.
    let helper = |who: &str, answers: bool| {
        let answer = if answers {
            format!(r#"echo '{{"Username":"{who}","Secret":"{who}-pw"}}'"#)
        } else {
            "echo 'credentials not found in native keychain'; exit 1".to_owned()
        };
        write_helper(
            &bin,
            who,
            &format!("echo \"{who} $(cat)\" >> {}\n{answer}", log.display()),
        );
    };
    helper("perhost", true);
    helper("store", true);
    helper("nothing", false);
    let cfg = dir.path().join("config.json");
    write(
        &cfg,
        &format!(
            r#"{{"credHelpers":{{"a.example.com":"perhost","b.example.com":"nothing","https://index.docker.io/v1/":"perhost"}},
                "credsStore":"store",
                "auths":{{"c.example.com":{{"auth":"{}"}}}}}}"#,
            b64("inline:inline-pw")
        ),
    );
    let r = CredentialResolver::new(env_with_path(&bin)).with_docker_config_file(&cfg);

    let got = r.resolve("a.example.com").await.unwrap().unwrap();
    assert_eq!(got.credential, Credential::basic("perhost", "perhost-pw"));
    assert_eq!(got.helper.as_deref(), Some("perhost"));
    // credHelpers says not found: the store is asked next.
    let got = r.resolve("b.example.com").await.unwrap().unwrap();
    assert_eq!(got.credential, Credential::basic("store", "store-pw"));
    // Docker Hub gets the legacy server URL.
    r.resolve("docker.io").await.unwrap().unwrap();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        vec![
            "perhost a.example.com",
            "nothing b.example.com",
            "store b.example.com",
            "perhost https://index.docker.io/v1/",
        ]
    );

    // With a store that knows nothing, inline auths serve.
    helper("store", false);
    let got = r.resolve("c.example.com").await.unwrap().unwrap();
    assert_eq!(got.credential, Credential::basic("inline", "inline-pw"));
    assert_eq!(got.helper, None);
}

#[tokio::test]
async fn missing_store_is_skipped_but_missing_per_host_helper_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(
        &cfg,
        &format!(
            r#"{{"credsStore":"desktop","credHelpers":{{"gcr.io":"gcloud"}},"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("u:p")
        ),
    );
    let r = CredentialResolver::new(env_with_path(dir.path())).with_docker_config_file(&cfg);
    assert_eq!(
        resolve(&r, "ghcr.io").await.unwrap().0,
        Credential::basic("u", "p")
    );
    assert_eq!(resolve(&r, "quay.io").await, None);
    let err = r.resolve("gcr.io").await.unwrap_err();
    assert!(matches!(err, SourceError::Helper(_)), "{err:?}");
    assert!(err.to_string().contains("docker-credential-gcloud"));
}

#[tokio::test]
async fn helper_not_found_passes_on_to_next_source() {
    let dir = tempfile::tempdir().unwrap();
    write_helper(
        dir.path(),
        "empty",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    let env = env_with_path(dir.path())
        .with("DOCKER_AUTH_CONFIG", r#"{"credsStore":"empty"}"#)
        .with("CI_DEPENDENCY_PROXY_SERVER", "gitlab.example.com:443")
        .with("CI_DEPENDENCY_PROXY_USER", "proxy-user")
        .with("CI_DEPENDENCY_PROXY_PASSWORD", "proxy-pw");
    let r = CredentialResolver::new(env);
    assert_eq!(
        resolve(&r, "gitlab.example.com").await,
        Some((
            Credential::basic("proxy-user", "proxy-pw"),
            CredentialSource::GitLabDependencyProxy
        ))
    );
}

#[tokio::test]
async fn gitlab_registry_and_proxy_on_their_own_hosts() {
    let env = Environment::new()
        .with("CI_REGISTRY", "gitlab.example.com:5050")
        .with("CI_REGISTRY_USER", "gitlab-ci-token")
        .with("CI_REGISTRY_PASSWORD", "job-token-1")
        .with("CI_DEPENDENCY_PROXY_SERVER", "gitlab.example.com:443")
        .with("CI_DEPENDENCY_PROXY_USER", "gitlab-ci-token")
        .with("CI_DEPENDENCY_PROXY_PASSWORD", "job-token-2");
    let r = CredentialResolver::new(env.clone());
    assert_eq!(
        resolve(&r, "gitlab.example.com:5050").await.unwrap(),
        (
            Credential::basic("gitlab-ci-token", "job-token-1"),
            CredentialSource::GitLabRegistry
        )
    );
    assert_eq!(
        resolve(&r, "https://gitlab.example.com").await.unwrap(),
        (
            Credential::basic("gitlab-ci-token", "job-token-2"),
            CredentialSource::GitLabDependencyProxy
        )
    );
    assert_eq!(resolve(&r, "gitlab.example.com:5051").await, None);
    // A user without a password is not a credential.
    let r = CredentialResolver::new(env.with("CI_REGISTRY_PASSWORD", ""));
    assert_eq!(resolve(&r, "gitlab.example.com:5050").await, None);
}

#[tokio::test]
async fn kubernetes_secret_identity_and_registry_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let kube = dir.path().join(".dockerconfigjson");
    write(
        &kube,
        r#"{"auths":{"quay.io":{"identitytoken":"id-tok"},"reg.example.com":{"registrytoken":"reg-tok"}}}"#,
    );
    let r = CredentialResolver::new(Environment::new()).with_kubernetes_secret(&kube);
    assert_eq!(
        resolve(&r, "quay.io").await.unwrap().0,
        Credential::IdentityToken(Secret::new("id-tok"))
    );
    assert_eq!(
        resolve(&r, "reg.example.com").await.unwrap().0,
        Credential::RegistryToken(Secret::new("reg-tok"))
    );
}

#[tokio::test]
async fn broken_sources_are_errors_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(&cfg, r#"{"auths":{"h":{"password":"hunter2-not-closed}}"#);
    let r = CredentialResolver::new(Environment::new()).with_docker_config_file(&cfg);
    let err = r.resolve("h").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("config.json"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let env = Environment::new().with(
        "DOCKER_AUTH_CONFIG",
        r#"{"auths":{"h":{"auth":"!!not-base64-hunter3"}}}"#,
    );
    let err = CredentialResolver::new(env).resolve("h").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("DOCKER_AUTH_CONFIG"), "{shown}");
    assert!(!shown.contains("hunter3"), "{shown}");

    // A directory where the file should be cannot be read.
    let r = CredentialResolver::new(Environment::new()).with_docker_config_file(dir.path());
    assert!(matches!(
        r.resolve("h").await,
        Err(SourceError::Read { .. })
    ));
}

#[tokio::test]
async fn resolved_debug_output_redacts() {
    let env = Environment::new()
        .with("CI_REGISTRY", "r.example.com")
        .with("CI_REGISTRY_USER", "u")
        .with("CI_REGISTRY_PASSWORD", "very-secret-job-token");
    let r = CredentialResolver::new(env);
    let got = r.resolve("r.example.com").await.unwrap();
    let shown = format!("{got:?} {got:#?} {r:?}");
    assert!(!shown.contains("very-secret-job-token"), "{shown}");
}
