//! What a test can make the server do wrong, and what it records.

use std::collections::HashSet;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The raw query string (empty when none).
    pub query: String,
}

impl RequestRecord {
    /// Whether this was a watch (`watch=1` or `watch=true`).
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=1" || p == "watch=true")
    }
}

#[derive(Debug)]
struct FailRule {
    method: Option<String>,
    path: String,
    remaining: usize,
    code: u16,
}

/// Denied verbs and injected failures.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    denied: HashSet<(String, String)>,
    fail: Vec<FailRule>,
}

impl Faults {
    pub fn deny(&mut self, verb: &str, resource: &str) {
        self.denied.insert((verb.to_string(), resource.to_string()));
    }

    pub fn allow(&mut self, verb: &str, resource: &str) {
        self.denied
            .remove(&(verb.to_string(), resource.to_string()));
    }

    pub fn is_denied(&self, verb: &str, resource: &str) -> bool {
        self.denied
            .contains(&(verb.to_string(), resource.to_string()))
            || self
                .denied
                .contains(&("*".to_string(), resource.to_string()))
    }

    pub fn fail_next(&mut self, method: Option<&str>, path: &str, times: usize, code: u16) {
        self.fail.push(FailRule {
            method: method.map(str::to_string),
            path: path.to_string(),
            remaining: times,
            code,
        });
    }

    /// The injected status for this request, counting it against its rule.
    pub fn take_failure(&mut self, method: &str, path: &str) -> Option<u16> {
        let rule = self.fail.iter_mut().find(|r| {
            r.remaining > 0
                && r.path == path
                && r.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        rule.remaining -= 1;
        Some(rule.code)
    }
}
