//! What can go wrong between kiln and a Docker daemon, worded so that a CI log says which of
//! the usual Docker-in-Docker mistakes it is.

use std::path::PathBuf;
use std::time::Duration;

/// Which side of a TLS connection gave up, for [`DindError`] messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProblem {
    /// The daemon refused the client certificate (or its absence).
    ClientCertificateRefused,
    /// The daemon's certificate does not name the host kiln connected to.
    WrongHostName,
    /// The daemon's certificate is not signed by the CA kiln trusts (or is expired, ...).
    UntrustedServer,
    /// Anything else (protocol versions, plain HTTP on a TLS port, ...).
    Other,
}

/// A Docker daemon problem: certificates, connection, readiness, build or push.
#[derive(Debug, thiserror::Error)]
pub enum DindError {
    /// The certificates could not be made (for example an invalid extra name).
    #[error("making certificates: {0}")]
    Certificate(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] crate::path_io::PathIo),
    /// `DOCKER_HOST` (or `--docker-host`) is not an address kiln can use.
    #[error("docker host {host:?}: {reason}")]
    BadHost {
        /// The address as given.
        host: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate or key file for the client is missing or not PEM.
    #[error("{}: {reason}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Nothing accepts connections at the address: the daemon is not (yet) listening.
    #[error("nothing listens at {host}")]
    NothingListens {
        /// The daemon's address.
        host: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The connection could not be made for another reason (name lookup, unreachable, timeout).
    #[error("cannot connect to {host}")]
    Connect {
        /// The daemon's address.
        host: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The TLS handshake failed; `problem` says whose certificate was at fault.
    #[error("{}", tls_message(host, *problem, detail))]
    Tls {
        /// The daemon's address.
        host: String,
        /// Which kind of failure.
        problem: TlsProblem,
        /// The TLS library's words.
        detail: String,
    },
    /// The daemon accepted the connection but does not answer `/_ping` with OK yet.
    #[error("the Docker daemon at {host} is not ready: {detail}")]
    NotReady {
        /// The daemon's address.
        host: String,
        /// What it answered, or how the connection broke.
        detail: String,
    },
    /// The readiness deadline passed; `last` is the last reason the daemon was not usable.
    #[error("the Docker daemon at {host} was not ready within {:.1}s", waited.as_secs_f32())]
    Timeout {
        /// The daemon's address.
        host: String,
        /// How long kiln waited.
        waited: Duration,
        /// The last failure seen.
        #[source]
        last: Box<DindError>,
    },
    /// A Docker API call answered with an error status.
    #[error("Docker API {what} at {host}: HTTP {status}: {message}")]
    Api {
        /// The daemon's address.
        host: String,
        /// The call (`POST /build`, ...).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The daemon reported a failed build step.
    #[error("docker build failed: {0}")]
    BuildFailed(String),
    /// The daemon failed to push a destination.
    #[error("pushing {reference}: {message}")]
    PushFailed {
        /// The destination.
        reference: String,
        /// The daemon's message.
        message: String,
    },
    /// The daemon's answer was not what its API promises.
    #[error("Docker daemon at {host}: {detail}")]
    Protocol {
        /// The daemon's address.
        host: String,
        /// What was wrong.
        detail: String,
    },
    /// The options cannot work together with the Docker backend.
    #[error("{0}")]
    Unsupported(String),
    /// The Dockerfile is wrong.
    #[error(transparent)]
    Dockerfile(#[from] crate::dockerfile::DockerfileError),
    /// The build plan cannot be made.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The build context cannot be read.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// A destination is not an image reference.
    #[error(transparent)]
    Reference(#[from] crate::registry::ReferenceError),
    /// Writing a digest file failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// Registry credentials could not be read.
    #[error("registry credentials for {host}")]
    Credentials {
        /// The registry.
        host: String,
        /// Why.
        source: kiln_registry_auth::SourceError,
    },
}

fn tls_message(host: &str, problem: TlsProblem, detail: &str) -> String {
    match problem {
        TlsProblem::ClientCertificateRefused => format!(
            "the Docker daemon at {host} refused kiln's client certificate ({detail}): \
             DOCKER_CERT_PATH must hold a client certificate signed by the daemon's CA"
        ),
        TlsProblem::WrongHostName => format!(
            "the Docker daemon's certificate does not match the host name in {host} ({detail}): \
             connect by a name the server certificate lists"
        ),
        TlsProblem::UntrustedServer => format!(
            "the Docker daemon at {host} presented a certificate kiln does not trust ({detail}): \
             DOCKER_CERT_PATH/ca.pem must be the CA that signed the daemon's certificate"
        ),
        TlsProblem::Other => format!("TLS with the Docker daemon at {host} failed: {detail}"),
    }
}

impl From<kiln_dind_certs::CertError> for DindError {
    fn from(e: kiln_dind_certs::CertError) -> Self {
        match e {
            kiln_dind_certs::CertError::Certificate(m) => DindError::Certificate(m),
            kiln_dind_certs::CertError::Io { path, source } => {
                DindError::Io(crate::path_io::PathIo::new(path, source))
            }
        }
    }
}

impl DindError {
    /// Whether waiting longer could help: the daemon may still be starting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DindError::NothingListens { .. } | DindError::NotReady { .. }
        )
    }
}
