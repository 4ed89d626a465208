//! The HTTP client: rustls with the system's web roots plus the user's CA certificates, and no
//! automatic redirects (the client follows them itself to drop `Authorization` off-registry).

use super::config::RegistryConfig;
use super::error::RegistryError;

/// Builds the shared HTTP client for `config`.
pub fn http_client(config: &RegistryConfig) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    for path in &config.ca_certificates {
        let pem = std::fs::read(path).map_err(|source| RegistryError::Io {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            RegistryError::CaCertificate {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        if certs.is_empty() {
            return Err(RegistryError::CaCertificate {
                path: path.clone(),
                reason: "no PEM certificate in the file".into(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| RegistryError::Setup(e.to_string()))
}
