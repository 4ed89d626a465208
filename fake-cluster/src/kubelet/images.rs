//! Where a container image's files come from.

use std::path::PathBuf;

/// What the fake kubelet does with an image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The host's own filesystem (under a copy-on-write overlay): the default for every image.
    Host,
    /// A root filesystem directory the container is chrooted into (under an overlay).
    Rootfs(PathBuf),
    /// The registry says the image does not exist: `ErrImagePull`, then `ImagePullBackOff`.
    Unpullable,
}

/// The reference as containerd spells it in messages (`docker.io/library/x:latest`).
pub(crate) fn full_reference(image: &str) -> String {
    let (name, tagged) = match image.rsplit_once('/') {
        Some((_, last)) => (image.to_string(), last.contains(':') || last.contains('@')),
        None => (
            image.to_string(),
            image.contains(':') || image.contains('@'),
        ),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_host {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    if !tagged {
        full.push_str(":latest");
    }
    full
}
