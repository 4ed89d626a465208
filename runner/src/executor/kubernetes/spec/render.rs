//! The objects as `kiln-runner pod-spec` prints them: a YAML stream with the Secret's values
//! replaced by their sizes, so the output can be shared and diffed.

use super::JobObjects;
use k8s_openapi::api::core::v1::Secret;
use kiln_dind_certs::{JobCerts, Secret as Key};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Stands in for every certificate and key: the real ones are made per job.
pub const CERT_PLACEHOLDER: &str = "<generated per job>";

/// Certificates holding [`CERT_PLACEHOLDER`], for printing and golden tests.
pub fn placeholder_certs() -> JobCerts {
    JobCerts {
        ca_cert: CERT_PLACEHOLDER.into(),
        ca_key: Key::new(CERT_PLACEHOLDER),
        server_cert: CERT_PLACEHOLDER.into(),
        server_key: Key::new(CERT_PLACEHOLDER),
        client_cert: CERT_PLACEHOLDER.into(),
        client_key: Key::new(CERT_PLACEHOLDER),
        sans: Vec::new(),
        not_after: SystemTime::UNIX_EPOCH,
    }
}

/// `secret` with its keys kept and its values replaced by `<redacted: N bytes>`, moved to
/// `stringData` (which takes any text) so the result still reads back as a Secret.
pub fn redact_secret(secret: &Secret) -> Secret {
    let redacted: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("<redacted: {} bytes>", v.0.len())))
        .collect();
    Secret {
        data: None,
        string_data: Some(redacted),
        ..secret.clone()
    }
}

/// The pod and the redacted Secret as a two-document YAML stream.
pub fn to_yaml(objects: &JobObjects) -> Result<String, serde_norway::Error> {
    let pod = serde_norway::to_string(&objects.pod)?;
    let secret = serde_norway::to_string(&redact_secret(&objects.secret))?;
    Ok(quote_yaml11_booleans(&format!("---\n{pod}---\n{secret}")))
}

/// YAML 1.1 readers (kubectl's) take a bare `yes`, `no`, `on`, `off`, `y` or `n` for a
/// boolean; the 1.2 serializer leaves them bare, so plain scalars that spell one are quoted.
fn quote_yaml11_booleans(text: &str) -> String {
    const WORDS: [&str; 16] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let split = line.rfind(": ").map(|i| i + 2).or_else(|| {
            line.trim_start()
                .starts_with("- ")
                .then(|| line.find("- ").unwrap_or(0) + 2)
        });
        match split {
            Some(i) if WORDS.contains(&&line[i..]) => {
                out.push_str(&line[..i]);
                out.push('\'');
                out.push_str(&line[i..]);
                out.push('\'');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
