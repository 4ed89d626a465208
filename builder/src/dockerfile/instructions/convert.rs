//! One syntax-tree node → one typed instruction.

use super::duration::parse_duration;
use super::flags::{FlagKind, Flags};
use super::{
    ArgDecl, Command, Copy, From, Healthcheck, Instruction, Located, Mount, Network, Run, Source,
};
use crate::dockerfile::parser::{self, Heredoc, Node};

const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::List),
];
const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::List),
    ("checksum", FlagKind::String),
    ("keep-git-dir", FlagKind::Bool),
];
const RUN_FLAGS: &[(&str, FlagKind)] = &[
    ("mount", FlagKind::List),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagKind)] = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

/// Converts one parsed node; the error is the message for the node's first line.
pub fn from_node(node: &Node) -> Result<Located, String> {
    Ok(Located {
        instruction: instruction(node)?,
        start_line: node.start_line,
        end_line: node.end_line,
        original: node.original.clone(),
    })
}

fn instruction(node: &Node) -> Result<Instruction, String> {
    let kw = node.keyword.to_ascii_uppercase();
    let no_flags = |n: &Node| Flags::parse(&kw, &n.flags, &[]).map(drop);
    let args = &node.args;
    Ok(match kw.as_str() {
        "FROM" => from(node)?,
        "RUN" => run(node)?,
        "CMD" | "ENTRYPOINT" => {
            no_flags(node)?;
            let c = command(node);
            if kw == "CMD" {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        "SHELL" => {
            no_flags(node)?;
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            if args.is_empty() {
                return Err("SHELL requires at least one argument".into());
            }
            Instruction::Shell(args.clone())
        }
        "ENV" | "LABEL" => {
            no_flags(node)?;
            let pairs = name_values(&kw, args)?;
            if kw == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "ARG" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err("ARG requires at least one argument".into());
            }
            let decls = args
                .iter()
                .map(|a| {
                    let (name, default) = match a.split_once('=') {
                        Some((n, d)) => (n, Some(d.to_string())),
                        None => (a.as_str(), None),
                    };
                    if name.is_empty() {
                        return Err(format!("ARG names can not be blank (in {a:?})"));
                    }
                    Ok(ArgDecl {
                        name: name.to_string(),
                        default,
                    })
                })
                .collect::<Result<_, String>>()?;
            Instruction::Arg(decls)
        }
        "COPY" | "ADD" => copy(node, kw == "ADD")?,
        "MAINTAINER" => {
            no_flags(node)?;
            Instruction::Maintainer(one_arg(&kw, args)?)
        }
        "EXPOSE" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Instruction::Expose(args.clone())
        }
        "VOLUME" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            if args.iter().any(|a| a.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume(args.clone())
        }
        "USER" => {
            no_flags(node)?;
            Instruction::User(one_arg(&kw, args)?)
        }
        "WORKDIR" => {
            no_flags(node)?;
            Instruction::Workdir(one_arg(&kw, args)?)
        }
        "STOPSIGNAL" => {
            no_flags(node)?;
            Instruction::Stopsignal(one_arg(&kw, args)?)
        }
        "HEALTHCHECK" => healthcheck(node)?,
        "ONBUILD" => onbuild(node)?,
        _ => {
            let word = node
                .original
                .split_whitespace()
                .next()
                .unwrap_or(&node.keyword);
            return Err(match parser::suggest(word) {
                Some(s) => format!(
                    "unknown instruction {word:?} (did you mean {:?}?)",
                    s.to_ascii_uppercase()
                ),
                None => format!("unknown instruction {word:?}"),
            });
        }
    })
}

fn one_arg(kw: &str, args: &[String]) -> Result<String, String> {
    match args {
        [a] if !a.is_empty() => Ok(a.clone()),
        [] => Err(format!("{kw} requires exactly one argument")),
        _ => Err(format!(
            "{kw} requires exactly one argument, got {}",
            args.len()
        )),
    }
}

