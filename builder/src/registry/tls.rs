//! The HTTP client: rustls with the system's web roots plus the user's CA certificates, and no
//! automatic redirects (the client follows them itself to drop `Authorization` off-registry).

use super::config::RegistryConfig;
use super::error::RegistryError;
use crate::path_io::IoAt;

/// Builds the shared HTTP client for `config`; with `verify` false it accepts any server
/// certificate (for the registries `--skip-tls-verify` names).
pub fn http_client(
    config: &RegistryConfig,
    verify: bool,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder()
        .danger_accept_invalid_certs(!verify)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    for path in &config.ca_certificates {
        let pem = std::fs::read(path).at(path)?;
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
