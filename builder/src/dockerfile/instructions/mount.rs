//! `RUN --mount=...` values, as BuildKit reads them (comma-separated `key=value` fields).

/// What kind of mount a `RUN --mount` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// Files of the context or of a stage/image, read-only by default.
    Bind,
    /// A directory kept between builds.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret given with `--secret`, never written to a layer.
    Secret,
    /// The SSH agent socket.
    Ssh,
}

/// Sharing mode of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Several builds use it at once.
    Shared,
    /// Each concurrent build gets its own copy.
    Private,
    /// Builds wait for each other.
    Locked,
}

/// One `--mount` of a RUN step (words not yet expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount type (`bind` when not given).
    pub kind: MountType,
    /// Where it appears in the step's filesystem.
    pub target: String,
    /// Path inside the source (context, stage or image).
    pub source: Option<String>,
    /// Stage name or index, or image, the files come from.
    pub from: Option<String>,
    /// Read-only (bind defaults to read-only, cache to read-write).
    pub readonly: bool,
    /// Cache or secret id.
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Sharing,
    /// A secret or ssh mount that must be provided.
    pub required: bool,
    /// File mode (octal) of a cache, secret or ssh mount.
    pub mode: Option<u32>,
    /// Owner of a cache, secret or ssh mount.
    pub uid: Option<u32>,
    /// Group of a cache, secret or ssh mount.
    pub gid: Option<u32>,
    /// For secrets: expose as this environment variable instead of a file.
    pub env: Option<String>,
}

impl Mount {
    /// Parses one `--mount` value.
    pub fn parse(value: &str) -> Result<Mount, String> {
        let fields: Vec<(String, Option<String>)> = value
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| match f.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
                None => (f.trim().to_ascii_lowercase(), None),
            })
            .collect();
        let kind = match fields.iter().find(|(k, _)| k == "type") {
            None => MountType::Bind,
            Some((_, v)) => match v.as_deref().unwrap_or("") {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => return Err(format!("unsupported mount type {other:?}")),
            },
        };
        let mut m = Mount {
            kind,
            target: String::new(),
            source: None,
            from: None,
            readonly: kind == MountType::Bind,
            id: None,
            sharing: Sharing::Shared,
            required: false,
            mode: None,
            uid: None,
            gid: None,
            env: None,
        };
        for (key, val) in fields {
            let need =
                |v: Option<String>| v.ok_or_else(|| format!("mount option {key:?} needs a value"));
            match key.as_str() {
                "type" => {}
                "target" | "dst" | "destination" => m.target = need(val)?,
                "source" | "src" => m.source = Some(need(val)?),
                "from" => m.from = Some(need(val)?),
                "id" => m.id = Some(need(val)?),
                "env" => m.env = Some(need(val)?),
                "readonly" | "ro" => m.readonly = parse_bool(&key, val.as_deref())?,
                "readwrite" | "rw" => m.readonly = !parse_bool(&key, val.as_deref())?,
                "required" => m.required = parse_bool(&key, val.as_deref())?,
                "sharing" => {
                    m.sharing = match need(val)?.as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        other => return Err(format!("unsupported sharing value {other:?}")),
                    }
                }
                "mode" => {
                    let v = need(val)?;
                    m.mode = Some(
                        u32::from_str_radix(&v, 8)
                            .map_err(|_| format!("invalid mode {v:?}: not octal"))?,
                    );
                }
                "uid" => m.uid = Some(parse_id(&key, need(val)?)?),
                "gid" => m.gid = Some(parse_id(&key, need(val)?)?),
                // Accepted for compatibility; kiln does not size tmpfs mounts.
                "size" => {}
                other => return Err(format!("unexpected key {other:?} in mount {value:?}")),
            }
        }
        if m.target.is_empty() {
            m.target = match (kind, &m.id) {
                (MountType::Secret, Some(id)) => format!("/run/secrets/{id}"),
                (MountType::Secret, None) if m.env.is_some() => String::new(),
                (MountType::Ssh, _) => "/run/buildkit/ssh_agent.0".into(),
                _ if kind == MountType::Secret => {
                    return Err(format!("secret mount {value:?} needs an id or a target"))
                }
                _ => return Err(format!("mount {value:?} has no target")),
            };
        }
        if kind == MountType::Secret && m.id.is_none() {
            // BuildKit names a secret after its target's file name when no id is given.
            m.id = m
                .target
                .rsplit('/')
                .next()
                .map(str::to_string)
                .filter(|s| !s.is_empty());
        }
        Ok(m)
    }
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("invalid value {other:?} for mount option {key:?}")),
    }
}

fn parse_id(key: &str, v: String) -> Result<u32, String> {
    v.parse()
        .map_err(|_| format!("invalid {key} {v:?}: not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount_with_options() {
        let m =
            Mount::parse("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000")
                .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target, "/root/.cache");
        assert_eq!(m.id.as_deref(), Some("pip"));
        assert_eq!(m.sharing, Sharing::Locked);
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1000));
        assert!(!m.readonly);
    }

    #[test]
    fn bind_defaults_read_only_and_names_its_source_stage() {
        let m = Mount::parse("from=build,source=/out,target=/in").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        assert_eq!(m.from.as_deref(), Some("build"));
        assert!(!Mount::parse("target=/in,rw").unwrap().readonly);
    }

    #[test]
    fn secret_defaults() {
        let m = Mount::parse("type=secret,id=npmrc").unwrap();
        assert_eq!(m.target, "/run/secrets/npmrc");
        let m = Mount::parse("type=secret,target=/root/.netrc").unwrap();
        assert_eq!(m.id.as_deref(), Some(".netrc"));
    }

    #[test]
    fn bad_mounts_say_why() {
        assert_eq!(
            Mount::parse("type=nfs,target=/x").unwrap_err(),
            "unsupported mount type \"nfs\""
        );
        assert_eq!(
            Mount::parse("type=cache").unwrap_err(),
            "mount \"type=cache\" has no target"
        );
        assert!(Mount::parse("target=/x,colour=blue")
            .unwrap_err()
            .contains("\"colour\""));
        assert!(Mount::parse("type=cache,target=/x,mode=999")
            .unwrap_err()
            .contains("not octal"));
    }
}
