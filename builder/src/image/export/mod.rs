//! Exporters: a built image out of the blob store, into an OCI image layout, a `docker load`
//! tarball, or the digest files CI jobs read. Blobs are streamed, never held whole in memory.

pub mod digest_file;
pub mod docker_tar;
pub mod oci_layout;

pub use digest_file::{
    image_name_with_digest, write_digest_file, write_image_name_with_digest_file,
};
pub use docker_tar::{export_docker_tar, write_docker_tar};
pub use oci_layout::export_oci_layout;

use super::error::ImageError;
use crate::path_io::IoAt;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, so a reader sees the
/// old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at(dir)?;
    tmp.write_all(bytes).at(path)?;
    persist_readable(tmp, path)
}

/// Syncs `tmp` and renames it to `path`, readable by all as a plainly written file would be
/// (temporary files are created owner-only, and the CI steps reading these files may not run
/// as the builder's user).
pub(crate) fn persist_readable(
    tmp: tempfile::NamedTempFile,
    path: &Path,
) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let file = tmp.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .at(path)?;
    file.sync_all().at(path)?;
    tmp.persist(path).at(path)?;
    Ok(())
}
