//! The credential kinds a registry may accept.

use base64::Engine as _;

use crate::secret::Secret;

/// Username the docker CLI and credential helpers use to mark an identity
/// (OAuth2 refresh) token in place of a password.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";

/// Credentials for one registry. `Debug` never shows secret parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or personal access token) for Basic auth and
    /// for the token endpoint.
    Basic {
        /// Username, not secret.
        username: String,
        /// Password or access token.
        password: Secret,
    },
    /// An OAuth2 refresh token, exchanged at the token endpoint.
    IdentityToken(Secret),
    /// A bearer token sent to the registry as is, skipping the handshake.
    RegistryToken(Secret),
}

impl Credential {
    /// Username and password credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Builds a credential from a helper-style username/secret pair, where the
    /// username `<token>` marks an identity token.
    pub fn from_username_secret(username: &str, secret: Secret) -> Self {
        if username == IDENTITY_TOKEN_USERNAME {
            Credential::IdentityToken(secret)
        } else {
            Credential::basic(username, secret)
        }
    }

    /// The `Authorization` header value to send straight to a registry
    /// (Basic challenge, or a pre-issued registry token).
    pub fn authorization(&self) -> Option<Secret> {
        match self {
            Credential::Basic { username, password } => {
                Some(basic_authorization(username, password))
            }
            Credential::RegistryToken(t) => Some(Secret::new(format!("Bearer {}", t.expose()))),
            Credential::IdentityToken(_) => None,
        }
    }

    /// Every form in which this credential could come back from a peer
    /// (raw, base64 in a Basic header, form-encoded in an OAuth2 body), for
    /// scrubbing text before it goes into an error.
    pub(crate) fn leak_forms(&self) -> Vec<Secret> {
        let raw = match self {
            Credential::Basic { password, .. } => password,
            Credential::IdentityToken(s) | Credential::RegistryToken(s) => s,
        };
        let mut out = vec![raw.clone(), Secret::new(form_encode(raw.expose()))];
        if let Credential::Basic { username, password } = self {
            let header = basic_authorization(username, password);
            if let Some(b64) = header.expose().strip_prefix("Basic ") {
                out.push(Secret::new(b64));
            }
        }
        out
    }
}

/// application/x-www-form-urlencoded form of a value.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `Basic base64(username:password)`.
pub fn basic_authorization(username: &str, password: &Secret) -> Secret {
    let raw = format!("{username}:{}", password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_header() {
        let c = Credential::basic("alice", "s3cret-pw");
        let dbg = format!("{c:?} {c:#?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(dbg.contains("alice"));
        // base64("alice:s3cret-pw")
        assert_eq!(
            c.authorization().unwrap().expose(),
            "Basic YWxpY2U6czNjcmV0LXB3"
        );
        let t = Credential::from_username_secret("<token>", Secret::new("idtok-xyz"));
        assert_eq!(t, Credential::IdentityToken(Secret::new("idtok-xyz")));
        assert!(!format!("{t:?}").contains("idtok-xyz"));
        assert!(t.authorization().is_none());
        let r = Credential::RegistryToken(Secret::new("regtok"));
        assert_eq!(r.authorization().unwrap().expose(), "Bearer regtok");
        assert!(!format!("{r:?}").contains("regtok"));
    }

    #[test]
    fn leak_forms_cover_encodings() {
        let c = Credential::basic("alice", "p w&x");
        let forms: Vec<String> = c
            .leak_forms()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(forms, vec!["p w&x", "p+w%26x", "YWxpY2U6cCB3Jng="]);
    }
}