fn from(node: &Node) -> Result<Instruction, String> {
    let flags = Flags::parse("FROM", &node.flags, &[("platform", FlagKind::String)])?;
    let (image, name) = match node.args.as_slice() {
        [image] => (image.clone(), None),
        [image, as_kw, name] => {
            if !as_kw.eq_ignore_ascii_case("as") {
                return Err(format!(
                    "FROM: expected AS before the stage name, found {as_kw:?}"
                ));
            }
            let name = name.to_ascii_lowercase();
            if !valid_stage_name(&name) {
                return Err(format!(
                    "invalid name for build stage {name:?}: it must start with a letter and \
                     hold only letters, digits, '-', '_' and '.'"
                ));
            }
            (image.clone(), Some(name))
        }
        [] => return Err("FROM requires an image (FROM image [AS name])".into()),
        _ => {
            return Err("FROM requires either one or three arguments (FROM image [AS name])".into())
        }
    };
    Ok(Instruction::From(From {
        image,
        name,
        platform: flags.string("platform"),
    }))
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn command(node: &Node) -> Command {
    Command {
        args: node.args.clone(),
        shell_form: !node.json,
        heredocs: node.heredocs.clone(),
    }
}

fn run(node: &Node) -> Result<Instruction, String> {
    let flags = Flags::parse("RUN", &node.flags, RUN_FLAGS)?;
    let mounts = flags
        .list("mount")
        .iter()
        .map(|m| Mount::parse(m).map_err(|e| format!("--mount: {e}")))
        .collect::<Result<_, _>>()?;
    let network = match flags.string("network").as_deref() {
        None | Some("default") => Network::Default,
        Some("none") => Network::None,
        Some("host") => Network::Host,
        Some(other) => {
            return Err(format!(
                "--network: unsupported value {other:?} (default, none or host)"
            ))
        }
    };
    let insecure = match flags.string("security").as_deref() {
        None | Some("sandbox") => false,
        Some("insecure") => true,
        Some(other) => {
            return Err(format!(
                "--security: unsupported value {other:?} (sandbox or insecure)"
            ))
        }
    };
    let command = command(node);
    if command.args.is_empty()
        || (command.shell_form && command.args.iter().all(|a| a.trim().is_empty()))
    {
        return Err("RUN requires a command".into());
    }
    Ok(Instruction::Run(Run {
        command,
        mounts,
        network,
        insecure,
    }))
}

/// ENV and LABEL arrive from the parser as (name, value, separator) triples.
fn name_values(kw: &str, args: &[String]) -> Result<Vec<(String, String)>, String> {
    if args.is_empty() {
        return Err(format!("{kw} requires at least one argument"));
    }
    if args.len() % 3 != 0 {
        return Err(format!("{kw} has a name without a value"));
    }
    args.chunks(3)
        .map(|t| {
            if t[0].is_empty() {
                Err(format!("{kw} names can not be blank"))
            } else {
                Ok((t[0].clone(), t[1].clone()))
            }
        })
        .collect()
}

fn copy(node: &Node, add: bool) -> Result<Instruction, String> {
    let kw = if add { "ADD" } else { "COPY" };
    let flags = Flags::parse(kw, &node.flags, if add { ADD_FLAGS } else { COPY_FLAGS })?;
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(format!(
            "{kw} requires at least two arguments (sources and destination), got {}",
            node.args.len()
        ));
    };
    let sources = srcs.iter().map(|s| source(s, &node.heredocs)).collect();
    let has = |n: &str| {
        if add { ADD_FLAGS } else { COPY_FLAGS }
            .iter()
            .any(|(f, _)| *f == n)
    };
    Ok(Instruction::Copy(Copy {
        add,
        sources,
        dest: dest.clone(),
        from: if has("from") {
            flags.string("from")
        } else {
            None
        },
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: has("parents") && flags.bool("parents"),
        exclude: flags.list("exclude"),
        checksum: if has("checksum") {
            flags.string("checksum")
        } else {
            None
        },
        keep_git_dir: has("keep-git-dir") && flags.bool("keep-git-dir"),
    }))
}

/// A COPY/ADD word that names one of the instruction's heredocs (`<<EOF`, `<<-"EOF"`) is that
/// heredoc's content; any other word is a path.
fn source(word: &str, heredocs: &[Heredoc]) -> Source {
    let name = word
        .strip_prefix("<<")
        .map(|w| w.strip_prefix('-').unwrap_or(w))
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''));
    match name.and_then(|n| heredocs.iter().find(|h| h.name == n)) {
        Some(h) => Source::Heredoc(h.clone()),
        None => Source::Path(word.to_string()),
    }
}

fn healthcheck(node: &Node) -> Result<Instruction, String> {
    let flags = Flags::parse("HEALTHCHECK", &node.flags, HEALTHCHECK_FLAGS)?;
    let Some((kind, rest)) = node.args.split_first() else {
        return Err("HEALTHCHECK requires an argument (NONE or CMD command)".into());
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() || !node.flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments or flags".into());
            }
            Ok(Instruction::Healthcheck(Healthcheck::None))
        }
        "CMD" => {
            if rest.is_empty() || rest.iter().all(|a| a.trim().is_empty()) {
                return Err("HEALTHCHECK CMD requires a command".into());
            }
            let duration = |name: &str| -> Result<_, String> {
                flags
                    .string(name)
                    .map(|v| {
                        let d = parse_duration(&v).map_err(|e| format!("--{name}: {e}"))?;
                        if !d.is_zero() && d.as_millis() < 1 {
                            return Err(format!("--{name} cannot be less than 1ms"));
                        }
                        Ok(d)
                    })
                    .transpose()
            };
            let retries = flags
                .string("retries")
                .map(|r| {
                    r.parse::<u32>()
                        .map_err(|_| format!("--retries: invalid number {r:?}"))
                })
                .transpose()?;
            Ok(Instruction::Healthcheck(Healthcheck::Check {
                command: Command {
                    args: rest.to_vec(),
                    shell_form: !node.json,
                    heredocs: vec![],
                },
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            }))
        }
        other => Err(format!("unknown type {other:?} in HEALTHCHECK (try CMD)")),
    }
}

fn onbuild(node: &Node) -> Result<Instruction, String> {
    let Some(sub) = &node.sub else {
        return Err("ONBUILD requires an instruction to run later".into());
    };
    match sub.keyword.to_ascii_uppercase().as_str() {
        "ONBUILD" => return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "FROM" | "MAINTAINER" => {
            return Err(format!(
                "{} isn't allowed as an ONBUILD trigger",
                sub.keyword.to_uppercase()
            ))
        }
        _ => {}
    }
    instruction(sub).map_err(|e| format!("ONBUILD trigger: {e}"))?;
    let text = node.original.trim_start();
    let trigger = text.get("ONBUILD".len()..).unwrap_or("").trim();
    Ok(Instruction::Onbuild(trigger.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names() {
        assert!(valid_stage_name("build-1.x_y"));
        assert!(!valid_stage_name("1build"));
        assert!(!valid_stage_name("bu ild"));
        assert!(!valid_stage_name(""));
    }
}
