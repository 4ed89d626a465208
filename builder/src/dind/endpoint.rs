//! Where the Docker daemon is and how to talk to it, decided as the docker CLI decides:
//! `--docker-host`/`DOCKER_HOST` (default `unix:///var/run/docker.sock`), TLS with verification
//! when `--docker-tls-verify`/`DOCKER_TLS_VERIFY` is set, certificates from
//! `--docker-cert-path`/`DOCKER_CERT_PATH` (default `$DOCKER_CONFIG` or `~/.docker`).

use super::DindError;
use kiln_registry_auth::Environment;
use std::fmt;
use std::path::{Path, PathBuf};

/// The socket the docker CLI uses when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Docker's TLS port, the default for `tcp://host` with TLS.
pub const TLS_PORT: u16 = 2376;
/// Docker's plain TCP port, the default for `tcp://host` without TLS.
pub const PLAIN_PORT: u16 = 2375;

/// Settings given on the command line; each overrides its environment variable.
#[derive(Debug, Clone, Default)]
pub struct EndpointFlags {
    /// `--docker-host` (over `DOCKER_HOST`).
    pub host: Option<String>,
    /// `--docker-tls-verify` (over `DOCKER_TLS_VERIFY`).
    pub tls_verify: Option<bool>,
    /// `--docker-cert-path` (over `DOCKER_CERT_PATH`).
    pub cert_path: Option<PathBuf>,
}

