//! Docker `config.json` (and Kubernetes `.dockerconfigjson`) content.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use crate::credential::Credential;
use crate::host::normalize_host;
use crate::secret::Secret;

/// Errors from reading docker config content.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// The content is not valid JSON of the expected shape. The serde message
    /// is left out on purpose: it can quote the offending (secret) value.
    #[error("{origin}: not a valid docker config (line {line}, column {column})")]
    Parse {
        /// Where the content came from (a path or a variable name).
        origin: String,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// An `auth` field that is not base64 of `user:password`.
    #[error("{origin}: invalid \"auth\" value for {host}: not base64 of user:password")]
    InvalidAuth {
        /// Where the content came from.
        origin: String,
        /// The entry's key.
        host: String,
    },
}

/// One entry of the `auths` map.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AuthEntry {
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<Secret>,
    /// Username, used when `auth` is absent.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, used when `auth` is absent.
    #[serde(default)]
    pub password: Option<Secret>,
    /// OAuth2 refresh token.
    #[serde(default, rename = "identitytoken")]
    pub identity_token: Option<Secret>,
    /// Bearer token for the registry itself.
    #[serde(default, rename = "registrytoken")]
    pub registry_token: Option<Secret>,
}

/// The parts of a docker config that concern registry credentials.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct DockerConfig {
    /// Stored credentials by registry key (any spelling, see [`normalize_host`]).
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// Credential helper names by registry key.
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
    /// Default credential helper name.
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
}

/// What a docker config says to do for one host, in its own precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLookup {
    /// Ask this helper (from `credHelpers`), then fall back to the rest.
    Helper(String),
    /// Ask this helper (from `credsStore`), then fall back to `auths`.
    Store(String),
    /// Credentials stored inline in `auths`.
    Inline(Credential),
}

// Deserialising Secret lets serde never hold the value in a plain String field.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl DockerConfig {
    /// Parses config content; `origin` names it in errors.
    pub fn parse(content: &str, origin: &str) -> Result<Self, DockerConfigError> {
        serde_json::from_str(content).map_err(|e| DockerConfigError::Parse {
            origin: origin.to_owned(),
            line: e.line(),
            column: e.column(),
        })
    }

    /// Everything this config offers for `host`, most preferred first:
    /// `credHelpers[host]`, then `credsStore`, then `auths`.
    pub fn lookup(&self, host: &str, origin: &str) -> Result<Vec<ConfigLookup>, DockerConfigError> {
        let host = normalize_host(host);
        let mut out = Vec::new();
        if let Some((_, helper)) = self
            .cred_helpers
            .iter()
            .find(|(k, v)| normalize_host(k) == host && !v.is_empty())
        {
            out.push(ConfigLookup::Helper(helper.clone()));
        }
        if let Some(store) = self.creds_store.as_ref().filter(|s| !s.is_empty()) {
            out.push(ConfigLookup::Store(store.clone()));
        }
        // An exact key wins over another spelling of the same host, so a file
        // with both `https://index.docker.io/v1/` and `docker.io` is deterministic.
        let mut entries: Vec<(&String, &AuthEntry)> = self
            .auths
            .iter()
            .filter(|(k, _)| normalize_host(k) == host)
            .collect();
        entries.sort_by_key(|(k, _)| *k != &host);
        for (key, entry) in entries {
            if let Some(c) = entry_credential(entry, key, origin)? {
                out.push(ConfigLookup::Inline(c));
                break;
            }
        }
        Ok(out)
    }
}

/// Turns one `auths` entry into a credential; `None` for an empty entry
/// (as written by `docker login` when a credsStore holds the secret).
pub fn entry_credential(
    entry: &AuthEntry,
    key: &str,
    origin: &str,
) -> Result<Option<Credential>, DockerConfigError> {
    if let Some(t) = entry.registry_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::RegistryToken(t.clone())));
    }
    if let Some(t) = entry.identity_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(t.clone())));
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let invalid = || DockerConfigError::InvalidAuth {
            origin: origin.to_owned(),
            host: key.to_owned(),
        };
        let decoded = decode_base64(auth.expose().trim()).ok_or_else(invalid)?;
        let text = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (user, pass) = text.split_once(':').ok_or_else(invalid)?;
        return Ok(Some(Credential::from_username_secret(
            user,
            Secret::new(pass.trim_end_matches(['\n', '\r'])),
        )));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() || !p.is_empty() => {
            Ok(Some(Credential::from_username_secret(u, p.clone())))
        }
        _ => Ok(None),
    }
}

