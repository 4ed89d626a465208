//! The files kaniko writes for CI: `--digest-file` (the manifest digest, no newline) and
//! `--image-name-with-digest-file` (`registry/repository@digest` and a newline per destination).

use super::write_atomic;
use crate::blob::Digest;
use crate::image::error::ImageError;
use crate::reference::Reference;
use std::path::Path;

/// Writes `digest` (`sha256:<hex>`) to `path`, without a trailing newline.
pub fn write_digest_file(path: &Path, digest: &Digest) -> Result<(), ImageError> {
    write_atomic(path, digest.to_string().as_bytes())
}

/// One `name@digest` line per destination, each ending in a newline; names are fully qualified
/// and without the tag (`busybox:1` → `index.docker.io/library/busybox@sha256:...`), as kaniko
/// writes them.
pub fn image_name_with_digest(
    destinations: &[&str],
    digest: &Digest,
) -> Result<String, ImageError> {
    let mut out = String::new();
    for d in destinations {
        let r = Reference::parse(d)?;
        out.push_str(&r.kaniko_name());
        out.push('@');
        out.push_str(&digest.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// Writes [`image_name_with_digest`] to `path`.
pub fn write_image_name_with_digest_file(
    path: &Path,
    destinations: &[&str],
    digest: &Digest,
) -> Result<(), ImageError> {
    write_atomic(
        path,
        image_name_with_digest(destinations, digest)?.as_bytes(),
    )
}
