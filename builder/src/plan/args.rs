//! Build arguments: `--build-arg` values, global ARGs before the first FROM, per-stage ARG scope,
//! and the ARGs BuildKit predefines.

use crate::image::Platform;
use std::collections::{BTreeMap, BTreeSet};

/// Proxy variables that `--build-arg` may set without an ARG: they reach RUN steps only.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform ARGs BuildKit defines: in scope before the first FROM, and inside a stage once it
/// declares them (`ARG TARGETARCH`).
pub fn predefined(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        m.insert(format!("{prefix}PLATFORM"), p.to_string());
        m.insert(format!("{prefix}OS"), p.os.clone());
        m.insert(format!("{prefix}ARCH"), p.arch.clone());
        m.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    m
}

/// `--build-arg` values and which of them some ARG consumed.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    given: BTreeMap<String, String>,
    used: BTreeSet<String>,
}

impl BuildArgs {
    /// Wraps the values given on the command line.
    pub fn new(given: BTreeMap<String, String>) -> Self {
        BuildArgs {
            given,
            used: BTreeSet::new(),
        }
    }

    /// The value given for `name`, marking it consumed.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let v = self.given.get(name).cloned();
        if v.is_some() {
            self.used.insert(name.to_string());
        }
        v
    }

    /// Proxy values given, for RUN steps' environment.
    pub fn proxies(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter_map(|k| self.given.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect()
    }

    /// Names given that no ARG declared (proxies excepted), as Docker warns about.
    pub fn unconsumed(&self) -> Vec<String> {
        self.given
            .keys()
            .filter(|k| !self.used.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_names_and_values() {
        let t = Platform::parse("linux/arm/v7").unwrap();
        let b = Platform::parse("linux/amd64").unwrap();
        let m = predefined(&t, &b);
        assert_eq!(m["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(m["TARGETVARIANT"], "v7");
        assert_eq!(m["BUILDARCH"], "amd64");
        assert_eq!(m["BUILDVARIANT"], "");
        assert_eq!(m.len(), 8);
    }

    #[test]
    fn unconsumed_skips_used_and_proxies() {
        let given = [("A", "1"), ("B", "2"), ("http_proxy", "x")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let mut b = BuildArgs::new(given.into_iter().collect());
        assert_eq!(b.take("A").as_deref(), Some("1"));
        assert_eq!(b.take("C"), None);
        assert_eq!(b.unconsumed(), ["B"]);
        assert_eq!(b.proxies(), [("http_proxy".to_string(), "x".to_string())]);
    }
}
