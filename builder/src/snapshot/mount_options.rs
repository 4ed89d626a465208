//! The overlay options every kiln mount gives beside its directories. One list serves the
//! sandbox's mount and the probe that decides whether builds get overlay, so the probe tries
//! exactly what a build will.

use std::ffi::CStr;

/// An option: its key and value (`None` for a flag).
pub(crate) type MountOption = (&'static CStr, Option<&'static CStr>);

/// A layer must be a plain diff: no renamed-directory redirects, no metadata-only copies, no
/// inode index.
const AS_ROOT: &[MountOption] = &[
    (c"redirect_dir", Some(c"off")),
    (c"metacopy", Some(c"off")),
    (c"index", Some(c"off")),
];

/// The same in a user namespace. `userxattr` already implies `redirect_dir=nofollow` and
/// refuses any other value; where the kernel follows redirects always
/// (`redirect_always_follow=Y`) it even turns `off` into `follow` and refuses the mount.
const USERXATTR: &[MountOption] = &[
    (c"userxattr", None),
    (c"metacopy", Some(c"off")),
    (c"index", Some(c"off")),
];

/// The options of a mount as root, or with `userxattr` in a user namespace.
pub(crate) fn options(userxattr: bool) -> &'static [MountOption] {
    if userxattr {
        USERXATTR
    } else {
        AS_ROOT
    }
}

/// The options as `mount(2)` data: `key=value` or `flag`, joined by commas.
pub(crate) fn option_string(userxattr: bool) -> String {
    options(userxattr)
        .iter()
        .map(|(k, v)| {
            let k = k.to_string_lossy();
            match v {
                Some(v) => format!("{k}={}", v.to_string_lossy()),
                None => k.into_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userxattr_never_names_redirect_dir() {
        assert_eq!(
            option_string(false),
            "redirect_dir=off,metacopy=off,index=off"
        );
        assert_eq!(option_string(true), "userxattr,metacopy=off,index=off");
    }
}
