//! User-namespace id maps for rootless runs: subordinate ranges through `newuidmap` and
//! `newgidmap` where `/etc/subuid` and `/etc/subgid` give the user some, else only the user
//! itself mapped to root.

use super::SandboxError;
use crate::layer::owners::HostIds;
use std::process::Command;

/// How ids inside the namespace map to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdMap {
    /// Already root on the host: every id maps to itself.
    Identity,
    /// Already root in a user namespace (kiln's own, or the container's): a step runs in it
    /// as it is, with the ids below `uids`/`gids` that it maps.
    Nested { uids: u64, gids: u64 },
    /// Only the current user and group, as 0.
    Single { uid: u32, gid: u32 },
    /// 0 is the current user; 1..=count are the subordinate ranges.
    Ranges {
        uid: u32,
        gid: u32,
        subuid: (u32, u32),
        subgid: (u32, u32),
    },
}

/// The first range (`start`, `count`) that `/etc/subuid`-style `text` gives `name` or `id`.
pub(crate) fn subordinate(text: &str, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if f.len() != 3 || f[0].starts_with('#') {
            return None;
        }
        let who = Some(f[0]) == name || f[0].parse::<u32>().ok() == Some(id);
        let start = f[1].parse().ok()?;
        let count: u32 = f[2].parse().ok()?;
        (who && count > 0).then_some((start, count))
    })
}

fn have(tool: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/bin:/bin".into())
        .split(':')
        .any(|d| std::path::Path::new(d).join(tool).is_file())
}

