//! Whiteouts in their two spellings: overlayfs (a 0:0 char device; an `opaque` xattr on a
//! directory) and OCI (`.wh.<name>`; `<dir>/.wh..wh..opq`), and which xattrs a layer carries.

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The overlay xattrs that mark a directory opaque (root mounts use `trusted.`, rootless `user.`).
pub(crate) const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Overlay bookkeeping that means the upper directory is not a plain diff: a renamed directory
/// or a metadata-only copy-up. Builds mount with `redirect_dir=off,metacopy=off`; seeing these
/// means that did not happen, and a layer from this tree would silently lose content.
const UNSUPPORTED_OVERLAY_XATTRS: [&str; 4] = [
    "trusted.overlay.redirect",
    "trusted.overlay.metacopy",
    "user.overlay.redirect",
    "user.overlay.metacopy",
];

/// Whether an xattr belongs in a layer. Overlay's own attributes describe the mount, not the
/// file; SELinux labels and other `security.*` belong to the host's policy, except file
/// capabilities, which programs (ping) need to keep working.
pub(crate) fn keep_xattr(name: &[u8]) -> bool {
    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
        return false;
    }
    name == b"security.capability"
        || name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// Whether an xattr means the upper directory cannot be turned into a layer faithfully.
pub(crate) fn unsupported_overlay_xattr(name: &[u8]) -> Option<&'static str> {
    UNSUPPORTED_OVERLAY_XATTRS
        .into_iter()
        .find(|u| u.as_bytes() == name)
}

/// Whether `(name, value)` marks an overlay directory opaque. Only `y`: since Linux 6.7, `x`
/// means "has xattr whiteouts inside", not opaque.
pub(crate) fn is_opaque_xattr(name: &[u8], value: &[u8]) -> bool {
    OPAQUE_XATTRS.iter().any(|o| o.as_bytes() == name) && value == b"y"
}

/// The OCI whiteout file that deletes `path` in an extracted layer, if there is one: a layer
/// extracted where whiteout devices are refused keeps whiteouts in OCI spelling.
pub(crate) fn oci_whiteout_of(
    path: &std::path::Path,
) -> std::io::Result<Option<std::fs::Metadata>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
    wh.push(name);
    match std::fs::symlink_metadata(dir.join(wh)) {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the extracted directory `dir` holds the OCI opaque marker (see
/// [`oci_whiteout_of`]).
pub(crate) fn has_opaque_marker(dir: &std::path::Path) -> bool {
    std::fs::symlink_metadata(dir.join(OPAQUE_MARKER)).is_ok()
}
