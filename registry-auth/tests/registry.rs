//! Integration test against the real distribution registry (Debian's
//! `docker-registry`) with htpasswd auth.
//!
//! Skipped when the binary is absent unless `KILN_REQUIRE_REGISTRY=1`, which
//! CI sets where the package is installed so a missing binary fails loudly.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kiln_registry_auth::{
    parse_www_authenticate_headers, preferred, AuthScheme, CredentialResolver, Environment,
    ScopeSet, TokenClient,
};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Kills the registry when the test ends, however it ends.
struct Registry {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_registry(dir: &Path, user: &str, password: &str) -> (Registry, String) {
    let hash = bcrypt::hash(password, 5).unwrap();
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\n\
             log:\n  level: info\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: {addr}\n\
             auth:\n  htpasswd:\n    realm: kiln-test-realm\n    path: {htpasswd}\n",
            root = dir.join("storage").display(),
            htpasswd = htpasswd.display(),
        ),
    )
    .unwrap();
    let log = dir.join("registry.log");
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
        .spawn()
        .unwrap();
    let registry = Registry { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry did not listen on {addr}; stderr: {}",
            std::fs::read_to_string(dir.join("registry.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (registry, addr)
}

#[tokio::test]
async fn htpasswd_registry_basic_challenge_is_answered() {
    if !Path::new(REGISTRY_BIN).exists() {
        assert!(
            std::env::var("KILN_REQUIRE_REGISTRY").as_deref() != Ok("1"),
            "{REGISTRY_BIN} missing but KILN_REQUIRE_REGISTRY=1"
        );
        eprintln!("skipping: {REGISTRY_BIN} not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (registry, addr) = start_registry(dir.path(), "kiln", "registry-pw-42");
    let http = reqwest::Client::new();
    let v2 = format!("http://{addr}/v2/");

    let resp = http.get(&v2).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let headers: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let challenges = parse_www_authenticate_headers(headers.iter().map(String::as_str)).unwrap();
    let challenge = preferred(&challenges).unwrap();
    assert_eq!(challenge.scheme(), AuthScheme::Basic);
    assert_eq!(challenge.realm(), Some("kiln-test-realm"));

    // Credentials come from a docker config in DOCKER_AUTH_CONFIG, keyed the
    // way `docker login` writes it, to cover resolution end to end.
    let auth = base64::engine::general_purpose::STANDARD.encode("kiln:registry-pw-42");
    let env = Environment::new().with(
        "DOCKER_AUTH_CONFIG",
        format!(r#"{{"auths":{{"http://{addr}":{{"auth":"{auth}"}}}}}}"#),
    );
    let resolved = CredentialResolver::new(env)
        .resolve(&addr)
        .await
        .unwrap()
        .unwrap();
    let tokens = TokenClient::with_http_client(http.clone());
    let header = tokens
        .authorize(
            &addr,
            challenge,
            &ScopeSet::new(),
            Some(&resolved.credential),
        )
        .await
        .unwrap()
        .unwrap();
    let resp = http
        .get(&v2)
        .header("authorization", header.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "log: {}",
        std::fs::read_to_string(&registry.log).unwrap_or_default()
    );

    // The wrong password is refused, so the 200 above was earned.
    let wrong = kiln_registry_auth::Credential::basic("kiln", "not-the-password");
    let header = tokens
        .authorize(&addr, challenge, &ScopeSet::new(), Some(&wrong))
        .await
        .unwrap()
        .unwrap();
    let resp = http
        .get(&v2)
        .header("authorization", header.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let pid = registry.child.id();
    drop(registry);
    let stat = format!("/proc/{pid}/stat");
    assert!(
        !Path::new(&stat).exists(),
        "registry {pid} still running after the test killed it"
    );
}
