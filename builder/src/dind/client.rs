//! A small Docker Engine API client: one HTTP/1.1 connection per call over a unix socket, plain
//! TCP, or TLS with the client certificate (rustls), so that every failure can be told apart
//! (nothing listening, certificate refused, wrong host name, daemon not ready).

use super::endpoint::{DockerEndpoint, TlsFiles, Transport};
use super::{DindError, TlsProblem};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The API version kiln speaks (Docker 20.10); older daemons are spoken to in theirs.
pub const API_VERSION: (u32, u32) = (1, 41);

/// A request body: empty, or a stream (the build context).
pub type Body = BoxBody<Bytes, Box<dyn StdError + Send + Sync>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What `/_ping` told about the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The daemon's newest API version (`API-Version` header), e.g. `1.41`.
    pub api_version: Option<String>,
    /// The daemon's OS (`OSType` header).
    pub os_type: Option<String>,
}

/// A client for one daemon. Cheap to clone.
#[derive(Clone)]
pub struct DockerClient {
    endpoint: DockerEndpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    api: String,
}

impl std::fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerClient")
            .field("endpoint", &self.endpoint.to_string())
            .field("api", &self.api)
            .finish()
    }
}

impl DockerClient {
    /// Reads the TLS files (if any) and prepares the client; nothing is connected yet.
    ///
    /// # Errors
    /// [`DindError::TlsFile`] when `ca.pem` is missing or holds no certificate, or when only one
    /// of `cert.pem` and `key.pem` exists or either is not PEM. With neither (as the docker CLI
    /// allows) the client connects without a certificate.
    pub fn new(endpoint: DockerEndpoint) -> Result<DockerClient, DindError> {
        let tls = match &endpoint.transport {
            Transport::Tcp {
                tls: Some(files), ..
            } => Some(Arc::new(tls_config(files)?)),
            _ => None,
        };
        Ok(DockerClient {
            endpoint,
            tls,
            api: format!("v{}.{}", API_VERSION.0, API_VERSION.1),
        })
    }

    /// The daemon's address.
    pub fn endpoint(&self) -> &DockerEndpoint {
        &self.endpoint
    }

    fn host(&self) -> String {
        self.endpoint.to_string()
    }

    /// Speaks the daemon's API version when it is older than kiln's.
    pub fn negotiate(&mut self, ping: &Ping) {
        let theirs = ping.api_version.as_deref().and_then(parse_version);
        if let Some(v) = theirs {
            if v < API_VERSION {
                self.api = format!("v{}.{}", v.0, v.1);
            }
        }
    }

