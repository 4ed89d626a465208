//! The cache directory is kiln's private state: extracted layers and step directories keep
//! setuid files, file capabilities and device nodes from images and RUN steps, so no other
//! local user may reach anything under it. A mode of 0700 on the directory itself closes the
//! whole tree, whatever the modes inside (which must stay the image's).

use super::error::CacheError;
use crate::path_io::IoAt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The cache directory's mode.
pub const MODE: u32 = 0o700;

/// Creates `dir` (with missing parents) mode 0700, or tightens an existing one other users
/// could enter; returns a note for the build log when it tightened one.
pub fn make_private(dir: &Path) -> Result<Option<String>, CacheError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(MODE)
        .create(dir)
        .at(dir)?;
    let mode = std::fs::metadata(dir).at(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(MODE)).at(dir)?;
    Ok(Some(format!(
        "cache directory {} was mode {mode:04o}, now {MODE:04o}: it holds extracted layers \
         other users must not reach",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_loose_ones_tightened_once() {
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("a/kiln");
        assert_eq!(make_private(&new).unwrap(), None);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&new), 0o700);
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
        let note = make_private(&new).unwrap().expect("a note");
        assert!(note.contains("was mode 0755, now 0700"), "{note}");
        assert_eq!(mode(&new), 0o700);
        assert_eq!(make_private(&new).unwrap(), None);
    }
}
