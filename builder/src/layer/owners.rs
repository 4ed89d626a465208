//! Owners of the files kiln writes when it is not root. Only root can give a file the image's
//! numeric owner; any other user's files stay its own on the host. That is how a rootless RUN
//! step leaves them too: in its user namespace the user is root and its subordinate ids (from
//! `/etc/subuid`) are 1, 2, ... So a layer written from such a tree maps host owners back
//! through that namespace's map ([`HostIds`]), and an owner COPY was asked for but could not
//! give (`--chown` to anyone but root) is recorded on the file in [`OWNER_XATTR`].

/// Whether this process gives the files it writes (extracted layers, COPY, WORKDIR) their
/// image owners. The one place that decides: only root may chown to any id (in a user
/// namespace, to any id the namespace maps; see [`in_user_namespace`]).
pub fn settable() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether this process is root in a user namespace other than the host's: in kiln's own
/// (`crate::sandbox::enter_own_namespace`) or in a container started in one (Kubernetes'
/// `hostUsers: false`, rootless Podman). Such a root owns files but not the machine: overlay
/// takes `userxattr`, sysfs is bound instead of mounted, and a RUN step needs no namespace of
/// its own for its ids.
pub fn in_user_namespace() -> bool {
    static INSIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSIDE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| !maps_everything(&m))
            .unwrap_or(false)
    })
}

/// Whether a `uid_map` is the initial namespace's (every id to itself).
fn maps_everything(uid_map: &str) -> bool {
    let f: Vec<&str> = uid_map.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

/// Whether kiln is root on the host itself (or in a container without a user namespace).
pub fn host_root() -> bool {
    settable() && !in_user_namespace()
}

/// The xattr holding the image owner (`uid:gid`) of a file kiln could not chown. kiln's own
/// bookkeeping: never read from a layer, never written into one.
pub const OWNER_XATTR: &str = "user.kiln.owner";

/// Whether `name` is kiln's owner record.
pub(crate) fn is_owner_xattr(name: &[u8]) -> bool {
    name == OWNER_XATTR.as_bytes()
}

/// The value of [`OWNER_XATTR`] for `uid:gid`.
fn owner_record(uid: u32, gid: u32) -> String {
    format!("{uid}:{gid}")
}

/// Records the image owner `uid`:`gid` of a file kiln could not chown (it is kiln's own, root
/// in the image) with `set` (name, value), a setxattr of the file. Root needs no record. The
/// kernel refuses `user.` xattrs on symlinks and device nodes, and some filesystems have none:
/// those entries stay root's in the image.
pub(crate) fn record(
    uid: u32,
    gid: u32,
    set: impl FnOnce(&str, &[u8]) -> rustix::io::Result<()>,
) -> rustix::io::Result<()> {
    if (uid, gid) == (0, 0) {
        return Ok(());
    }
    match set(OWNER_XATTR, owner_record(uid, gid).as_bytes()) {
        Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::NOTSUP) => Ok(()),
        r => r,
    }
}

/// Reads a value of [`OWNER_XATTR`].
fn parse_record(value: &[u8]) -> Option<(u32, u32)> {
    let (u, g) = std::str::from_utf8(value).ok()?.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// The recorded owner among `xattrs` (name, value), if any.
pub(crate) fn recorded_owner<'a>(
    xattrs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<(u32, u32)> {
    xattrs
        .into_iter()
        .find(|(n, _)| is_owner_xattr(n))
        .and_then(|(_, v)| parse_record(v))
}

/// How the owners of a tree on the host become the owners in the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostIds {
    /// The files carry the image's ids (kiln is root).
    #[default]
    Same,
    /// Written without root: the host user `uid`:`gid` is root in the image, and host ids in
    /// a subordinate range (`start`, `count`) are image ids `1..=count`.
    Mapped {
        /// kiln's user.
        uid: u32,
        /// kiln's group.
        gid: u32,
        /// The user's subordinate uids, when rootless steps use them.
        subuid: Option<(u32, u32)>,
        /// The user's subordinate gids, when rootless steps use them.
        subgid: Option<(u32, u32)>,
    },
}

/// `host` through a user namespace map where `own` is 0 and `sub` starts at 1; ids the map
/// does not cover stay as they are.
fn through(host: u32, own: u32, sub: Option<(u32, u32)>) -> u32 {
    if host == own {
        return 0;
    }
    match sub {
        Some((start, count)) if host >= start && host - start < count => host - start + 1,
        _ => host,
    }
}

impl HostIds {
    /// The image owner of a file the host shows owned by `host_uid`:`host_gid`, with the owner
    /// `recorded` in its [`OWNER_XATTR`], which wins when the ids are mapped.
    pub fn image_owner(
        &self,
        host_uid: u32,
        host_gid: u32,
        recorded: Option<(u32, u32)>,
    ) -> (u32, u32) {
        match self {
            HostIds::Same => (host_uid, host_gid),
            HostIds::Mapped {
                uid,
                gid,
                subuid,
                subgid,
            } => recorded.unwrap_or((
                through(host_uid, *uid, *subuid),
                through(host_gid, *gid, *subgid),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ids_go_back_through_the_namespace_map_and_a_record_wins() {
        let m = HostIds::Mapped {
            uid: 1000,
            gid: 1001,
            subuid: Some((100_000, 65536)),
            subgid: None,
        };
        assert_eq!(m.image_owner(1000, 1001, None), (0, 0));
        assert_eq!(m.image_owner(100_000, 1001, None), (1, 0));
        assert_eq!(m.image_owner(100_999, 100_999, None), (1000, 100_999));
        assert_eq!(m.image_owner(165_536, 7, None), (165_536, 7));
        assert_eq!(m.image_owner(1000, 1001, Some((5, 6))), (5, 6));
        assert_eq!(
            HostIds::Same.image_owner(1000, 1001, Some((5, 6))),
            (1000, 1001)
        );
    }

    #[test]
    fn only_the_full_identity_map_is_the_hosts() {
        assert!(maps_everything("         0          0 4294967295\n"));
        assert!(!maps_everything("         0       1000          1\n"));
        assert!(!maps_everything(
            "         0       1000          1\n         1     100000      65536\n"
        ));
    }

    #[test]
    fn records_read_back_and_bad_ones_are_ignored() {
        let x = |v: &str| recorded_owner([(OWNER_XATTR.as_bytes(), v.as_bytes())]);
        assert_eq!(x(&owner_record(1000, 2000)), Some((1000, 2000)));
        assert_eq!(x("1000"), None);
        assert_eq!(x("a:b"), None);
        assert_eq!(recorded_owner([(&b"user.other"[..], &b"1:2"[..])]), None);
    }
}