/// Accepts padded and unpadded base64, as hand-written configs contain both.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s.trim_end_matches('=')))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_all_entry_kinds() {
        let json = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "ghcr.io": {{"username": "bob", "password": "pw-bob"}},
                "quay.io:443": {{"identitytoken": "id-quay"}},
                "registry.example.com": {{"registrytoken": "rt-example"}},
                "empty.example.com": {{}},
                "tok.example.com": {{"auth": "{}"}}
              }},
              "credHelpers": {{"gcr.io": "gcloud"}},
              "credsStore": "desktop",
              "HttpHeaders": {{"User-Agent": "x"}}
            }}"#,
            b64("alice:pa:ss"),
            b64("<token>:idtok"),
        );
        let cfg = DockerConfig::parse(&json, "test").unwrap();
        let get = |h: &str| cfg.lookup(h, "test").unwrap();
        assert_eq!(
            get("registry-1.docker.io"),
            vec![
                ConfigLookup::Store("desktop".into()),
                ConfigLookup::Inline(Credential::basic("alice", "pa:ss"))
            ]
        );
        assert_eq!(
            get("https://ghcr.io/")[1],
            ConfigLookup::Inline(Credential::basic("bob", "pw-bob"))
        );
        assert_eq!(
            get("quay.io")[1],
            ConfigLookup::Inline(Credential::IdentityToken(Secret::new("id-quay")))
        );
        assert_eq!(
            get("registry.example.com")[1],
            ConfigLookup::Inline(Credential::RegistryToken(Secret::new("rt-example")))
        );
        assert_eq!(
            get("empty.example.com"),
            vec![ConfigLookup::Store("desktop".into())]
        );
        assert_eq!(
            get("tok.example.com")[1],
            ConfigLookup::Inline(Credential::IdentityToken(Secret::new("idtok")))
        );
        assert_eq!(
            get("gcr.io"),
            vec![
                ConfigLookup::Helper("gcloud".into()),
                ConfigLookup::Store("desktop".into())
            ]
        );
    }

    #[test]
    fn minimal_and_empty_configs() {
        assert_eq!(
            DockerConfig::parse("{}", "x").unwrap(),
            DockerConfig::default()
        );
        let cfg =
            DockerConfig::parse(r#"{"auths":{"h":{"auth":""}},"credsStore":""}"#, "x").unwrap();
        assert!(cfg.lookup("h", "x").unwrap().is_empty());
        let unpadded = b64("u:p").trim_end_matches('=').to_owned();
        let cfg = DockerConfig::parse(
            &format!(r#"{{"auths":{{"h":{{"auth":"{unpadded}"}}}}}}"#),
            "x",
        )
        .unwrap();
        assert_eq!(
            cfg.lookup("h", "x").unwrap(),
            vec![ConfigLookup::Inline(Credential::basic("u", "p"))]
        );
    }

    #[test]
    fn exact_key_wins_over_alias() {
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}, "docker.io": {{"auth": "{}"}}}}}}"#,
            b64("legacy:1"),
            b64("modern:2"),
        );
        let cfg = DockerConfig::parse(&json, "x").unwrap();
        assert_eq!(
            cfg.lookup("index.docker.io", "x").unwrap(),
            vec![ConfigLookup::Inline(Credential::basic("modern", "2"))]
        );
    }

    #[test]
    fn errors_do_not_leak() {
        let err = DockerConfig::parse(r#"{"auths": {"h": {"password": 1234567}}}"#, "cfg.json")
            .unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(msg.contains("cfg.json"));
        assert!(!msg.contains("1234567"), "{msg}");

        let cfg = DockerConfig::parse(r#"{"auths":{"h":{"auth":"not-base64-SECRETVALUE"}}}"#, "x")
            .unwrap();
        let err = cfg.lookup("h", "x").unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains("SECRETVALUE"), "{msg}");
        let cfg = DockerConfig::parse(
            &format!(
                r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#,
                b64("nocolonSECRET")
            ),
            "x",
        )
        .unwrap();
        let err = cfg.lookup("h", "x").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRET"));
        assert!(format!("{cfg:?}").contains("<redacted>"));
    }
}