    /// One `GET /_ping`.
    ///
    /// # Errors
    /// [`DindError::NothingListens`], [`DindError::Tls`], [`DindError::NotReady`] (connection
    /// broken, or an answer other than 200 OK) and [`DindError::Connect`].
    pub async fn ping(&self) -> Result<Ping, DindError> {
        let resp = self
            .send(http::Method::GET, "/_ping", &[], empty())
            .await
            .map_err(|e| match e {
                DindError::Protocol { host, detail } => DindError::NotReady { host, detail },
                e => e,
            })?;
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let ping = Ping {
            api_version: header("api-version"),
            os_type: header("ostype"),
        };
        let body = self.read_body(resp).await.unwrap_or_default();
        if status != http::StatusCode::OK {
            return Err(DindError::NotReady {
                host: self.host(),
                detail: format!(
                    "/_ping answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            });
        }
        Ok(ping)
    }

    /// Sends one request to the versioned API path (`/build?...` → `/v1.41/build?...`);
    /// `/_ping` is sent as is.
    pub(crate) async fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<http::Response<Incoming>, DindError> {
        let uri = if path_and_query == "/_ping" {
            path_and_query.to_string()
        } else {
            format!("/{}{path_and_query}", self.api)
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, self.endpoint.host_header())
            .header(
                http::header::USER_AGENT,
                concat!("kiln/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(body).map_err(|e| DindError::Protocol {
            host: self.host(),
            detail: format!("request {uri}: {e}"),
        })?;
        let io = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| self.transfer_error(&e))?;
        tokio::spawn(async move {
            // Errors surface through `send_request` and the body; nothing to add here.
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| self.transfer_error(&e))
    }

    /// Reads a whole (small) response body.
    pub(crate) async fn read_body(
        &self,
        resp: http::Response<Incoming>,
    ) -> Result<Bytes, DindError> {
        Ok(resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transfer_error(&e))?
            .to_bytes())
    }

    /// Turns an error status into [`DindError::Api`] with the daemon's `message`.
    pub(crate) async fn check(
        &self,
        what: &str,
        resp: http::Response<Incoming>,
    ) -> Result<http::Response<Incoming>, DindError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = self.read_body(resp).await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(DindError::Api {
            host: self.host(),
            what: what.to_string(),
            status,
            message,
        })
    }

    async fn connect(&self) -> Result<Box<dyn Io>, DindError> {
        let host = self.host();
        match &self.endpoint.transport {
            Transport::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| connect_error(host, e))?;
                Ok(Box::new(s))
            }
            Transport::Tcp {
                host: name, port, ..
            } => {
                let tcp = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect((name.as_str(), *port)),
                )
                .await
                .map_err(|_| DindError::Connect {
                    host: host.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                    ),
                })?
                .map_err(|e| connect_error(host.clone(), e))?;
                let _ = tcp.set_nodelay(true);
                let Some(config) = &self.tls else {
                    return Ok(Box::new(tcp));
                };
                let server_name =
                    ServerName::try_from(name.clone()).map_err(|e| DindError::BadHost {
                        host: host.clone(),
                        reason: format!("not a TLS server name: {e}"),
                    })?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| self.transfer_error(&e))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// Classifies an error met while talking: TLS problems by whose certificate failed,
    /// everything else as a broken exchange.
    pub(crate) fn transfer_error(&self, e: &(dyn StdError + 'static)) -> DindError {
        let host = self.host();
        if let Some(t) = find_rustls(e) {
            return tls_error(host, t);
        }
        DindError::Protocol {
            host,
            detail: crate::error_chain::chain_line(e),
        }
    }
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// An empty request body.
pub(crate) fn empty_body() -> Body {
    empty()
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn connect_error(host: String, source: std::io::Error) -> DindError {
    use std::io::ErrorKind::*;
    match source.kind() {
        ConnectionRefused | NotFound => DindError::NothingListens { host, source },
        _ => DindError::Connect { host, source },
    }
}

/// The rustls error somewhere in `e`'s chain; `io::Error` hides its payload from `source()`.
fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn StdError + 'static) = inner;
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

fn tls_error(host: String, e: &rustls::Error) -> DindError {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let problem = match e {
        E::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateRequired
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::DecryptError,
        ) => TlsProblem::ClientCertificateRefused,
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            TlsProblem::WrongHostName
        }
        E::InvalidCertificate(_) => TlsProblem::UntrustedServer,
        _ => TlsProblem::Other,
    };
    let detail = match e {
        E::AlertReceived(a) => format!("it answered with TLS alert {a:?}"),
        e => e.to_string(),
    };
    DindError::Tls {
        host,
        problem,
        detail,
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, DindError> {
    let bad = |path: &std::path::Path, reason: String| DindError::TlsFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| bad(&files.ca, format!("cannot read the daemon's CA: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.ca, format!("not PEM: {e}")))?;
    if cas.is_empty() {
        return Err(bad(&files.ca, "no certificate in the file".into()));
    }
    for c in cas {
        roots
            .add(c)
            .map_err(|e| bad(&files.ca, format!("unusable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.ca, e.to_string()))?
        .with_root_certificates(roots);
    match (files.cert.exists(), files.key.exists()) {
        (false, false) => Ok(builder.with_no_client_auth()),
        (true, false) => Err(bad(&files.key, "missing (cert.pem needs its key)".into())),
        (false, true) => Err(bad(
            &files.cert,
            "missing (key.pem needs its certificate)".into(),
        )),
        (true, true) => {
            let certs = CertificateDer::pem_file_iter(&files.cert)
                .map_err(|e| bad(&files.cert, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&files.cert, format!("not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(bad(&files.cert, "no certificate in the file".into()));
            }
            // The key's own error text never includes key material.
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .map_err(|e| bad(&files.key, format!("no usable private key: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| bad(&files.key, format!("does not fit cert.pem: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_name_whose_certificate_failed() {
        let e = tls_error(
            "tcp://docker:2376".into(),
            &rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
        );
        assert!(matches!(
            e,
            DindError::Tls {
                problem: TlsProblem::ClientCertificateRefused,
                ..
            }
        ));
        assert!(
            e.to_string().contains("refused kiln's client certificate"),
            "{e}"
        );
        let e = tls_error(
            "tcp://x:2376".into(),
            &rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        assert!(
            e.to_string().contains("does not match the host name"),
            "{e}"
        );
        let e = tls_error(
            "tcp://x:2376".into(),
            &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(e.to_string().contains("does not trust"), "{e}");
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert!(find_rustls(&io).is_some());
    }

    #[test]
    fn older_daemons_are_spoken_to_in_their_version() {
        let ep = DockerEndpoint::parse("unix:///s", None).unwrap();
        let mut c = DockerClient::new(ep).unwrap();
        c.negotiate(&Ping {
            api_version: Some("1.40".into()),
            os_type: None,
        });
        assert_eq!(c.api, "v1.40");
        c.negotiate(&Ping {
            api_version: Some("1.47".into()),
            os_type: None,
        });
        assert_eq!(c.api, "v1.40");
    }
}
