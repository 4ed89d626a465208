//! Token scopes (`repository:library/alpine:pull,push`) and sets of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Errors from parsing a scope string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    /// The string does not have the `type:name:actions` shape.
    #[error("invalid scope {0:?}: expected type:name:actions")]
    Malformed(String),
}

/// One resource scope as used in the registry token protocol.
///
/// Actions are kept sorted and deduplicated so equal scopes compare and print
/// the same regardless of how they were built.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    resource_type: String,
    name: String,
    actions: BTreeSet<String>,
}

impl Scope {
    /// A scope with arbitrary type, name and actions.
    pub fn new<I, S>(resource_type: impl Into<String>, name: impl Into<String>, actions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            resource_type: resource_type.into(),
            name: name.into(),
            actions: actions
                .into_iter()
                .map(Into::into)
                .filter(|a: &String| !a.is_empty())
                .collect(),
        }
    }

    /// `repository:NAME:pull`.
    pub fn pull(repository: impl Into<String>) -> Self {
        Self::new("repository", repository, ["pull"])
    }

    /// `repository:NAME:pull,push`; pushing needs pull too, for blob mounts
    /// and existence checks.
    pub fn push(repository: impl Into<String>) -> Self {
        Self::new("repository", repository, ["pull", "push"])
    }

    /// Resource type, usually `repository` (may carry a class: `repository(plugin)`).
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// Resource name, e.g. `library/alpine`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sorted actions.
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().map(String::as_str)
    }

    /// True when this scope grants `action`.
    pub fn allows(&self, action: &str) -> bool {
        self.actions.contains(action) || self.actions.contains("*")
    }

    /// Adds the actions of `other` when it names the same resource; returns
    /// false (and changes nothing) otherwise.
    pub fn merge(&mut self, other: &Scope) -> bool {
        if self.resource_type != other.resource_type || self.name != other.name {
            return false;
        }
        self.actions.extend(other.actions.iter().cloned());
        true
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.resource_type, self.name)?;
        let mut first = true;
        for a in &self.actions {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(a)?;
            first = false;
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Names may contain ':' (a registry host with a port), so the type
        // ends at the first colon and the actions start after the last one.
        let malformed = || ScopeError::Malformed(s.to_owned());
        let (resource_type, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if resource_type.is_empty() || name.is_empty() || s.contains(char::is_whitespace) {
            return Err(malformed());
        }
        Ok(Scope::new(
            resource_type,
            name,
            actions.split(',').map(str::trim),
        ))
    }
}

/// A set of scopes in which each resource appears once, with its actions merged.
///
/// Its `Display` form (scopes sorted, space separated) is canonical, so it
/// doubles as a cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet {
    scopes: BTreeMap<(String, String), Scope>,
}

impl ScopeSet {
    /// An empty set, as used for `/v2/` checks and catalog-less logins.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scope, merging its actions into an existing entry for the same resource.
    pub fn insert(&mut self, scope: Scope) {
        let key = (scope.resource_type.clone(), scope.name.clone());
        match self.scopes.get_mut(&key) {
            Some(existing) => {
                existing.merge(&scope);
            }
            None => {
                self.scopes.insert(key, scope);
            }
        }
    }

    /// Builder-style [`ScopeSet::insert`].
    pub fn with(mut self, scope: Scope) -> Self {
        self.insert(scope);
        self
    }

    /// Parses space separated scopes, as in a challenge's `scope` parameter.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        s.split_whitespace().map(Scope::from_str).collect()
    }

    /// The scopes in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.values()
    }

    /// Number of distinct resources.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// True when no scope is present.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// True when every action of every scope in `other` is granted here.
    pub fn covers(&self, other: &ScopeSet) -> bool {
        other.iter().all(|o| {
            self.scopes
                .get(&(o.resource_type.clone(), o.name.clone()))
                .is_some_and(|s| o.actions().all(|a| s.allows(a)))
        })
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        let mut set = ScopeSet::new();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl IntoIterator for ScopeSet {
    type Item = Scope;
    type IntoIter = std::collections::btree_map::IntoValues<(String, String), Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.into_values()
    }
}

impl Extend<Scope> for ScopeSet {
    fn extend<T: IntoIterator<Item = Scope>>(&mut self, iter: T) {
        for s in iter {
            self.insert(s);
        }
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let s: Scope = "repository:library/alpine:push,pull".parse().unwrap();
        assert_eq!(s.resource_type(), "repository");
        assert_eq!(s.name(), "library/alpine");
        assert_eq!(s.to_string(), "repository:library/alpine:pull,push");
        let s: Scope = "repository:localhost:5000/a/b:pull".parse().unwrap();
        assert_eq!(s.name(), "localhost:5000/a/b");
        let s: Scope = "registry:catalog:*".parse().unwrap();
        assert!(s.allows("pull"));
        let s: Scope = "repository(plugin):x/y:pull".parse().unwrap();
        assert_eq!(s.resource_type(), "repository(plugin)");
        let s: Scope = "repository:a:".parse().unwrap();
        assert_eq!(s.actions().count(), 0);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "repository",
            "repository:foo",
            ":foo:pull",
            "repository::pull",
            "a b:c:d",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }

    #[test]
    fn merging() {
        let mut a = Scope::pull("x");
        assert!(a.merge(&Scope::new("repository", "x", ["push", "pull"])));
        assert_eq!(a.to_string(), "repository:x:pull,push");
        assert!(!a.merge(&Scope::push("y")));
        assert_eq!(a.to_string(), "repository:x:pull,push");
    }

    #[test]
    fn sets_merge_and_sort() {
        let set = ScopeSet::new()
            .with(Scope::pull("b"))
            .with(Scope::pull("a"))
            .with(Scope::new("repository", "b", ["push"]));
        assert_eq!(set.to_string(), "repository:a:pull repository:b:pull,push");
        assert_eq!(set.len(), 2);
        let other = ScopeSet::parse("repository:b:push repository:a:pull").unwrap();
        assert!(set.covers(&other));
        assert!(!other.covers(&set));
        let mut grown = ScopeSet::new().with(Scope::pull("a"));
        grown.extend(ScopeSet::parse("repository:b:push repository:b:pull").unwrap());
        assert_eq!(grown, set);
        let reordered = ScopeSet::parse("repository:b:push,pull  repository:a:pull").unwrap();
        assert_eq!(reordered, set);
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }
}
