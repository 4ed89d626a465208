//! Per-job TLS material for a Docker daemon and its one client: a CA, a server certificate and
//! a client certificate, all ECDSA P-256 and short-lived, in the layout the `docker:dind` image
//! (`$DOCKER_TLS_CERTDIR/server`) and the docker CLI (`DOCKER_CERT_PATH=.../client`) expect.
//!
//! [`generate`] is pure (PEMs in memory), so the runner can put them in a Kubernetes Secret
//! before the pod exists; [`JobCerts::write_to`] writes the same files to a directory.
//!
//! A crate of its own so kiln-runner makes the certificates without linking the builder.

pub use kiln_registry_auth::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::io::Write as _;
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Names every server certificate carries: the `docker` service name of CI set-ups and the
/// loopback names, so `tcp://docker:2376` and `tcp://localhost:2376` both verify.
pub const DEFAULT_SANS: [&str; 4] = ["docker", "localhost", "127.0.0.1", "::1"];

/// How long certificates live unless told otherwise: a job's lifetime, with room to spare.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// Certificates start this long before "now", so a daemon whose clock is a little behind
/// still accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificates could not be made (for example an invalid extra name).
    #[error("making certificates: {0}")]
    Certificate(String),
    /// A file could not be written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl CertError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CertError {
        let path = path.into();
        move |source| CertError::Io { path, source }
    }
}

/// What to make.
#[derive(Debug, Clone)]
pub struct CertOptions {
    /// Names (DNS names or IP addresses) the server certificate carries besides
    /// [`DEFAULT_SANS`].
    pub extra_sans: Vec<String>,
    /// How long the certificates are valid from now.
    pub validity: Duration,
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            extra_sans: Vec::new(),
            validity: DEFAULT_VALIDITY,
        }
    }
}

/// One job's certificates and keys, as PEM text. `Debug` does not show the keys.
#[derive(Debug, Clone)]
pub struct JobCerts {
    /// The CA certificate (trusted by both sides).
    pub ca_cert: String,
    /// The CA's private key; only needed to sign more certificates, so it is written only on
    /// request.
    pub ca_key: Secret,
    /// The daemon's certificate.
    pub server_cert: String,
    /// The daemon's private key.
    pub server_key: Secret,
    /// The client's certificate.
    pub client_cert: String,
    /// The client's private key.
    pub client_key: Secret,
    /// The server names the daemon's certificate carries.
    pub sans: Vec<String>,
    /// When the certificates expire.
    pub not_after: SystemTime,
}

/// One file of [`JobCerts::files`].
#[derive(Debug, Clone, Copy)]
pub struct CertFile<'a> {
    /// Path relative to the certificate directory, e.g. `server/key.pem`.
    pub path: &'static str,
    /// The PEM text.
    pub contents: &'a str,
    /// Whether it is a private key (mode 0600) rather than a certificate (0644).
    pub private: bool,
}

impl CertFile<'_> {
    /// The file mode it gets.
    pub fn mode(&self) -> u32 {
        if self.private {
            0o600
        } else {
            0o644
        }
    }

    /// A Kubernetes Secret key for the file (`server/key.pem` → `server-key.pem`): Secret keys
    /// cannot hold `/`, so a volume maps them back to [`CertFile::path`] with `items`.
    pub fn secret_key(&self) -> String {
        self.path.replace('/', "-")
    }
}

/// Makes a CA, a server certificate for [`DEFAULT_SANS`] plus `opts.extra_sans`, and a client
/// certificate, all valid from a few minutes ago until `opts.validity` from now.
///
/// # Errors
/// [`CertError::Certificate`] when an extra name is neither an IP address nor a valid DNS name,
/// or the validity does not fit a certificate.
pub fn generate(opts: &CertOptions) -> Result<JobCerts, CertError> {
    generate_at(opts, SystemTime::now())
}