/// The client's TLS files: the CA that signed the daemon's certificate, and the client's own
/// certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ca.pem`.
    pub ca: PathBuf,
    /// `cert.pem`.
    pub cert: PathBuf,
    /// `key.pem`.
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir` (the layout of `DOCKER_CERT_PATH`).
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// How to reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket.
    Unix(PathBuf),
    /// TCP, with TLS when `tls` is set.
    Tcp {
        /// Host name or IP address (no brackets).
        host: String,
        /// Port.
        port: u16,
        /// Client TLS files; `None` for plain HTTP.
        tls: Option<TlsFiles>,
    },
}

/// A daemon address, ready to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// How to reach it.
    pub transport: Transport,
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Unix(p) => write!(f, "unix://{}", p.display()),
            Transport::Tcp { host, port, .. } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Transport::Tcp { host, port, .. } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl DockerEndpoint {
    /// Resolves the endpoint from `flags` and `env` as the docker CLI does.
    ///
    /// # Errors
    /// [`DindError::BadHost`] for an address kiln cannot use (`ssh://`, `npipe://`, a path on
    /// a TCP address, a bad port, TLS on a unix socket).
    pub fn resolve(flags: &EndpointFlags, env: &Environment) -> Result<DockerEndpoint, DindError> {
        let host = flags
            .host
            .clone()
            .or_else(|| env.get_nonempty("DOCKER_HOST").map(str::to_string))
            .unwrap_or_else(|| format!("unix://{DEFAULT_SOCKET}"));
        let verify = flags
            .tls_verify
            .unwrap_or_else(|| env.get_nonempty("DOCKER_TLS_VERIFY").is_some());
        let tls = if verify {
            let dir = flags
                .cert_path
                .clone()
                .or_else(|| env.get_nonempty("DOCKER_CERT_PATH").map(PathBuf::from))
                .or_else(|| env.get_nonempty("DOCKER_CONFIG").map(PathBuf::from))
                .or_else(|| {
                    env.get_nonempty("HOME")
                        .map(|h| Path::new(h).join(".docker"))
                })
                .ok_or_else(|| DindError::BadHost {
                    host: host.clone(),
                    reason: "TLS verification is on but no certificate directory is known \
                             (set DOCKER_CERT_PATH)"
                        .into(),
                })?;
            Some(TlsFiles::in_dir(&dir))
        } else {
            None
        };
        DockerEndpoint::parse(&host, tls)
    }

    /// Parses `unix:///path`, `tcp://host[:port]` or `host:port` (TCP).
    ///
    /// # Errors
    /// [`DindError::BadHost`] as for [`DockerEndpoint::resolve`].
    pub fn parse(host: &str, tls: Option<TlsFiles>) -> Result<DockerEndpoint, DindError> {
        let bad = |reason: &str| DindError::BadHost {
            host: host.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = host.split_once("://").unwrap_or(("tcp", host));
        match scheme {
            "unix" => {
                if tls.is_some() {
                    return Err(bad("TLS verification is for tcp:// addresses, not sockets"));
                }
                if rest.is_empty() {
                    return Err(bad("no socket path"));
                }
                Ok(DockerEndpoint {
                    transport: Transport::Unix(PathBuf::from(rest)),
                })
            }
            "tcp" | "http" | "https" => {
                let authority = rest.trim_end_matches('/');
                if authority.contains('/') {
                    return Err(bad("kiln does not support a path after host:port"));
                }
                let (h, port) = split_host_port(authority).map_err(|r| bad(&r))?;
                if h.is_empty() {
                    return Err(bad("no host name"));
                }
                let default_port = if tls.is_some() { TLS_PORT } else { PLAIN_PORT };
                Ok(DockerEndpoint {
                    transport: Transport::Tcp {
                        host: h.to_string(),
                        port: port.unwrap_or(default_port),
                        tls,
                    },
                })
            }
            other => Err(bad(&format!(
                "scheme {other}:// is not supported (use unix:// or tcp://)"
            ))),
        }
    }

    /// The `Host` header for requests: Go's HTTP server wants one.
    pub(crate) fn host_header(&self) -> String {
        match &self.transport {
            Transport::Unix(_) => "docker".to_string(),
            Transport::Tcp { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Transport::Tcp { host, port, .. } => format!("{host}:{port}"),
        }
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed [ in IPv6 address".to_string())?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("unexpected {p:?} after the address"))?,
                ),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port {p:?}"))?,
        ),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        let mut e = Environment::new();
        for (k, v) in pairs {
            e.set(*k, *v);
        }
        e
    }

    #[test]
    fn defaults_to_the_local_socket() {
        let ep = DockerEndpoint::resolve(&EndpointFlags::default(), &env(&[])).unwrap();
        assert_eq!(ep.transport, Transport::Unix(DEFAULT_SOCKET.into()));
        assert_eq!(ep.to_string(), "unix:///var/run/docker.sock");
    }

    #[test]
    fn the_dind_variables_mean_tls_with_the_client_directory() {
        let ep = DockerEndpoint::resolve(
            &EndpointFlags::default(),
            &env(&[
                ("DOCKER_HOST", "tcp://docker:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs/client"),
            ]),
        )
        .unwrap();
        assert_eq!(
            ep.transport,
            Transport::Tcp {
                host: "docker".into(),
                port: 2376,
                tls: Some(TlsFiles::in_dir(Path::new("/certs/client"))),
            }
        );
    }

    #[test]
    fn flags_override_the_environment_and_ports_default_by_tls() {
        let e = env(&[
            ("DOCKER_HOST", "tcp://docker:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("HOME", "/home/u"),
        ]);
        let ep = DockerEndpoint::resolve(
            &EndpointFlags {
                host: Some("tcp://[::1]".into()),
                ..EndpointFlags::default()
            },
            &e,
        )
        .unwrap();
        assert_eq!(ep.to_string(), "tcp://[::1]:2376");
        let Transport::Tcp { tls, .. } = &ep.transport else {
            panic!()
        };
        assert_eq!(
            tls.as_ref().unwrap().ca,
            Path::new("/home/u/.docker/ca.pem")
        );
        let plain = DockerEndpoint::resolve(
            &EndpointFlags {
                host: Some("docker".into()),
                tls_verify: Some(false),
                cert_path: None,
            },
            &e,
        )
        .unwrap();
        assert_eq!(plain.to_string(), "tcp://docker:2375");
        assert_eq!(plain.host_header(), "docker:2375");
    }

    #[test]
    fn unusable_addresses_are_refused_with_a_reason() {
        for (host, words) in [
            ("ssh://me@host", "ssh:// is not supported"),
            ("tcp://host:99999", "bad port"),
            ("tcp://host:2376/v1", "path"),
            ("tcp://:2376", "no host"),
            ("unix://", "no socket"),
        ] {
            let e = DockerEndpoint::parse(host, None).unwrap_err().to_string();
            assert!(e.contains(words), "{host}: {e}");
        }
        let tls = Some(TlsFiles::in_dir(Path::new("/c")));
        let e = DockerEndpoint::parse("unix:///s", tls).unwrap_err();
        assert!(e.to_string().contains("not sockets"), "{e}");
    }
}
