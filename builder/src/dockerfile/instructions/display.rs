//! Instructions printed back as Dockerfile text (for `kiln build --dry-run` and step names).

use super::{Command, Copy, Healthcheck, Instruction, Mount, MountType, Network, Sharing, Source};
use std::fmt::{self, Write};

/// Quotes `s` as a JSON string.
pub fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A word as it would be written in a Dockerfile: quoted when it holds blanks or quotes.
fn word(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        json_quote(s)
    } else {
        s.to_string()
    }
}

fn command(c: &Command) -> String {
    let mut s = if c.shell_form {
        c.args.join(" ")
    } else {
        format!(
            "[{}]",
            c.args
                .iter()
                .map(|a| json_quote(a))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    for h in &c.heredocs {
        let _ = write!(
            s,
            " (heredoc {}: {} lines)",
            h.name,
            h.content.lines().count()
        );
    }
    s
}

fn mount(m: &Mount) -> String {
    let kind = match m.kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    };
    let mut parts = vec![format!("type={kind}")];
    if !m.target.is_empty() {
        parts.push(format!("target={}", m.target));
    }
    for (k, v) in [
        ("id", &m.id),
        ("from", &m.from),
        ("source", &m.source),
        ("env", &m.env),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    let default_ro = m.kind == MountType::Bind;
    if m.readonly != default_ro {
        parts.push(if m.readonly { "ro".into() } else { "rw".into() });
    }
    match m.sharing {
        Sharing::Shared => {}
        Sharing::Private => parts.push("sharing=private".into()),
        Sharing::Locked => parts.push("sharing=locked".into()),
    }
    if m.required {
        parts.push("required".into());
    }
    if let Some(mode) = m.mode {
        parts.push(format!("mode={mode:o}"));
    }
    for (k, v) in [("uid", m.uid), ("gid", m.gid)] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(",")
}

fn copy(c: &Copy, out: &mut String) {
    for (k, v) in [
        ("from", &c.from),
        ("chown", &c.chown),
        ("chmod", &c.chmod),
        ("checksum", &c.checksum),
    ] {
        if let Some(v) = v {
            let _ = write!(out, " --{k}={v}");
        }
    }
    for (k, on) in [
        ("link", c.link),
        ("parents", c.parents),
        ("keep-git-dir", c.keep_git_dir),
    ] {
        if on {
            let _ = write!(out, " --{k}");
        }
    }
    for e in &c.exclude {
        let _ = write!(out, " --exclude={e}");
    }
    for s in &c.sources {
        match s {
            Source::Path(p) => {
                let _ = write!(out, " {}", word(p));
            }
            Source::Heredoc(h) => {
                let _ = write!(out, " <<{}", h.name);
            }
        }
    }
    let _ = write!(out, " {}", word(&c.dest));
}

fn pairs(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{}={}", word(k), word(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.keyword().to_string();
        match self {
            Instruction::From(from) => {
                if let Some(p) = &from.platform {
                    let _ = write!(s, " --platform={p}");
                }
                let _ = write!(s, " {}", from.image);
                if let Some(n) = &from.name {
                    let _ = write!(s, " AS {n}");
                }
            }
            Instruction::Run(r) => {
                for m in &r.mounts {
                    let _ = write!(s, " --mount={}", mount(m));
                }
                match r.network {
                    Network::Default => {}
                    Network::None => s.push_str(" --network=none"),
                    Network::Host => s.push_str(" --network=host"),
                }
                if r.insecure {
                    s.push_str(" --security=insecure");
                }
                let _ = write!(s, " {}", command(&r.command));
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
                let _ = write!(s, " {}", command(c));
            }
            Instruction::Shell(a) => {
                let c = Command {
                    args: a.clone(),
                    shell_form: false,
                    heredocs: vec![],
                };
                let _ = write!(s, " {}", command(&c));
            }
            Instruction::Env(p) | Instruction::Label(p) => {
                let _ = write!(s, " {}", pairs(p));
            }
            Instruction::Arg(decls) => {
                for d in decls {
                    match &d.default {
                        Some(v) => {
                            let _ = write!(s, " {}={}", d.name, word(v));
                        }
                        None => {
                            let _ = write!(s, " {}", d.name);
                        }
                    }
                }
            }
            Instruction::Copy(c) => copy(c, &mut s),
            Instruction::Expose(v) | Instruction::Volume(v) => {
                for w in v {
                    let _ = write!(s, " {}", word(w));
                }
            }
            Instruction::Maintainer(v)
            | Instruction::User(v)
            | Instruction::Workdir(v)
            | Instruction::Stopsignal(v)
            | Instruction::Onbuild(v) => {
                let _ = write!(s, " {v}");
            }
            Instruction::Healthcheck(Healthcheck::None) => s.push_str(" NONE"),
            Instruction::Healthcheck(Healthcheck::Check {
                command: c,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                for (k, v) in [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ] {
                    if let Some(v) = v {
                        let _ = write!(s, " --{k}={v:?}");
                    }
                }
                if let Some(r) = retries {
                    let _ = write!(s, " --retries={r}");
                }
                let _ = write!(s, " CMD {}", command(c));
            }
        }
        f.write_str(&s)
    }
}
