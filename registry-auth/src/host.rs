//! Canonical registry host names, so that every spelling of a registry finds
//! the same credentials.

/// Canonical key for Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";

/// The key the docker CLI stores Docker Hub credentials under, and the server
/// URL it gives credential helpers for Docker Hub.
pub const DOCKER_HUB_LEGACY_KEY: &str = "https://index.docker.io/v1/";

const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Reduces a registry reference as found in config files, CLI flags or CI
/// variables to a canonical host key.
///
/// Handles a scheme (`https://host`), a path (`https://host/v1/`), trailing
/// slashes, the default HTTPS port (`host:443` is `host`), letter case and the
/// Docker Hub aliases (all become [`DOCKER_HUB`]).
pub fn normalize_host(input: &str) -> String {
    let mut s = input.trim();
    let mut https = true;
    if let Some(rest) = strip_prefix_ignore_case(s, "https://") {
        s = rest;
    } else if let Some(rest) = strip_prefix_ignore_case(s, "http://") {
        s = rest;
        https = false;
    }
    let host = match s.find('/') {
        Some(i) => &s[..i],
        None => s,
    };
    // Credentials embedded in a URL are not part of the key.
    let host = match host.rfind('@') {
        Some(i) => &host[i + 1..],
        None => host,
    };
    let mut host = host.trim().to_ascii_lowercase();
    if !https {
        if let Some(stripped) = host.strip_suffix(":80") {
            host = stripped.to_owned();
        }
    }
    // Repeated so that the result is a fixed point even for odd input.
    while let Some(stripped) = host.strip_suffix(":443") {
        host = stripped.to_owned();
    }
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        return DOCKER_HUB.to_owned();
    }
    host
}

/// The server URL to give a credential helper for a canonical host.
///
/// Docker Hub credentials are stored by the docker CLI under the legacy v1
/// URL; every other registry under its bare host name.
pub fn helper_server_url(host: &str) -> String {
    let host = normalize_host(host);
    if host == DOCKER_HUB {
        DOCKER_HUB_LEGACY_KEY.to_owned()
    } else {
        host
    }
}

/// True when two references name the same registry.
pub fn same_host(a: &str, b: &str) -> bool {
    normalize_host(a) == normalize_host(b)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_aliases() {
        for s in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "https://index.docker.io/v1",
            "http://index.docker.io/v1/",
            "Docker.IO",
            "registry-1.docker.io:443",
            "https://registry-1.docker.io/v2/",
        ] {
            assert_eq!(normalize_host(s), DOCKER_HUB, "{s}");
        }
    }

    #[test]
    fn ports_schemes_and_paths() {
        assert_eq!(normalize_host("quay.io:443"), "quay.io");
        assert_eq!(normalize_host("https://quay.io:443/"), "quay.io");
        assert_eq!(
            normalize_host("https://registry.example.com/v1/"),
            "registry.example.com"
        );
        assert_eq!(
            normalize_host("http://registry.example.com"),
            "registry.example.com"
        );
        assert_eq!(
            normalize_host("http://registry.example.com:80"),
            "registry.example.com"
        );
        assert_eq!(
            normalize_host("registry.example.com:80"),
            "registry.example.com:80"
        );
        assert_eq!(
            normalize_host("registry.example.com///"),
            "registry.example.com"
        );
        assert_eq!(
            normalize_host("  gitlab.example.com:5050 "),
            "gitlab.example.com:5050"
        );
        assert_eq!(normalize_host("https://user@host.example"), "host.example");
        assert_eq!(normalize_host("localhost:5000/foo/bar"), "localhost:5000");
        assert_eq!(normalize_host("[::1]:5000"), "[::1]:5000");
        assert_eq!(normalize_host(""), "");
        assert_eq!(normalize_host("ħttps://x"), "ħttps:");
    }

    #[test]
    fn helper_urls() {
        assert_eq!(
            helper_server_url("registry-1.docker.io"),
            DOCKER_HUB_LEGACY_KEY
        );
        assert_eq!(helper_server_url("https://ghcr.io/"), "ghcr.io");
        assert!(same_host("ghcr.io:443", "https://GHCR.io/v2/"));
        assert!(!same_host("ghcr.io", "quay.io"));
    }
}
