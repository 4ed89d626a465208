//! Image references (`[registry/]repository[:tag][@digest]`), as far as exporters need them:
//! the repository name kaniko writes to `--image-name-with-digest-file`, and the names
//! `docker load` and containerd read from a tarball.

use super::error::ImageError;

/// Docker Hub's registry host as go-containerregistry (and so kaniko) names it.
pub const DOCKER_HUB_REGISTRY: &str = "index.docker.io";

/// A parsed image reference, with Docker Hub's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port); `index.docker.io` when the reference names none.
    pub registry: String,
    /// Repository path; `library/` is prefixed to one-component Docker Hub names.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// The digest, when given (`@sha256:...`).
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `s` as Docker does: the first component is a registry when it has a `.` or `:`
    /// or is `localhost`.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let bad = |message: &str| ImageError::BadReference {
            reference: s.to_string(),
            message: message.to_string(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path)
            }
            _ => (DOCKER_HUB_REGISTRY.to_string(), rest),
        };
        let (repo, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        if repo.is_empty() || repo.split('/').any(str::is_empty) {
            return Err(bad("empty repository name"));
        }
        let valid_repo = repo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
        if !valid_repo {
            return Err(bad(
                "repository names are lower-case letters, digits and . _ - /",
            ));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("invalid tag"));
            }
        }
        let registry = match registry.as_str() {
            "docker.io" | "registry-1.docker.io" => DOCKER_HUB_REGISTRY.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB_REGISTRY && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo.to_string()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, the form kaniko writes before `@digest`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows (`busybox`, `user/app`, `example.com/app`).
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB_REGISTRY {
            let short = self.repository.strip_prefix("library/");
            match short {
                Some(s) if !s.contains('/') => s.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// `familiar_name:tag`, as `docker save` writes to `RepoTags`.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{t}", self.familiar_name()))
    }

    /// The fully qualified `registry/repository:tag` containerd names images by (`docker.io`
    /// for Docker Hub).
    pub fn containerd_name(&self) -> Option<String> {
        let registry = if self.registry == DOCKER_HUB_REGISTRY {
            "docker.io"
        } else {
            &self.registry
        };
        self.tag
            .as_ref()
            .map(|t| format!("{registry}/{}:{t}", self.repository))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults_and_registries() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.name(), "index.docker.io/library/busybox");
        assert_eq!(r.familiar_tagged().unwrap(), "busybox:latest");
        assert_eq!(
            r.containerd_name().unwrap(),
            "docker.io/library/busybox:latest"
        );
        let r = Reference::parse("localhost:5000/a/b:1.2").unwrap();
        assert_eq!(r.name(), "localhost:5000/a/b");
        assert_eq!(r.familiar_tagged().unwrap(), "localhost:5000/a/b:1.2");
        let r = Reference::parse("docker.io/user/app:v1").unwrap();
        assert_eq!(r.name(), "index.docker.io/user/app");
        assert_eq!(r.familiar_tagged().unwrap(), "user/app:v1");
        for bad in ["", "UPPER", "a//b", "a:b:c/", "x:-bad", "reg.io/"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
