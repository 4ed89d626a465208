//! Docker-in-Docker over TLS against a real `dockerd` started with kiln's certificates
//! (`--tlsverify` on TCP), a real `docker-registry` with htpasswd auth, and `skopeo` to read the
//! pushed image back: `kiln build --backend docker` end to end, and every way the TLS
//! connection can be refused, each with its own message.

use kiln_testkit::dockerd;
use kiln_testkit::registry as registry_server;

use base64::Engine as _;
use dockerd::{Dockerd, DockerdOptions, TlsListen};
use kiln::dind::certs::{self, CertOptions};
use kiln::dind::ready::wait_ready;
use kiln::dind::{DindError, DockerClient, DockerEndpoint, TlsFiles, TlsProblem};
use registry_server::{Registry, RegistryAuth};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

const USER: &str = "kiln";
/// `??????` makes `/` in standard base64 whatever its offset: a daemon handed standard base64
/// would read a garbled password, so a push with it proves the URL-safe encoding.
const PASSWORD: &str = "pw??????>>>~~~";

use kiln_testkit::registry::free_port;

/// One registry and one TLS daemon, shared by the tests that run at the same time and stopped
/// when the last of them is done.
struct Rig {
    registry: Registry,
    dockerd: Dockerd,
    /// The dind layout kiln wrote (`server/`, `client/`, `ca/`).
    certs: PathBuf,
    /// `127.0.0.1:PORT`, the address the certificate names.
    tcp: String,
    /// `127.0.0.2:PORT`, an address the certificate does not name.
    other_tcp: String,
    /// A docker config with the registry's credentials.
    docker_config: PathBuf,
    _dir: tempfile::TempDir,
}

fn rig() -> Option<Arc<Rig>> {
    static SHARED: Mutex<Weak<Rig>> = Mutex::new(Weak::new());
    if !dockerd::available() {
        return None;
    }
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = shared.upgrade() {
        return Some(r);
    }
    let r = Arc::new(Rig::start());
    *shared = Arc::downgrade(&r);
    Some(r)
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start(RegistryAuth::Htpasswd(&[(USER, PASSWORD)]), false);
        let certs_dir = dir.path().join("certs");
        certs::generate(&CertOptions::default())
            .unwrap()
            .write_to(&certs_dir, false)
            .unwrap();
        let tcp = format!("127.0.0.1:{}", free_port());
        let other_tcp = format!("127.0.0.2:{}", free_port());
        let dockerd = Dockerd::start_with(DockerdOptions {
            tls: Some(TlsListen {
                server_dir: certs_dir.join("server"),
                addrs: vec![tcp.clone(), other_tcp.clone()],
            }),
            insecure_registries: vec![registry.addr.clone()],
        });
        let docker_config = dir.path().join("docker-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        std::fs::write(
            docker_config.join("config.json"),
            serde_json::json!({"auths": {&registry.addr: {"auth": auth}}}).to_string(),
        )
        .unwrap();
        let rig = Rig {
            registry,
            dockerd,
            certs: certs_dir,
            tcp,
            other_tcp,
            docker_config,
            _dir: dir,
        };
        rig.push_busybox_base();
        rig
    }

    /// `REGISTRY/base:1`: busybox-static as a one-layer image, pushed with the docker CLI and
    /// removed from the daemon again, so a build has to pull it (with credentials).
    fn push_busybox_base(&self) {
        let root = self._dir.path().join("base-rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        for tool in ["cat", "ls", "test", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
        }
        let tar = self._dir.path().join("base.tar");
        ok(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let base = self.base();
        ok(self
            .docker()
            .args(["import", "--change", "ENV PATH=/bin"])
            .arg(&tar)
            .arg(&base));
        ok(self.docker().args(["push", &base]));
        ok(self.docker().args(["rmi", &base]));
    }

    fn base(&self) -> String {
        format!("{}/base:1", self.registry.addr)
    }

    fn docker(&self) -> Command {
        let mut c = self.dockerd.docker();
        c.env("DOCKER_CONFIG", &self.docker_config);
        c
    }

    fn client(&self, host: &str, client_dir: &Path) -> DockerClient {
        let ep = DockerEndpoint::parse(host, Some(TlsFiles::in_dir(client_dir))).unwrap();
        DockerClient::new(ep).unwrap()
    }
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let creds = format!("{USER}:{PASSWORD}");
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy")
        .args(["inspect", "--tls-verify=false", "--creds", &creds])
        .args(args);
    ok(&mut c).stdout
}

fn kiln() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    for v in [
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
    ] {
        c.env_remove(v);
    }
    c
}

