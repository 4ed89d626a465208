//! Instruction flags (`--from=builder`, `--link`, `--mount=...`) as BuildKit's `BFlags` reads them.

use std::collections::BTreeMap;

/// What a flag holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--name` or `--name=true|false`.
    Bool,
    /// `--name=value`, at most once.
    String,
    /// `--name=value`, any number of times.
    List,
}

/// The flags one instruction accepts and the values it was given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    allowed: Vec<(&'static str, FlagKind)>,
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Parses `raw` (as the parser extracted them, `--name=value`) against the allowed set.
    pub fn parse(
        instruction: &str,
        raw: &[String],
        allowed: &[(&'static str, FlagKind)],
    ) -> Result<Self, String> {
        let mut flags = Flags {
            allowed: allowed.to_vec(),
            values: BTreeMap::new(),
        };
        for arg in raw {
            let body = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("invalid flag {arg:?}"))?;
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(unknown_flag(instruction, name, allowed));
            };
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => {
                        return Err(format!(
                            "expecting boolean value for flag --{name}, not: {v}"
                        ))
                    }
                },
                (_, None) => return Err(format!("missing a value on flag --{name}")),
                (_, Some(v)) => v.to_string(),
            };
            let slot = flags.values.entry(key).or_default();
            if kind != FlagKind::List && !slot.is_empty() {
                return Err(format!("duplicate flag specified: --{name}"));
            }
            slot.push(value);
        }
        Ok(flags)
    }

    /// A boolean flag's value (false when absent).
    pub fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }

    /// A string flag's value.
    pub fn string(&self, name: &str) -> Option<String> {
        debug_assert!(
            self.allowed.iter().any(|(n, _)| *n == name),
            "flag {name} not declared"
        );
        self.values.get(name).and_then(|v| v.last()).cloned()
    }

    /// Every value a list flag was given, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

fn unknown_flag(instruction: &str, name: &str, allowed: &[(&'static str, FlagKind)]) -> String {
    if allowed.is_empty() {
        return format!("unknown flag --{name}: {instruction} takes no flags");
    }
    let names: Vec<String> = allowed.iter().map(|(n, _)| format!("--{n}")).collect();
    format!(
        "unknown flag --{name} for {instruction} (known: {})",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, FlagKind)] = &[
        ("from", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::List),
    ];

    fn raw(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_each_kind() {
        let f = Flags::parse(
            "COPY",
            &raw(&["--from=build", "--link", "--exclude=*.md", "--exclude=tmp"]),
            COPY,
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("build"));
        assert!(f.bool("link"));
        assert_eq!(f.list("exclude"), ["*.md", "tmp"]);
    }

    #[test]
    fn bool_accepts_explicit_false_and_rejects_other_words() {
        let f = Flags::parse("COPY", &raw(&["--link=FALSE"]), COPY).unwrap();
        assert!(!f.bool("link"));
        let e = Flags::parse("COPY", &raw(&["--link=yes"]), COPY).unwrap_err();
        assert_eq!(e, "expecting boolean value for flag --link, not: yes");
    }

    #[test]
    fn errors_name_the_flag() {
        let e = Flags::parse("COPY", &raw(&["--chmown=1"]), COPY).unwrap_err();
        assert_eq!(
            e,
            "unknown flag --chmown for COPY (known: --from, --link, --exclude)"
        );
        let e = Flags::parse("COPY", &raw(&["--from"]), COPY).unwrap_err();
        assert_eq!(e, "missing a value on flag --from");
        let e = Flags::parse("COPY", &raw(&["--from=a", "--from=b"]), COPY).unwrap_err();
        assert_eq!(e, "duplicate flag specified: --from");
        let e = Flags::parse("CMD", &raw(&["--doit"]), &[]).unwrap_err();
        assert_eq!(e, "unknown flag --doit: CMD takes no flags");
    }
}
