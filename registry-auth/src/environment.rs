//! The process environment as an injectable value.

use std::collections::BTreeMap;

/// A snapshot of environment variables.
///
/// Logic reads variables only through this type so tests can run with a
/// hand-built environment and never see the developer's or CI's real one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current process environment; variables that are not UTF-8 are skipped.
    pub fn from_process() -> Self {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }

    /// Value of a variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Value of a variable when set and not blank.
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// Sets a variable.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Builder-style [`Environment::set`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// All variables.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

/// Only names are shown: values include passwords such as `CI_REGISTRY_PASSWORD`.
impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_names_only() {
        let env = Environment::new().with("CI_REGISTRY_PASSWORD", "pw-123456");
        let dbg = format!("{env:?}");
        assert!(dbg.contains("CI_REGISTRY_PASSWORD"));
        assert!(!dbg.contains("pw-123456"));
        assert_eq!(env.get_nonempty("CI_REGISTRY_PASSWORD"), Some("pw-123456"));
        assert_eq!(Environment::new().with("A", " ").get_nonempty("A"), None);
    }
}