#[test]
fn kiln_builds_through_a_tls_daemon_pushes_and_writes_the_digest_files() {
    let Some(rig) = rig() else { return };
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "ARG BASE\nFROM ${BASE}\nARG GREETING=none\nCOPY . /ctx/\n\
         RUN test ! -e /ctx/secret.txt && echo \"$GREETING\" > /greeting && ls -a /ctx > /listing\n\
         CMD [\"cat\", \"/greeting\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(ctx.join("secret.txt"), "not for the image").unwrap();
    std::fs::write(ctx.join("keep.txt"), "in the image").unwrap();
    let reg = &rig.registry.addr;
    let digest_file = work.path().join("digest");
    let names_file = work.path().join("names");
    let out = ok(kiln()
        .env("DOCKER_HOST", format!("tcp://{}", rig.tcp))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", rig.certs.join("client"))
        .env("DOCKER_CONFIG", &rig.docker_config)
        .args(["build", "--backend", "docker", "--docker-network", "host"])
        .arg("--context")
        .arg(&ctx)
        .args(["--destination", &format!("{reg}/app:1")])
        .args(["--destination", &format!("{reg}/app:2")])
        .args(["--build-arg", &format!("BASE={}", rig.base())])
        .args(["--build-arg", "GREETING=hello from dind"])
        .args(["--label", "org.example.kiln=docker-backend"])
        .arg("--digest-file")
        .arg(&digest_file)
        .arg("--image-name-with-digest-file")
        .arg(&names_file));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(stdout.contains("#1 [1/"), "{stdout}");
    assert!(
        stdout.contains("] RUN test ! -e /ctx/secret.txt"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("push {reg}/app:1")), "{stdout}");
    assert!(
        stdout.contains(&format!("#9 pushed {reg}/app:2@sha256:")),
        "{stdout}"
    );

    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest:?}"
    );
    for tag in ["1", "2"] {
        let info: serde_json::Value =
            serde_json::from_slice(&skopeo(&[&format!("docker://{reg}/app:{tag}")])).unwrap();
        assert_eq!(info["Digest"], digest, "tag {tag}");
        assert_eq!(info["Labels"]["org.example.kiln"], "docker-backend");
    }
    assert_eq!(
        std::fs::read_to_string(&names_file).unwrap(),
        format!("{reg}/app@{digest}\n{reg}/app@{digest}\n")
    );
    // The image holds what the RUN step made from the filtered context.
    let ran = ok(rig.docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        &format!("{reg}/app:1"),
        "sh",
        "-c",
        "cat /greeting /listing",
    ]));
    let ran = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.starts_with("hello from dind\n"), "{ran}");
    assert!(
        ran.contains("keep.txt") && !ran.contains("secret.txt"),
        "{ran}"
    );
}

#[test]
fn the_daemon_answers_kiln_s_own_client_certificate() {
    let Some(rig) = rig() else { return };
    let client = rig.client(&format!("tcp://{}", rig.tcp), &rig.certs.join("client"));
    let ping = rt()
        .block_on(wait_ready(&client, Duration::from_secs(10)))
        .unwrap();
    assert_eq!(ping.os_type.as_deref(), Some("linux"));
    // `localhost` is in the certificate too.
    let port = rig.tcp.rsplit_once(':').unwrap().1;
    let client = rig.client(
        &format!("tcp://localhost:{port}"),
        &rig.certs.join("client"),
    );
    rt().block_on(client.ping()).unwrap();
    // And a plain unix socket, as DOCKER_HOST=unix:///var/run/docker.sock is.
    let ep = DockerEndpoint::parse(&rig.dockerd.unix_host(), None).unwrap();
    let ping = rt()
        .block_on(wait_ready(
            &DockerClient::new(ep).unwrap(),
            Duration::from_secs(5),
        ))
        .unwrap();
    assert!(ping.api_version.is_some());
}

fn assert_tls(e: DindError, want: TlsProblem, words: &str) {
    let text = e.to_string();
    eprintln!("{text}");
    match &e {
        DindError::Tls { problem, .. } => assert_eq!(*problem, want, "{text}"),
        other => panic!("expected a TLS error, got {other:?}: {text}"),
    }
    assert!(text.contains(words), "{text}");
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_at_once() {
    let Some(rig) = rig() else { return };
    let work = tempfile::tempdir().unwrap();
    let other = certs::generate(&CertOptions::default()).unwrap();
    other.write_to(work.path(), false).unwrap();
    // Trust the daemon (its real CA), but present a client certificate of another CA.
    let client_dir = work.path().join("client");
    std::fs::copy(rig.certs.join("client/ca.pem"), client_dir.join("ca.pem")).unwrap();
    let client = rig.client(&format!("tcp://{}", rig.tcp), &client_dir);
    let start = Instant::now();
    let e = rt()
        .block_on(wait_ready(&client, Duration::from_secs(20)))
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a refusal is final, not retried until the 20 s deadline"
    );
    assert_tls(
        e,
        TlsProblem::ClientCertificateRefused,
        "refused kiln's client certificate",
    );
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let Some(rig) = rig() else { return };
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(rig.certs.join("client/ca.pem"), work.path().join("ca.pem")).unwrap();
    let client = rig.client(&format!("tcp://{}", rig.tcp), work.path());
    let e = rt().block_on(client.ping()).unwrap_err();
    assert_tls(
        e,
        TlsProblem::ClientCertificateRefused,
        "DOCKER_CERT_PATH must hold a client certificate",
    );
}

