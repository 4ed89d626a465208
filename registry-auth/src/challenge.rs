//! Parsing `WWW-Authenticate` headers (RFC 7235, RFC 6750) into challenges.

use crate::scope::{ScopeError, ScopeSet};

/// Errors from parsing a `WWW-Authenticate` header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChallengeError {
    /// A quoted string was not closed before the end of the header.
    #[error("unterminated quoted string in WWW-Authenticate header")]
    UnterminatedQuote,
    /// A character that cannot start a scheme or parameter.
    #[error("unexpected character {ch:?} at byte {at} of WWW-Authenticate header")]
    Unexpected {
        /// The offending character.
        ch: char,
        /// Its byte offset in the header.
        at: usize,
    },
    /// A parameter name with `=` but no value.
    #[error("parameter {0:?} has no value in WWW-Authenticate header")]
    MissingValue(String),
    /// No challenge at all.
    #[error("empty WWW-Authenticate header")]
    Empty,
}

/// Authentication scheme of a challenge, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Basic`: send the credentials on every request.
    Basic,
    /// `Bearer`: fetch a token from the realm first.
    Bearer,
    /// Any other scheme, as written in the header.
    Other(String),
}

/// The `error` parameter of a Bearer challenge (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthErrorCode {
    /// The token lacks a scope the request needs: fetch one with more scopes.
    InsufficientScope,
    /// The token expired or was revoked: fetch a new one.
    InvalidToken,
    /// The request was malformed.
    InvalidRequest,
    /// Any other code, as written.
    Other(String),
}

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
    token68: Option<String>,
}

impl Challenge {
    /// A challenge built by hand (parameter names are matched case-insensitively).
    pub fn new<I, K, V>(scheme: impl Into<String>, params: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            scheme: scheme.into(),
            params: params
                .into_iter()
                .map(|(k, v)| (k.into().to_ascii_lowercase(), v.into()))
                .collect(),
            token68: None,
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> AuthScheme {
        if self.scheme.eq_ignore_ascii_case("basic") {
            AuthScheme::Basic
        } else if self.scheme.eq_ignore_ascii_case("bearer") {
            AuthScheme::Bearer
        } else {
            AuthScheme::Other(self.scheme.clone())
        }
    }

    /// True for a Basic challenge.
    pub fn is_basic(&self) -> bool {
        self.scheme() == AuthScheme::Basic
    }

    /// True for a Bearer challenge.
    pub fn is_bearer(&self) -> bool {
        self.scheme() == AuthScheme::Bearer
    }

    /// First value of a parameter (names are case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All parameters in header order, names lower-cased.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A token68 value (`Negotiate abc==`), for schemes that use one.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The `realm` parameter: the token endpoint for Bearer.
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// The `service` parameter.
    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    /// Every scope named by the challenge, whether space separated in one
    /// parameter or spread over repeated `scope` parameters.
    pub fn scopes(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split_whitespace())
            .collect()
    }

    /// The scopes as a [`ScopeSet`].
    pub fn scope_set(&self) -> Result<ScopeSet, ScopeError> {
        self.scopes().into_iter().map(str::parse).collect()
    }

    /// The `error` parameter, if any.
    pub fn error(&self) -> Option<AuthErrorCode> {
        self.param("error").map(|e| match e {
            "insufficient_scope" => AuthErrorCode::InsufficientScope,
            "invalid_token" => AuthErrorCode::InvalidToken,
            "invalid_request" => AuthErrorCode::InvalidRequest,
            other => AuthErrorCode::Other(other.to_owned()),
        })
    }
}

/// Parses one `WWW-Authenticate` header value, which may hold several challenges.
pub fn parse_www_authenticate(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Parser { s: header, pos: 0 };
    let out = p.challenges()?;
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

/// Parses every `WWW-Authenticate` header of a response, in order.
pub fn parse_www_authenticate_headers<'a, I>(headers: I) -> Result<Vec<Challenge>, ChallengeError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    for h in headers {
        out.extend(parse_www_authenticate(h)?);
    }
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