impl IdMap {
    /// The map for the user kiln runs as.
    pub(crate) fn for_current_user() -> Self {
        if crate::layer::owners::settable() {
            if !crate::layer::owners::in_user_namespace() {
                return IdMap::Identity;
            }
            let span = |file: &str| mapped_span(&std::fs::read_to_string(file).unwrap_or_default());
            return IdMap::Nested {
                uids: span("/proc/self/uid_map"),
                gids: span("/proc/self/gid_map"),
            };
        }
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let name = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
        });
        let sub = |file: &str, id: u32| {
            subordinate(
                &std::fs::read_to_string(file).unwrap_or_default(),
                name.as_deref(),
                id,
            )
        };
        // Under no_new_privs (`allowPrivilegeEscalation: false`, `--security-opt
        // no-new-privileges`) the setuid newuidmap runs without privilege and every write of a
        // range fails: only kiln's own ids can be mapped.
        let helpers_work = !rustix::thread::no_new_privs().unwrap_or(false)
            && have("newuidmap")
            && have("newgidmap");
        match (sub("/etc/subuid", uid), sub("/etc/subgid", gid)) {
            (Some(subuid), Some(subgid)) if helpers_work => IdMap::Ranges {
                uid,
                gid,
                subuid,
                subgid,
            },
            _ => IdMap::Single { uid, gid },
        }
    }

    /// How files this map's namespace leaves on the host read as image owners.
    pub(crate) fn host_ids(&self) -> HostIds {
        match *self {
            IdMap::Identity | IdMap::Nested { .. } => HostIds::Same,
            IdMap::Single { uid, gid } => HostIds::Mapped {
                uid,
                gid,
                subuid: None,
                subgid: None,
            },
            IdMap::Ranges {
                uid,
                gid,
                subuid,
                subgid,
            } => HostIds::Mapped {
                uid,
                gid,
                subuid: Some(subuid),
                subgid: Some(subgid),
            },
        }
    }

    /// Refuses ids the namespace cannot represent.
    pub(crate) fn check(&self, uid: u32, gid: u32) -> Result<(), SandboxError> {
        let ok = match self {
            IdMap::Identity => true,
            IdMap::Nested { uids, gids } => u64::from(uid) < *uids && u64::from(gid) < *gids,
            IdMap::Single { .. } => uid == 0 && gid == 0,
            IdMap::Ranges { subuid, subgid, .. } => uid <= subuid.1 && gid <= subgid.1,
        };
        if ok {
            Ok(())
        } else {
            Err(SandboxError::UserNamespace(format!(
                "user {uid}:{gid} is not mapped in the user namespace (only {}); give the user \
                 ranges in /etc/subuid and /etc/subgid",
                match self {
                    IdMap::Ranges { subuid, .. } => format!("ids 0..={}", subuid.1),
                    IdMap::Nested { uids, .. } => format!("ids 0..{uids}"),
                    _ => "root".to_string(),
                }
            )))
        }
    }

    /// Whether the process may call `setgroups` (not when the user mapped itself).
    pub(crate) fn allows_setgroups(&self) -> bool {
        match self {
            IdMap::Single { .. } => false,
            IdMap::Nested { .. } => std::fs::read_to_string("/proc/self/setgroups")
                .map(|s| s.trim() != "deny")
                .unwrap_or(true),
            _ => true,
        }
    }

    /// Whether a step needs a user namespace of its own for these ids (not when kiln already
    /// runs in one as root).
    pub(crate) fn needs_namespace(&self) -> bool {
        !matches!(self, IdMap::Nested { .. })
    }

    /// Writes the maps of the namespace of process `pid`.
    pub(crate) fn apply(&self, pid: i32) -> Result<(), SandboxError> {
        let write = |file: &str, text: &str| {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text).map_err(|e| {
                SandboxError::UserNamespace(format!("writing {text:?} to {path}: {e}"))
            })
        };
        match self {
            // The step stays in kiln's namespace (see `needs_namespace`).
            IdMap::Nested { .. } => {}
            IdMap::Identity => {
                write("uid_map", "0 0 4294967295")?;
                write("gid_map", "0 0 4294967295")?;
            }
            IdMap::Single { uid, gid } => {
                write("setgroups", "deny")?;
                write("uid_map", &format!("0 {uid} 1"))?;
                write("gid_map", &format!("0 {gid} 1"))?;
            }
            IdMap::Ranges {
                uid,
                gid,
                subuid,
                subgid,
            } => {
                for (tool, own, (start, count)) in
                    [("newuidmap", uid, subuid), ("newgidmap", gid, subgid)]
                {
                    let out = Command::new(tool)
                        .args([pid.to_string(), "0".into(), own.to_string(), "1".into()])
                        .args(["1".to_string(), start.to_string(), count.to_string()])
                        .output()
                        .map_err(|e| SandboxError::UserNamespace(format!("{tool}: {e}")))?;
                    if !out.status.success() {
                        return Err(SandboxError::UserNamespace(format!(
                            "{tool} failed ({}): {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How many ids from 0 up a `uid_map`/`gid_map` covers: the end of its highest range.
fn mapped_span(map: &str) -> u64 {
    map.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (f.len() == 3).then(|| f[0] + f[2])
        })
        .max()
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_id() {
        let t = "# c\nalice:100000:65536\n1001:200000:1000\nbob:1:0\n";
        assert_eq!(subordinate(t, Some("alice"), 7), Some((100000, 65536)));
        assert_eq!(subordinate(t, Some("carol"), 1001), Some((200000, 1000)));
        assert_eq!(subordinate(t, Some("bob"), 5), None);
        let m = IdMap::Ranges {
            uid: 1,
            gid: 1,
            subuid: (100000, 65536),
            subgid: (100000, 10),
        };
        assert!(m.check(1000, 10).is_ok());
        assert!(m.check(1000, 11).is_err());
        assert!(IdMap::Single { uid: 5, gid: 5 }.check(0, 0).is_ok());
        assert!(IdMap::Single { uid: 5, gid: 5 }.check(1000, 0).is_err());
    }

    #[test]
    fn a_nested_map_checks_ids_against_the_namespaces_span() {
        let span =
            mapped_span("         0       1000          1\n         1     100000      65536\n");
        assert_eq!(span, 65537);
        let m = IdMap::Nested {
            uids: span,
            gids: 11,
        };
        assert!(m.check(65536, 10).is_ok());
        assert!(m.check(65537, 0).is_err());
        assert!(m.check(0, 11).is_err());
        assert!(!m.needs_namespace());
        assert_eq!(m.host_ids(), HostIds::Same);
    }
}
