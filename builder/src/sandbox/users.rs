//! Dockerfile `USER` and `--chown` resolution against an image's `/etc/passwd` and `/etc/group`,
//! with runc's rules: numeric ids need no entry, names must exist, a missing group part means
//! the user's primary group, and supplementary groups come from `/etc/group` only when the user
//! was named and no group was given.

/// The ids a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// Home directory (`/` when the user has no entry).
    pub home: String,
}

/// A user or group name that the image does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The user name is not in `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    /// The group name is not in `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].trim().parse().ok()?,
            gid: f[3].trim().parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        if line.trim_start().starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].trim().parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

fn numeric(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves a Dockerfile `USER` value (`""`, `name`, `uid`, `name:group`, `uid:gid`) against the
/// image's passwd and group files (`None` when the file is absent).
pub fn resolve_user(
    passwd: Option<&str>,
    group: Option<&str>,
    user: &str,
) -> Result<Ids, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let passwd = passwd.unwrap_or("");
    let mut ids = Ids {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".to_string(),
    };
    let mut matched_name = None;
    match numeric(user_part) {
        Some(uid) => {
            ids.uid = uid;
            if let Some(e) = passwd_entries(passwd).find(|e| e.uid == uid) {
                ids.gid = e.gid;
                ids.home = e.home.to_string();
            }
        }
        None => {
            let e = passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::NoSuchUser(user_part.to_string()))?;
            ids.uid = e.uid;
            ids.gid = e.gid;
            ids.home = e.home.to_string();
            matched_name = Some(e.name.to_string());
        }
    }
    if ids.home.is_empty() {
        ids.home = "/".to_string();
    }
    match group_part {
        Some(g) if !g.is_empty() => ids.gid = resolve_group(Some(group.unwrap_or("")), g)?,
        _ => {
            if let Some(name) = matched_name {
                let mut gids: Vec<u32> = group_entries(group.unwrap_or(""))
                    .filter(|e| e.members.contains(&name.as_str()))
                    .map(|e| e.gid)
                    .collect();
                gids.dedup();
                ids.additional_gids = gids;
            }
        }
    }
    Ok(ids)
}

/// Resolves a group name or number against the image's group file.
pub fn resolve_group(group_file: Option<&str>, g: &str) -> Result<u32, UserError> {
    if let Some(gid) = numeric(g) {
        return Ok(gid);
    }
    group_entries(group_file.unwrap_or(""))
        .find(|e| e.name == g)
        .map(|e| e.gid)
        .ok_or_else(|| UserError::NoSuchGroup(g.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\napp:x:1000:1000::/home/app:/bin/sh\nnohome:x:1001:1001:::/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nmore:x:2001:app\nmine:x:3000:\n";

    fn ids(uid: u32, gid: u32, extra: &[u32], home: &str) -> Ids {
        Ids {
            uid,
            gid,
            additional_gids: extra.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn names_numbers_and_groups() {
        let r = |u| resolve_user(Some(PASSWD), Some(GROUP), u);
        assert_eq!(r("").unwrap(), ids(0, 0, &[], "/root"));
        assert_eq!(
            r("app").unwrap(),
            ids(1000, 1000, &[2000, 2001], "/home/app")
        );
        assert_eq!(r("1000").unwrap(), ids(1000, 1000, &[], "/home/app"));
        assert_eq!(r("app:mine").unwrap(), ids(1000, 3000, &[], "/home/app"));
        assert_eq!(r("app:77").unwrap(), ids(1000, 77, &[], "/home/app"));
        assert_eq!(r("0:0").unwrap(), ids(0, 0, &[], "/root"));
        assert_eq!(r("4242").unwrap(), ids(4242, 0, &[], "/"));
        assert_eq!(r("4242:5").unwrap(), ids(4242, 5, &[], "/"));
        assert_eq!(r("nohome").unwrap(), ids(1001, 1001, &[], "/"));
        assert_eq!(r("ghost"), Err(UserError::NoSuchUser("ghost".into())));
        assert_eq!(
            r("app:ghosts"),
            Err(UserError::NoSuchGroup("ghosts".into()))
        );
        assert_eq!(
            resolve_user(None, None, "1:2").unwrap(),
            ids(1, 2, &[], "/")
        );
        assert!(resolve_user(None, None, "root").is_err());
    }

    #[test]
    fn groups_alone() {
        assert_eq!(resolve_group(Some(GROUP), "extra"), Ok(2000));
        assert_eq!(resolve_group(None, "12"), Ok(12));
        assert_eq!(
            resolve_group(None, "staff"),
            Err(UserError::NoSuchGroup("staff".into()))
        );
    }
}