#[test]
fn a_daemon_certificate_of_another_ca_is_not_trusted() {
    let Some(rig) = rig() else { return };
    let work = tempfile::tempdir().unwrap();
    let other = certs::generate(&CertOptions::default()).unwrap();
    other.write_to(work.path(), false).unwrap();
    let client = rig.client(&format!("tcp://{}", rig.tcp), &work.path().join("client"));
    let e = rt().block_on(client.ping()).unwrap_err();
    assert_tls(e, TlsProblem::UntrustedServer, "does not trust");
}

#[test]
fn a_host_name_the_certificate_does_not_list_fails_verification() {
    let Some(rig) = rig() else { return };
    let client = rig.client(
        &format!("tcp://{}", rig.other_tcp),
        &rig.certs.join("client"),
    );
    let e = rt()
        .block_on(wait_ready(&client, Duration::from_secs(10)))
        .unwrap_err();
    let text = e.to_string();
    assert_tls(e, TlsProblem::WrongHostName, "does not match the host name");
    assert!(text.contains("127.0.0.2"), "{text}");
    // By DNS name too, when this machine's name resolves to loopback (it usually does).
    let host = String::from_utf8(ok(&mut Command::new("hostname")).stdout).unwrap();
    let host = host.trim();
    let port = rig.tcp.rsplit_once(':').unwrap().1;
    let loopback = std::net::ToSocketAddrs::to_socket_addrs(&(host, 1))
        .is_ok_and(|mut a| a.any(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST));
    if loopback && host != "localhost" {
        let client = rig.client(&format!("tcp://{host}:{port}"), &rig.certs.join("client"));
        let e = rt().block_on(client.ping()).unwrap_err();
        let text = e.to_string();
        assert_tls(e, TlsProblem::WrongHostName, host);
        assert!(
            text.contains("docker") && text.contains("localhost"),
            "{text}"
        );
    } else {
        eprintln!("{host} does not resolve to 127.0.0.1; DNS-name case not checked");
    }
}

/// Needs no daemon: nothing listens on the port, and kiln says so when its wait runs out.
#[test]
fn kiln_build_times_out_on_a_daemon_that_never_comes_up() {
    let work = tempfile::tempdir().unwrap();
    let made = certs::generate(&CertOptions::default()).unwrap();
    made.write_to(work.path(), false).unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    let start = Instant::now();
    let out = kiln()
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{}", free_port()))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", work.path().join("client"))
        .args([
            "build",
            "--backend",
            "docker",
            "--docker-ready-timeout",
            "2",
        ])
        .arg("--context")
        .arg(&ctx)
        .args(["--no-push"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(stderr.contains("was not ready within"), "{stderr}");
    assert!(
        stderr.contains("nothing listens at tcp://127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn kiln_certs_writes_the_dind_layout() {
    use std::os::unix::fs::PermissionsExt as _;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("certs");
    let out = ok(kiln()
        .arg("certs")
        .arg(&dir)
        .args(["--san", "dind.example", "--days", "2"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("docker, localhost, 127.0.0.1, ::1, dind.example"),
        "{stdout}"
    );
    for (f, mode) in [
        ("ca/cert.pem", 0o644),
        ("server/ca.pem", 0o644),
        ("server/cert.pem", 0o644),
        ("server/key.pem", 0o600),
        ("client/ca.pem", 0o644),
        ("client/cert.pem", 0o644),
        ("client/key.pem", 0o600),
    ] {
        let meta = std::fs::metadata(dir.join(f)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{f}");
    }
    // No CA key unless asked: docker:dind would sign new certificates over ours.
    assert!(!dir.join("ca/key.pem").exists());
    // openssl agrees the chain holds and the names are there.
    let v = ok(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca/cert.pem"))
        .arg(dir.join("server/cert.pem"))
        .arg(dir.join("client/cert.pem")));
    assert!(String::from_utf8_lossy(&v.stdout).contains("client/cert.pem: OK"));
    let text = ok(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join("server/cert.pem")));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DNS:dind.example"), "{text}");
    assert!(text.contains("IP Address:0:0:0:0:0:0:0:1"), "{text}");
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
}