fn generate_at(opts: &CertOptions, now: SystemTime) -> Result<JobCerts, CertError> {
    let err = |e: rcgen::Error| CertError::Certificate(e.to_string());
    let not_before = time::OffsetDateTime::from(now - CLOCK_SKEW);
    let not_after_sys = now + opts.validity;
    let not_after = time::OffsetDateTime::from(not_after_sys);
    if opts.validity.is_zero() {
        return Err(CertError::Certificate("validity must be positive".into()));
    }
    let window = |p: &mut CertificateParams| {
        p.not_before = not_before;
        p.not_after = not_after;
    };

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    window(&mut ca);
    ca.distinguished_name = name("kiln job CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
    for s in &opts.extra_sans {
        let s = s.trim();
        if s.is_empty() {
            return Err(CertError::Certificate("empty server name".into()));
        }
        if !sans.iter().any(|have| have.eq_ignore_ascii_case(s)) {
            sans.push(s.to_string());
        }
    }
    let mut server = CertificateParams::new(sans.clone())
        .map_err(|e| CertError::Certificate(format!("server names {sans:?}: {e}")))?;
    window(&mut server);
    server.distinguished_name = name("docker");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate().map_err(err)?;
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(err)?;

    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    window(&mut client);
    client.distinguished_name = name("kiln client");
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    let client_key = KeyPair::generate().map_err(err)?;
    let client_cert = client
        .signed_by(&client_key, &ca_cert, &ca_key)
        .map_err(err)?;

    Ok(JobCerts {
        ca_cert: ca_cert.pem(),
        ca_key: Secret::new(ca_key.serialize_pem()),
        server_cert: server_cert.pem(),
        server_key: Secret::new(server_key.serialize_pem()),
        client_cert: client_cert.pem(),
        client_key: Secret::new(client_key.serialize_pem()),
        sans,
        not_after: not_after_sys,
    })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

impl JobCerts {
    /// The files of the `docker:dind` layout: `ca/cert.pem`, `server/{ca,cert,key}.pem` and
    /// `client/{ca,cert,key}.pem`, plus `ca/key.pem` when `with_ca_key`.
    ///
    /// Leave the CA key out of a directory the `docker:dind` image reads: when it finds
    /// `ca/key.pem` its entrypoint signs new server and client certificates over the given
    /// ones (which fails on a read-only Secret mount).
    pub fn files(&self, with_ca_key: bool) -> Vec<CertFile<'_>> {
        fn public<'a>(path: &'static str, contents: &'a str) -> CertFile<'a> {
            CertFile {
                path,
                contents,
                private: false,
            }
        }
        fn private<'a>(path: &'static str, key: &'a Secret) -> CertFile<'a> {
            CertFile {
                path,
                contents: key.expose(),
                private: true,
            }
        }
        let mut files = vec![public("ca/cert.pem", self.ca_cert.as_str())];
        if with_ca_key {
            files.push(private("ca/key.pem", &self.ca_key));
        }
        files.extend([
            public("server/ca.pem", self.ca_cert.as_str()),
            public("server/cert.pem", self.server_cert.as_str()),
            private("server/key.pem", &self.server_key),
            public("client/ca.pem", self.ca_cert.as_str()),
            public("client/cert.pem", self.client_cert.as_str()),
            private("client/key.pem", &self.client_key),
        ]);
        files
    }

    /// Writes [`JobCerts::files`] under `dir` (created if missing). Each file is written to a
    /// temporary name with its final mode and renamed into place, so a reader never sees a
    /// partial file or a key with loose permissions.
    ///
    /// # Errors
    /// [`CertError::Io`] when a directory or file cannot be written.
    pub fn write_to(&self, dir: &Path, with_ca_key: bool) -> Result<(), CertError> {
        for f in self.files(with_ca_key) {
            let path = dir.join(f.path);
            let parent = path.parent().unwrap_or(dir);
            std::fs::create_dir_all(parent).map_err(CertError::io(parent))?;
            write_file(&path, f.contents.as_bytes(), f.mode())?;
        }
        Ok(())
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(CertError::io(&tmp))?;
    // The umask may have narrowed the mode (never widened): set it exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(CertError::io(&tmp))?;
    f.write_all(bytes).map_err(CertError::io(&tmp))?;
    f.sync_all().map_err(CertError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(CertError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_the_dind_layout_and_keys_are_private() {
        let certs = generate(&CertOptions::default()).unwrap();
        let paths: Vec<_> = certs.files(false).iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                "ca/cert.pem",
                "server/ca.pem",
                "server/cert.pem",
                "server/key.pem",
                "client/ca.pem",
                "client/cert.pem",
                "client/key.pem"
            ]
        );
        for f in certs.files(true) {
            assert_eq!(f.private, f.path.ends_with("key.pem"), "{}", f.path);
            assert_eq!(f.mode(), if f.private { 0o600 } else { 0o644 });
            let begin = if f.private {
                "-----BEGIN PRIVATE KEY-----"
            } else {
                "-----BEGIN CERTIFICATE-----"
            };
            assert!(f.contents.starts_with(begin), "{}", f.path);
        }
        assert_eq!(certs.files(true)[1].secret_key(), "ca-key.pem");
    }

    #[test]
    fn keys_are_p256_and_debug_hides_them() {
        let certs = generate(&CertOptions::default()).unwrap();
        let key = KeyPair::from_pem(certs.client_key.expose()).unwrap();
        assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
        let shown = format!("{certs:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn extra_names_are_added_once_and_bad_ones_refused() {
        let opts = CertOptions {
            extra_sans: vec!["dind.ci".into(), "LOCALHOST".into(), "10.0.0.7".into()],
            ..CertOptions::default()
        };
        let certs = generate(&opts).unwrap();
        assert_eq!(
            certs.sans,
            [
                "docker",
                "localhost",
                "127.0.0.1",
                "::1",
                "dind.ci",
                "10.0.0.7"
            ]
        );
        let bad = CertOptions {
            extra_sans: vec!["bad name\u{e9}".into()],
            ..CertOptions::default()
        };
        assert!(matches!(generate(&bad), Err(CertError::Certificate(_))));
    }

    #[test]
    fn validity_is_the_requested_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let certs = generate_at(
            &CertOptions {
                validity: Duration::from_secs(3600),
                ..CertOptions::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(certs.not_after, now + Duration::from_secs(3600));
    }

    #[test]
    fn written_files_have_their_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(&CertOptions::default()).unwrap();
        certs.write_to(dir.path(), false).unwrap();
        assert!(!dir.path().join("ca/key.pem").exists());
        for f in certs.files(false) {
            let meta = std::fs::metadata(dir.path().join(f.path)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, f.mode(), "{}", f.path);
            assert_eq!(
                std::fs::read_to_string(dir.path().join(f.path)).unwrap(),
                f.contents
            );
        }
        // Writing again replaces the files (a re-run of `kiln certs`).
        let again = generate(&CertOptions::default()).unwrap();
        again.write_to(dir.path(), true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("client/cert.pem")).unwrap(),
            again.client_cert
        );
        let mode = std::fs::metadata(dir.path().join("ca/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