/// Picks the challenge to answer: Bearer when offered, else Basic.
pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .find(|c| c.is_bearer())
        .or_else(|| challenges.iter().find(|c| c.is_basic()))
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token68_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/".contains(c)
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_while(&mut self, f: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    fn skip_ws(&mut self) {
        self.skip_while(|c| c == ' ' || c == '\t');
    }

    fn skip_separators(&mut self) {
        self.skip_while(|c| c == ' ' || c == '\t' || c == ',');
    }

    fn unexpected(&self) -> ChallengeError {
        ChallengeError::Unexpected {
            ch: self.peek().unwrap_or('\0'),
            at: self.pos,
        }
    }

    fn challenges(&mut self) -> Result<Vec<Challenge>, ChallengeError> {
        let mut out = Vec::new();
        loop {
            self.skip_separators();
            if self.peek().is_none() {
                return Ok(out);
            }
            let scheme = self.skip_while(is_tchar).to_owned();
            if scheme.is_empty() {
                return Err(self.unexpected());
            }
            let mut challenge = Challenge {
                scheme,
                params: Vec::new(),
                token68: None,
            };
            self.skip_ws();
            if let Some(t) = self.try_token68() {
                challenge.token68 = Some(t);
            } else {
                self.params(&mut challenge)?;
            }
            out.push(challenge);
        }
    }

    /// A token68 is only recognised right after the scheme, and only when
    /// it is not the start of a `name=value` parameter.
    fn try_token68(&mut self) -> Option<String> {
        let start = self.pos;
        let body = self.skip_while(is_token68_char).len();
        if body == 0 {
            self.pos = start;
            return None;
        }
        self.skip_while(|c| c == '=');
        let end = self.pos;
        self.skip_ws();
        match self.peek() {
            None | Some(',') => Some(self.s[start..end].to_owned()),
            _ => {
                self.pos = start;
                None
            }
        }
    }

    fn params(&mut self, challenge: &mut Challenge) -> Result<(), ChallengeError> {
        loop {
            let before = self.pos;
            self.skip_separators();
            if self.peek().is_none() {
                return Ok(());
            }
            let name = self.skip_while(is_tchar).to_owned();
            if name.is_empty() {
                return Err(self.unexpected());
            }
            self.skip_ws();
            if self.peek() != Some('=') {
                // A bare token after parameters starts the next challenge.
                self.pos = before;
                return Ok(());
            }
            self.pos += 1;
            self.skip_ws();
            let value = match self.peek() {
                Some('"') => self.quoted()?,
                _ => {
                    let v = self.skip_while(is_tchar_or_token68);
                    if v.is_empty() {
                        return Err(ChallengeError::MissingValue(name));
                    }
                    v.to_owned()
                }
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
            self.skip_ws();
            match self.peek() {
                None | Some(',') => {}
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        self.pos += 1;
        let mut out = String::new();
        let mut escaped = false;
        while let Some(c) = self.peek() {
            self.pos += c.len_utf8();
            if escaped {
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Ok(out);
            } else {
                out.push(c);
            }
        }
        Err(ChallengeError::UnterminatedQuote)
    }
}

/// Unquoted values seen in the wild include '/', ':' and '=' (e.g. unquoted
/// realms), which strict tchar would reject.
fn is_tchar_or_token68(c: char) -> bool {
    is_tchar(c) || "/:=@".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        let cs = parse_www_authenticate(h).unwrap();
        assert_eq!(cs.len(), 1);
        let c = &cs[0];
        assert!(c.is_bearer());
        assert_eq!(c.realm(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service(), Some("registry.docker.io"));
        assert_eq!(c.scopes(), vec!["repository:library/alpine:pull"]);
        assert_eq!(c.error(), None);
    }

    #[test]
    fn basic_with_realm_case_insensitive() {
        let cs = parse_www_authenticate(r#"bAsIc REALM="Registry Realm""#).unwrap();
        assert_eq!(cs[0].scheme(), AuthScheme::Basic);
        assert_eq!(cs[0].realm(), Some("Registry Realm"));
        let cs = parse_www_authenticate("BEARER realm=https://x/token").unwrap();
        assert!(cs[0].is_bearer());
        assert_eq!(cs[0].realm(), Some("https://x/token"));
    }

    #[test]
    fn several_scopes_and_errors() {
        let h = r#"Bearer realm="https://r/t",service="s",scope="repository:a:pull repository:b:pull,push",error="insufficient_scope""#;
        let c = &parse_www_authenticate(h).unwrap()[0];
        assert_eq!(
            c.scopes(),
            vec!["repository:a:pull", "repository:b:pull,push"]
        );
        assert_eq!(c.error(), Some(AuthErrorCode::InsufficientScope));
        assert_eq!(c.scope_set().unwrap().len(), 2);

        let h = r#"Bearer realm="https://r/t", scope="repository:a:pull", scope="repository:a:push", error=invalid_token"#;
        let c = &parse_www_authenticate(h).unwrap()[0];
        assert_eq!(c.scopes(), vec!["repository:a:pull", "repository:a:push"]);
        assert_eq!(c.scope_set().unwrap().to_string(), "repository:a:pull,push");
        assert_eq!(c.error(), Some(AuthErrorCode::InvalidToken));
        let c = Challenge::new("Bearer", [("Error", "weird")]);
        assert_eq!(c.error(), Some(AuthErrorCode::Other("weird".into())));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let h = r#"Basic realm="basic", Bearer realm="https://r/t",service="svc", Negotiate abc+/def==, NTLM"#;
        let cs = parse_www_authenticate(h).unwrap();
        assert_eq!(cs.len(), 4);
        assert!(cs[0].is_basic());
        assert_eq!(cs[0].realm(), Some("basic"));
        assert!(cs[1].is_bearer());
        assert_eq!(cs[1].service(), Some("svc"));
        assert_eq!(cs[2].scheme(), AuthScheme::Other("Negotiate".into()));
        assert_eq!(cs[2].token68(), Some("abc+/def=="));
        assert_eq!(cs[3].scheme(), AuthScheme::Other("NTLM".into()));
        assert_eq!(preferred(&cs).unwrap().realm(), Some("https://r/t"));
    }

    #[test]
    fn several_headers() {
        let cs = parse_www_authenticate_headers([
            r#"Basic realm="a""#,
            r#"Bearer realm="b",service="c""#,
        ])
        .unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(preferred(&cs).unwrap().realm(), Some("b"));
        assert_eq!(preferred(&cs[..1]).unwrap().realm(), Some("a"));
        assert!(parse_www_authenticate_headers([]).is_err());
    }

    #[test]
    fn quoted_escapes() {
        let h = r#"Bearer realm="a \"quoted\" realm, with comma\\",service="x""#;
        let c = &parse_www_authenticate(h).unwrap()[0];
        assert_eq!(c.realm(), Some(r#"a "quoted" realm, with comma\"#));
        assert_eq!(c.service(), Some("x"));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse_www_authenticate(r#"Bearer realm="open"#),
            Err(ChallengeError::UnterminatedQuote)
        );
        assert_eq!(parse_www_authenticate("  ,, "), Err(ChallengeError::Empty));
        assert!(matches!(
            parse_www_authenticate("Bearer service=x, realm="),
            Err(ChallengeError::MissingValue(_))
        ));
        assert!(matches!(
            parse_www_authenticate(r#"Bearer realm="a" "b""#),
            Err(ChallengeError::Unexpected { .. })
        ));
        assert!(parse_www_authenticate("\"x\"").is_err());
        assert!(parse_www_authenticate("Bearer ä=1").is_err());
    }
}
