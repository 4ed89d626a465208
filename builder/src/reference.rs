//! Image references parsed the way Docker does, so that a name means the same image in kiln as
//! in `docker pull`: `busybox` is `docker.io/library/busybox:latest`.
//!
//! Kept by hand (about 200 lines beside its tests) rather than taken from oci-client: kiln does
//! not use oci-client's registry client (its own resumes uploads and mounts across
//! repositories), and taking the whole client crate, its auth and its JWT handling, for one
//! parser is more code than this; kiln's reference also carries its own [`Digest`], the
//! [`Repository`] that access rights are granted on, and kaniko's `index.docker.io` spelling for
//! the files it writes.

use crate::blob::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry short names without a registry part resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's name in go-containerregistry (and so kaniko) output.
pub const DOCKER_HUB_KANIKO: &str = "index.docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A reference that is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The text as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A repository on a registry: `registry/repository`, the unit that access rights are granted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// Registry host and optional port, `docker.io` for Docker Hub.
    pub registry: String,
    /// Path on the registry, e.g. `library/busybox`.
    pub name: String,
}

impl Repository {
    /// Parses `[registry/]name` (no tag or digest).
    pub fn parse(s: &str) -> Result<Repository, ReferenceError> {
        let r = Reference::parse(s)?;
        if r.tag.is_some() && s.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            return Err(err(s, "a repository takes no tag"));
        }
        if r.digest.is_some() {
            return Err(err(s, "a repository takes no digest"));
        }
        Ok(r.repository)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

/// A parsed image reference: repository plus a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Where the image lives.
    pub repository: Repository,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// The manifest digest, when pinned.
    pub digest: Option<Digest>,
}

fn err(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parses a reference as `docker pull` does.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(err(s, "empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| {
                    err(
                        s,
                        format!("digest {d:?} is not sha256: and 64 lower-case hex characters"),
                    )
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A colon after the last slash starts the tag; one before it belongs to a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| err(s, r))?;
        }
        let (registry, path) = split_registry(name);
        validate_registry(registry).map_err(|r| err(s, r))?;
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        validate_path(&path).map_err(|r| err(s, r))?;
        if registry.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(err(
                s,
                format!("name longer than {MAX_NAME_LEN} characters"),
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            repository: Repository {
                registry: registry.to_string(),
                name: path,
            },
            tag,
            digest,
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository` as go-containerregistry (and so kaniko) names it, the form kaniko
    /// writes before `@digest` in `--image-name-with-digest-file`: Docker Hub is
    /// `index.docker.io` there (`index.docker.io/library/busybox`), not `docker.io`, and CI
    /// scripts that parse kaniko's file expect exactly that text.
    pub fn kaniko_name(&self) -> String {
        let registry = if self.repository.registry == DOCKER_HUB {
            DOCKER_HUB_KANIKO
        } else {
            &self.repository.registry
        };
        format!("{registry}/{}", self.repository.name)
    }

    /// The short form Docker shows (`busybox`, `user/app`, `example.com/app`).
    pub fn familiar_name(&self) -> String {
        let repo = &self.repository;
        if repo.registry != DOCKER_HUB {
            return repo.to_string();
        }
        match repo.name.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => repo.name.clone(),
        }
    }

    /// `familiar_name:tag`, as `docker save` writes to `RepoTags`; `None` without a tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.familiar_name()))
    }

    /// The fully qualified `registry/repository:tag` containerd names images by (`docker.io`
    /// for Docker Hub); `None` without a tag.
    pub fn containerd_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.repository))
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag).map_err(|r| err(tag, r))?;
        Ok(Reference {
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component names a registry only if it looks like a host
/// (has a dot or a port, or is `localhost`) or has upper case, which a repository cannot.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_registry(host: &str) -> Result<(), String> {
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!("invalid IPv6 registry address {host:?}"));
                }
                (None, after.strip_prefix(':'))
            }
            None => return Err(format!("invalid registry {host:?}")),
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(h) = h {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("invalid registry host {host:?}"));
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("invalid registry port in {host:?}"));
        }
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), String> {
    for comp in path.split('/') {
        if comp.is_empty() {
            return Err("empty path component in repository name".into());
        }
        if comp.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("repository name must be lowercase ({comp:?})"));
        }
        if !component_ok(comp) {
            return Err(format!(
                "invalid repository path component {comp:?}: use a-z, 0-9 and single separators . _ __ -"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().copied().is_some_and(alnum) || !b.last().copied().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn validate_tag(t: &str) -> Result<(), String> {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    if b.is_empty()
        || b.len() > MAX_TAG_LEN
        || !word(b[0])
        || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        return Err(format!(
            "invalid tag {t:?}: up to {MAX_TAG_LEN} of A-Z a-z 0-9 _ . -, not starting with . or -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(p("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(p("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(p("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            p("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("localhost/app"), "localhost/app:latest");
        assert_eq!(p("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(
            p("127.0.0.1:5000/team/app"),
            "127.0.0.1:5000/team/app:latest"
        );
        assert_eq!(p("[::1]:5000/app:x"), "[::1]:5000/app:x");
        assert_eq!(p("ghcr.io/o/r/s:t-1.2_3"), "ghcr.io/o/r/s:t-1.2_3");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("host:5000/app@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        let r = Reference::parse(&format!("app:v1@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_reference(), d);
    }

    #[test]
    fn invalid_references_are_refused_with_a_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("docker.io/Team/app", "lowercase"),
            ("app:-tag", "invalid tag"),
            ("app@sha256:abc", "digest"),
            ("app@md5:00", "digest"),
            ("a//b", "empty path"),
            ("host:port/app", "port"),
            ("a/b__c--d/e..f", "invalid repository path component"),
            ("-a", "invalid repository"),
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(Repository::parse("host:5000/app:v1").is_err());
        assert_eq!(
            Repository::parse("host:5000/app").unwrap().to_string(),
            "host:5000/app"
        );
    }

    #[test]
    fn exporter_names() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.kaniko_name(), "index.docker.io/library/busybox");
        assert_eq!(r.familiar_name(), "busybox");
        assert_eq!(r.familiar_tagged().unwrap(), "busybox:latest");
        assert_eq!(
            r.containerd_name().unwrap(),
            "docker.io/library/busybox:latest"
        );
        let r = Reference::parse("localhost:5000/a/b:1.2").unwrap();
        assert_eq!(r.kaniko_name(), "localhost:5000/a/b");
        assert_eq!(r.familiar_tagged().unwrap(), "localhost:5000/a/b:1.2");
        assert_eq!(r.containerd_name().unwrap(), "localhost:5000/a/b:1.2");
        let r = Reference::parse("docker.io/user/app:v1").unwrap();
        assert_eq!(r.kaniko_name(), "index.docker.io/user/app");
        assert_eq!(r.familiar_tagged().unwrap(), "user/app:v1");
        let r = Reference::parse("docker.io/library/a/b").unwrap();
        assert_eq!(r.familiar_name(), "library/a/b");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.familiar_tagged(), None);
        assert_eq!(r.containerd_name(), None);
        for bad in ["", "UPPER", "a//b", "a:b:c/", "x:-bad", "reg.io/"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn upper_case_first_component_is_a_registry() {
        let r = Reference::parse("MyHost/app").unwrap();
        assert_eq!(r.repository.registry, "MyHost");
    }
}
