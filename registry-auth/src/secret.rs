//! A string that must never reach logs, error messages or `Debug` output.

use std::fmt;

/// Placeholder printed wherever a [`Secret`] would otherwise be shown.
pub const REDACTED: &str = "<redacted>";

/// A password, token or other credential material.
///
/// `Debug` and `Display` print [`REDACTED`]; the only way to read the value is
/// the explicit [`Secret::expose`], which makes every use easy to audit.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value so it is redacted from now on.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the underlying value; callers take responsibility for not logging it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret material is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Replaces every occurrence of the given secrets in `text`.
///
/// Used on text that came from outside (helper stderr, token server bodies)
/// before it goes into an error, since a misbehaving peer may echo credentials.
pub(crate) fn scrub(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        // Very short values would mangle ordinary text without protecting much.
        if secret.expose().len() >= 3 {
            out = out.replace(secret.expose(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(
            format!("{:#?}", Some(&s)),
            format!("Some(\n    {REDACTED},\n)")
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn scrub_removes_values() {
        let s = Secret::new("hunter2");
        assert_eq!(
            scrub("bad password hunter2!", &[&s]),
            "bad password <redacted>!"
        );
        assert_eq!(scrub("ab", &[&Secret::new("a")]), "ab");
    }
}
