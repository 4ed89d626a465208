//! WORKDIR's directory: created with its missing parents like BuildKit's `Mkdir` with
//! parents (0755, owned by `owner`), symlinks followed in the merged tree.

use super::target::Target;
use super::CopyError;
use crate::fsview::FsView;
use std::path::Path;

/// Creates `workdir` (absolute) and its missing parents in `upper` over `parent`; existing
/// directories are left alone (nothing is written when the whole path exists). Returns whether
/// anything was created.
///
/// # Errors
/// [`CopyError::NotADirectory`] when a component exists and is not a directory, I/O errors.
pub fn mkdir_workdir(
    parent: &dyn FsView,
    upper: &Path,
    workdir: &str,
    owner: (u32, u32),
) -> Result<bool, CopyError> {
    let mut t = Target::new(parent, upper, "WORKDIR");
    let p = Path::new("/").join(workdir.trim_start_matches('/'));
    let created = t.mkdir_all(&p, owner)?;
    t.finish()?;
    Ok(created)
}
