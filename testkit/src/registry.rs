//! Test support: a real `docker-registry` (plain HTTP, htpasswd over TLS, or token auth with an
//! in-process token issuer), a request-logging TCP proxy that can inject failures, and
//! hand-made images. Every process started here is stopped by its pid when dropped.
#![allow(dead_code)]

use base64::Engine as _;
use kiln::blob::{BlobStore, Digest};
use kiln::registry::{BlobToPush, ImageToPush};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A TCP port on 127.0.0.1 free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT` (or the address given to [`Registry::start_on`]).
    pub addr: String,
    /// Storage root (for tampering with blobs).
    pub storage: PathBuf,
    /// The CA that signed the TLS certificate, when TLS is on.
    pub ca_pem: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub enum RegistryAuth<'a> {
    None,
    /// (user, password) pairs.
    Htpasswd(&'a [(&'a str, &'a str)]),
    Token(&'a TokenIssuer),
}

impl Registry {
    pub fn plain() -> Registry {
        Registry::start(RegistryAuth::None, false)
    }

    pub fn htpasswd_tls(users: &[(&str, &str)]) -> Registry {
        Registry::start(RegistryAuth::Htpasswd(users), true)
    }

    pub fn token(issuer: &TokenIssuer) -> Registry {
        Registry::start(RegistryAuth::Token(issuer), false)
    }

    pub fn start(auth: RegistryAuth<'_>, tls: bool) -> Registry {
        Registry::start_on("127.0.0.1", auth, tls)
    }

    /// A registry listening on `ip` (an address of this host), e.g. a fake cluster's node
    /// address, which its pods reach and 127.0.0.1 is not.
    pub fn start_on(ip: &str, auth: RegistryAuth<'_>, tls: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let addr = format!("{ip}:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n  secret: kiln-test-http-secret\n",
            storage.display()
        );
        let mut ca_pem = None;
        if tls {
            let (ca, cert, key) = make_tls(dir.path());
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca_pem = Some(ca);
        }
        match auth {
            RegistryAuth::None => {}
            RegistryAuth::Htpasswd(users) => {
                let path = dir.path().join("htpasswd");
                let mut text = String::new();
                for (u, p) in users {
                    let h = bcrypt::hash_with_result(p, 4)
                        .unwrap()
                        .format_for_version(bcrypt::Version::TwoY);
                    text.push_str(&format!("{u}:{h}\n"));
                }
                std::fs::write(&path, text).unwrap();
                cfg.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    path.display()
                ));
            }
            RegistryAuth::Token(issuer) => {
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    issuer.realm,
                    TokenIssuer::SERVICE,
                    TokenIssuer::ISSUER,
                    issuer.root_pem.display()
                ));
            }
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = Registry {
            addr,
            storage,
            ca_pem,
            dir,
            child,
        };
        reg.wait_ready(tls);
        reg
    }

    fn wait_ready(&self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                if tls {
                    return;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry did not start:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file holding blob `d` in the registry's storage.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.storage.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{}/data",
            &d.hex()[..2],
            d.hex()
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a leaf for 127.0.0.1/localhost signed by it (rustls refuses a lone CA as server).
fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kiln test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "kiln test registry");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let (ca_p, cert_p, key_p) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_p, ca_cert.pem()).unwrap();
    std::fs::write(&cert_p, leaf_cert.pem()).unwrap();
    std::fs::write(&key_p, leaf_key.serialize_pem()).unwrap();
    (ca_p, cert_p, key_p)
}

// ---------------------------------------------------------------------------------------------
// Token issuer

/// A token server issuing ES256 JWTs with an `x5c` chain, granting per-user rights:
/// every known user may pull anything; a user may push repositories under its push prefix.
pub struct TokenIssuer {
    pub realm: String,
    pub root_pem: PathBuf,
    /// Every token issued (to check none leaks).
    pub issued: Arc<Mutex<Vec<String>>>,
    /// Every scope requested, per request.
    pub requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct IssuerState {
    users: HashMap<String, (String, Option<String>)>,
    leaf_der: Vec<u8>,
    key: p256::ecdsa::SigningKey,
    issued: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Seconds the registry accepts a token for.
    valid_secs: u64,
}

/// docker-registry accepts tokens this long after their `exp` (clock skew leeway).
const REGISTRY_EXP_LEEWAY_SECS: u64 = 60;

impl TokenIssuer {
    pub const SERVICE: &'static str = "kiln-test-registry";
    pub const ISSUER: &'static str = "kiln-test-issuer";

    /// `users`: (name, password, push prefix).
    pub async fn start(users: &[(&str, &str, Option<&str>)]) -> TokenIssuer {
        TokenIssuer::start_with_validity(users, 300).await
    }

    /// Like [`TokenIssuer::start`], but the registry accepts each token only `valid_secs`
    /// seconds while `expires_in` still says 300: a token revoked early, or a client clock
    /// behind the registry's, so the client learns of the expiry from a 401.
    pub async fn start_with_validity(
        users: &[(&str, &str, Option<&str>)],
        valid_secs: u64,
    ) -> TokenIssuer {
        use p256::pkcs8::DecodePrivateKey;
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name
            .push(DnType::CommonName, "kiln token root");
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_key = KeyPair::generate().unwrap();
        let root_cert = root.self_signed(&root_key).unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "kiln token signer");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &root_cert, &root_key).unwrap();
        let root_pem = dir.path().join("token-root.pem");
        std::fs::write(&root_pem, root_cert.pem()).unwrap();
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&leaf_key.serialize_der()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let issued = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(IssuerState {
            users: users
                .iter()
                .map(|(u, p, prefix)| (u.to_string(), (p.to_string(), prefix.map(str::to_string))))
                .collect(),
            leaf_der: leaf_cert.der().to_vec(),
            key,
            issued: issued.clone(),
            requests: requests.clone(),
            valid_secs,
        });
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let st = state.clone();
                tokio::spawn(async move {
                    let _ = serve_token(conn, &st).await;
                });
            }
        });
        TokenIssuer {
            realm,
            root_pem,
            issued,
            requests,
            _dir: dir,
            task,
        }
    }

    pub fn tokens(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read_head(conn: &mut tokio::net::TcpStream) -> Option<(String, Vec<String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            let rest = buf[i + 4..].to_vec();
            let mut lines = head.split("\r\n").map(str::to_string);
            let first = lines.next()?;
            return Some((first, lines.collect(), rest));
        }
        let n = conn.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve_token(mut conn: tokio::net::TcpStream, st: &IssuerState) -> Option<()> {
    use p256::ecdsa::signature::Signer;
    let (first, headers, _) = read_head(&mut conn).await?;
    let target = first.split(' ').nth(1)?.to_string();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("scope=") {
            scopes.push(percent_decode(v));
        }
    }
    st.requests.lock().unwrap().push(scopes.join(" "));
    let user = header(&headers, "authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let Some((user, rights)) = user.and_then(|(u, p)| {
        let (pw, prefix) = st.users.get(&u)?;
        (pw == &p).then(|| (u.clone(), prefix.clone()))
    }) else {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        let resp = format!("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        conn.write_all(resp.as_bytes()).await.ok()?;
        return Some(());
    };
    let mut access = Vec::new();
    for s in &scopes {
        for one in s.split(' ') {
            let parts: Vec<&str> = one.splitn(3, ':').collect();
            // Names with a port would have more colons; the tests use none.
            if parts.len() != 3 || parts[0] != "repository" {
                continue;
            }
            let name = parts[1];
            let mut granted = Vec::new();
            for a in parts[2].split(',') {
                let ok = match a {
                    "pull" => true,
                    "push" => rights.as_deref().is_some_and(|p| name.starts_with(p)),
                    _ => false,
                };
                if ok {
                    granted.push(a.to_string());
                }
            }
            access
                .push(serde_json::json!({"type": "repository", "name": name, "actions": granted}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header_json = serde_json::json!({
        "typ": "JWT", "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&st.leaf_der)],
    });
    let claims = serde_json::json!({
        "iss": TokenIssuer::ISSUER, "sub": user, "aud": TokenIssuer::SERVICE,
        "exp": now + st.valid_secs - REGISTRY_EXP_LEEWAY_SECS, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", st.issued.lock().unwrap().len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header_json.to_string()),
        b64.encode(claims.to_string())
    );
    let sig: p256::ecdsa::Signature = st.key.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64.encode(sig.to_bytes()));
    st.issued.lock().unwrap().push(token.clone());
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await.ok()?;
    Some(())
}

// ---------------------------------------------------------------------------------------------
// Proxy

/// What the proxy does to a matching request instead of forwarding it.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and headers (the request body is read first); `{path}` in a
    /// header value stands for the request's path.
    Respond(u16, Vec<(String, String)>),
    /// Read this many body bytes, forward nothing, then close the connection.
    CutAfter(usize),
    /// Forward the request head and this many body bytes to the registry, then close both.
    ForwardThenCut(usize),
    /// Read this many body bytes, then reset the connection (RST, not FIN).
    ResetAfter(usize),
    /// Wait this long, then forward as usual.
    Delay(Duration),
    /// Forward the request; pass this many bytes of the response back (head included), then
    /// close the connection: a download broken mid-body.
    CutResponseAfter(usize),
    /// Forward the request without its `Range` header: a server that ignores ranges.
    DropRange,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: String,
    pub path_contains: String,
    /// Matching requests let through before the fault applies.
    pub skip: usize,
    /// How many times the fault applies.
    pub times: usize,
    pub fault: Fault,
}

/// A TCP proxy in front of a registry that logs `METHOD PATH` of every request and applies
/// [`Rule`]s. Each request gets its own upstream connection (`Connection: close`), so request
/// boundaries need no HTTP body parsing.
pub struct Proxy {
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub rules: Arc<Mutex<Vec<Rule>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream.parse().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::new(Mutex::new(Vec::new()));
        let (l2, r2) = (log.clone(), rules.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (l, r) = (l2.clone(), r2.clone());
                tokio::spawn(async move {
                    let _ = proxy_conn(conn, upstream, l, r).await;
                });
            }
        });
        Proxy {
            addr,
            log,
            rules,
            task,
        }
    }

    pub fn add_rule(
        &self,
        method: &str,
        path_contains: &str,
        skip: usize,
        times: usize,
        fault: Fault,
    ) {
        self.rules.lock().unwrap().push(Rule {
            method: method.into(),
            path_contains: path_contains.into(),
            skip,
            times,
            fault,
        });
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.requests()
            .iter()
            .filter(|l| l.starts_with(&format!("{method} ")) && l.contains(path_contains))
            .count()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

async fn proxy_conn(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    rules: Arc<Mutex<Vec<Rule>>>,
) -> Option<()> {
    let (first, headers, rest) = read_head(&mut client).await?;
    let mut it = first.split(' ');
    let method = it.next()?.to_string();
    let path = it.next()?.to_string();
    // A download's Range shows in the log: resumption is what tests look for.
    match header(&headers, "range") {
        Some(range) => log
            .lock()
            .unwrap()
            .push(format!("{method} {path} Range: {range}")),
        None => log.lock().unwrap().push(format!("{method} {path}")),
    }
    let fault = {
        let mut rules = rules.lock().unwrap();
        let mut hit = None;
        for r in rules.iter_mut() {
            if r.method == method && path.contains(&r.path_contains) {
                if r.skip > 0 {
                    r.skip -= 1;
                    break;
                }
                if r.times > 0 {
                    r.times -= 1;
                    hit = Some(r.fault.clone());
                    break;
                }
            }
        }
        hit
    };
    let content_length: usize = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    match fault {
        Some(Fault::Respond(status, extra)) => {
            pass(&mut client, None, rest.len(), content_length).await?;
            let mut resp = format!("HTTP/1.1 {status} Injected\r\n");
            for (k, v) in extra {
                let v = v.replace("{path}", &path);
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
            client.write_all(resp.as_bytes()).await.ok()?;
            let _ = client.shutdown().await;
            Some(())
        }
        Some(Fault::CutAfter(limit)) => {
            pass(&mut client, None, rest.len(), limit.min(content_length)).await?;
            drop(client);
            Some(())
        }
        Some(Fault::ResetAfter(limit)) => {
            pass(&mut client, None, rest.len(), limit.min(content_length)).await?;
            // Linger 0 makes the close an RST, as a crashed middlebox would send.
            let _ = client.set_zero_linger();
            drop(client);
            Some(())
        }
        Some(Fault::ForwardThenCut(limit)) => {
            let mut up = send_head(upstream, &first, &headers).await?;
            let sent = rest.len().min(limit);
            up.write_all(&rest[..sent]).await.ok()?;
            pass(&mut client, Some(&mut up), sent, limit).await?;
            // Let the registry take in what it got before the connection drops.
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(up);
            drop(client);
            Some(())
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(client, upstream, &first, &headers, &rest).await
        }
        Some(Fault::CutResponseAfter(limit)) => {
            let mut up = send_head(upstream, &first, &headers).await?;
            up.write_all(&rest).await.ok()?;
            pass(&mut up, Some(&mut client), 0, limit).await?;
            drop(up);
            drop(client);
            Some(())
        }
        Some(Fault::DropRange) => {
            let kept: Vec<String> = headers
                .iter()
                .filter(|h| !h.to_ascii_lowercase().starts_with("range:"))
                .cloned()
                .collect();
            forward(client, upstream, &first, &kept, &rest).await
        }
        None => forward(client, upstream, &first, &headers, &rest).await,
    }
}

/// Moves bytes from `from` into `to` (or nowhere) until `limit` have gone, counting `done`
/// already, or `from` ends; flushes `to`.
async fn pass(
    from: &mut tokio::net::TcpStream,
    mut to: Option<&mut tokio::net::TcpStream>,
    mut done: usize,
    limit: usize,
) -> Option<()> {
    let mut tmp = vec![0u8; 64 << 10];
    while done < limit {
        let n = from.read(&mut tmp).await.ok()?;
        if n == 0 {
            break;
        }
        let n = n.min(limit - done);
        if let Some(to) = to.as_mut() {
            to.write_all(&tmp[..n]).await.ok()?;
        }
        done += n;
    }
    if let Some(to) = to {
        to.flush().await.ok()?;
    }
    Some(())
}

/// A new upstream connection with the request head sent as it came.
async fn send_head(
    upstream: SocketAddr,
    first: &str,
    headers: &[String],
) -> Option<tokio::net::TcpStream> {
    let mut up = tokio::net::TcpStream::connect(upstream).await.ok()?;
    up.write_all(format!("{first}\r\n{}\r\n\r\n", headers.join("\r\n")).as_bytes())
        .await
        .ok()?;
    Some(up)
}

async fn forward(
    mut client: tokio::net::TcpStream,
    upstream: SocketAddr,
    first: &str,
    headers: &[String],
    rest: &[u8],
) -> Option<()> {
    let mut up = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let mut head = format!("{first}\r\n");
    for h in headers {
        let name = h.split(':').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("connection") {
            head.push_str(h);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).await.ok()?;
    up.write_all(rest).await.ok()?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    Some(())
}

/// A plain HTTP server standing in for blob storage behind a redirect: serves `body` to any
/// GET and records each request's headers.
pub struct Storage {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Storage {
    pub async fn start(body: Vec<u8>) -> Storage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/blob-storage/object",
            listener.local_addr().unwrap()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let body = Arc::new(body);
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (seen, body) = (seen2.clone(), body.clone());
                tokio::spawn(async move {
                    let Some((_, headers, _)) = read_head(&mut conn).await else {
                        return;
                    };
                    seen.lock().unwrap().push(headers);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                });
            }
        });
        Storage { url, seen, task }
    }
}

// ---------------------------------------------------------------------------------------------
// Images

/// Deterministic pseudo-random bytes (xorshift), so blobs differ between tests without `rand`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes a blob of `len` random bytes into the store without holding it all in memory.
pub fn store_random_blob(store: &BlobStore, seed: u64, len: usize) -> BlobToPush {
    let mut w = store.writer().unwrap();
    let mut left = len;
    let mut s = seed;
    while left > 0 {
        let n = left.min(1 << 20);
        w.write_all(&random_bytes(s, n)).unwrap();
        s += 1;
        left -= n;
    }
    let (digest, size) = w.commit().unwrap();
    BlobToPush {
        digest,
        size,
        mount_from: None,
    }
}

/// An OCI image of random layers with the given sizes, its blobs in `store`.
pub fn make_image(store: &BlobStore, seed: u64, layer_sizes: &[usize]) -> ImageToPush {
    let layers: Vec<BlobToPush> = layer_sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| store_random_blob(store, seed * 1000 + i as u64, n))
        .collect();
    let config_json = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    let config_bytes = serde_json::to_vec(&config_json).unwrap();
    let (cd, cs) = store.put(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    ImageToPush {
        layers,
        config: BlobToPush {
            digest: cd,
            size: cs,
            mount_from: None,
        },
        manifest: serde_json::to_vec_pretty(&manifest).unwrap(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
    }
}
