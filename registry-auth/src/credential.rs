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

    /// The secret parts, for scrubbing text that came back from a peer.
    pub(crate) fn secrets(&self) -> Vec<&Secret> {
        match self {
            Credential::Basic { password, .. } => vec![password],
            Credential::IdentityToken(s) | Credential::RegistryToken(s) => vec![s],
        }
    }
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
}
