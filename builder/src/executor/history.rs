//! The image history entries BuildKit's Dockerfile frontend writes, one per instruction: the
//! `created_by` text of each form, read from `dockerfile2llb` and checked against docker's
//! BuildKit by the equivalence corpus. Its texts are Go's `fmt` output (`%q`, `%v`), so the Go
//! spellings they rely on (quoted strings and runes, durations, slices, maps) are rebuilt here.

use crate::dockerfile::instructions::{ArgDecl, Copy, Source};
use crate::dockerfile::parser::{go_quote, go_quote_rune};
use crate::image::{Healthcheck, History};

/// The `comment` BuildKit's Dockerfile frontend puts on every entry it writes.
pub const COMMENT: &str = "buildkit.dockerfile.v0";

/// What BuildKit appends to the `created_by` of a step that runs something or copies (RUN,
/// COPY, ADD), as opposed to a config change.
const BUILDKIT_SUFFIX: &str = " # buildkit";

/// The entry of a step: `empty_layer` when it made no layer.
pub fn entry(created_by: String, empty_layer: bool) -> History {
    History {
        created_by: Some(created_by),
        comment: Some(COMMENT.to_string()),
        empty_layer,
        ..History::default()
    }
}

/// `RUN`: the build arguments in scope (`|N NAME=value ...`, in declaration order, each with
/// the value the step's environment gives it, empty for an ARG without one) and the argv as run,
/// joined with spaces. The step's mounts and flags are not in it, so neither is a secret's id
/// or target; a secret's value never is in the environment this is given.
pub fn run(argv: &[String], args: &[(String, String)]) -> String {
    let mut s = String::from("RUN ");
    if !args.is_empty() {
        s.push_str(&format!("|{}", args.len()));
        for (k, v) in args {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push(' ');
    }
    s.push_str(&argv.join(" "));
    s.push_str(BUILDKIT_SUFFIX);
    s
}

/// `COPY`/`ADD`: `--parents`, `--chown` and `--chmod` (not `--from`, `--link`, `--exclude`,
/// `--checksum`), the path sources as written, then the heredoc sources by name, then the
/// destination as written.
pub fn copy(c: &Copy) -> String {
    let mut s = String::from(if c.add { "ADD" } else { "COPY" });
    if c.parents {
        s.push_str(" --parents");
    }
    for (flag, v) in [("chown", &c.chown), ("chmod", &c.chmod)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            s.push_str(&format!(" --{flag}={v}"));
        }
    }
    for src in &c.sources {
        if let Source::Path(p) = src {
            s.push(' ');
            s.push_str(p);
        }
    }
    for src in &c.sources {
        if let Source::Heredoc(h) = src {
            s.push_str(" <<");
            s.push_str(&h.name);
        }
    }
    s.push(' ');
    s.push_str(&c.dest);
    s.push_str(BUILDKIT_SUFFIX);
    s
}

/// `ARG`: each name with the value it took (`--build-arg`, else its expanded default, else the
/// global ARG's), the bare name when it has none.
pub fn arg(decls: &[ArgDecl]) -> String {
    let words: Vec<String> = decls
        .iter()
        .map(|d| match &d.default {
            Some(v) => format!("{}={v}", d.name),
            None => d.name.clone(),
        })
        .collect();
    format!("ARG {}", words.join(" "))
}

/// `ENV`/`LABEL`: `KEY=value` pairs, values expanded and unquoted.
pub fn pairs(keyword: &str, pairs: &[(String, String)]) -> String {
    let mut s = keyword.to_string();
    for (k, v) in pairs {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// A Go `%q` of a string slice, as CMD and ENTRYPOINT write their argv: `["a" "b"]`.
pub fn quoted_list(words: &[String]) -> String {
    let q: Vec<String> = words.iter().map(|w| go_quote(w)).collect();
    format!("[{}]", q.join(" "))
}

/// A Go `%v` of a string slice, as SHELL and VOLUME write theirs: `[a b]`.
pub fn plain_list(words: &[String]) -> String {
    format!("[{}]", words.join(" "))
}

/// `EXPOSE`: Go's `%v` of the port set the instruction adds (`map[443/udp:{} 80/tcp:{}]`), keys
/// in byte order as `fmt` sorts them.
pub fn expose(ports: &[String]) -> String {
    let mut ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    ports.sort_unstable();
    ports.dedup();
    let keys: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
    format!("EXPOSE map[{}]", keys.join(" "))
}

/// `HEALTHCHECK`: Go's `%q` of the config's check, a struct pointer: the test as a quoted list,
/// the durations as quoted `time.Duration` strings, and the retries count as a quoted rune
/// (`'\x03'`), field by field in the order of BuildKit's `HealthcheckConfig`.
pub fn healthcheck(h: &Healthcheck) -> String {
    format!(
        "HEALTHCHECK &{{{} {} {} {} {} {}}}",
        quoted_list(&h.test),
        go_quote(&go_duration(h.interval)),
        go_quote(&go_duration(h.timeout)),
        go_quote(&go_duration(h.start_period)),
        go_quote(&go_duration(h.start_interval)),
        quote_rune(h.retries),
    )
}

/// Go's `time.Duration.String` of `ns` nanoseconds: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000_000 {
        let (unit, prec) = if u < 1_000_000 { ("µs", 3) } else { ("ms", 6) };
        return format!("{sign}{}{unit}", fraction(u, prec));
    }
    let secs = u / 1_000_000_000;
    let mut s = format!(
        "{}s",
        fraction(secs % 60 * 1_000_000_000 + u % 1_000_000_000, 9)
    );
    let minutes = secs / 60;
    if minutes > 0 {
        s = format!("{}m{s}", minutes % 60);
        let hours = minutes / 60;
        if hours > 0 {
            s = format!("{hours}h{s}");
        }
    }
    format!("{sign}{s}")
}

/// `v` with its last `prec` digits as a fraction, trailing zeros (and a bare point) dropped.
fn fraction(v: u64, prec: u32) -> String {
    let p = 10u64.pow(prec);
    let digits = format!("{:0width$}", v % p, width = prec as usize);
    let digits = digits.trim_end_matches('0');
    if digits.is_empty() {
        (v / p).to_string()
    } else {
        format!("{}.{digits}", v / p)
    }
}

/// Go's `%q` of an integer: the rune of that code point, quoted (`'\x00'`, `'\x03'`, `'A'`);
/// one that is no code point is U+FFFD, as Go takes it.
fn quote_rune(n: i64) -> String {
    let c = u32::try_from(n)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{fffd}');
    go_quote_rune(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parser::Heredoc;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_lists_the_args_in_scope_before_the_argv() {
        // As docker's BuildKit wrote them for `ARG A1`, `ARG A2=two`, `RUN echo hi`.
        let args = [("A1", "given1"), ("A2", "two"), ("NOVAL", "")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            run(&s(&["/bin/sh", "-c", "echo hi"]), &args),
            "RUN |3 A1=given1 A2=two NOVAL= /bin/sh -c echo hi # buildkit"
        );
        assert_eq!(
            run(&s(&["echo", "exec form"]), &[]),
            "RUN echo exec form # buildkit"
        );
    }

    fn copy_of(add: bool, sources: Vec<Source>, dest: &str) -> Copy {
        Copy {
            add,
            sources,
            dest: dest.into(),
            from: None,
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: vec![],
            checksum: None,
            keep_git_dir: false,
        }
    }

    #[test]
    fn copy_keeps_chown_chmod_parents_and_drops_the_other_flags() {
        let mut c = copy_of(
            false,
            vec![Source::Path("a.txt".into()), Source::Path("b *.txt".into())],
            "/y/",
        );
        assert_eq!(copy(&c), "COPY a.txt b *.txt /y/ # buildkit");
        c.chown = Some("1:2".into());
        c.chmod = Some("600".into());
        c.parents = true;
        c.from = Some("build".into());
        c.link = true;
        c.exclude = vec!["*.md".into()];
        assert_eq!(
            copy(&c),
            "COPY --parents --chown=1:2 --chmod=600 a.txt b *.txt /y/ # buildkit"
        );
        let doc = Heredoc {
            name: "EOF".into(),
            content: "x\n".into(),
            expand: false,
            chomp: false,
        };
        let mut a = copy_of(
            true,
            vec![Source::Heredoc(doc), Source::Path("z".into())],
            "/z",
        );
        a.checksum = Some("sha256:00".into());
        assert_eq!(copy(&a), "ADD z <<EOF /z # buildkit");
    }

    #[test]
    fn arg_env_label_forms() {
        let decls = vec![
            ArgDecl {
                name: "A1".into(),
                default: None,
            },
            ArgDecl {
                name: "A3".into(),
                default: Some("x two".into()),
            },
        ];
        assert_eq!(arg(&decls), "ARG A1 A3=x two");
        let p = [("E2", "with space"), ("l 2", "v 2")].map(|(k, v)| (k.into(), v.into()));
        assert_eq!(pairs("LABEL", &p), "LABEL E2=with space l 2=v 2");
    }

    #[test]
    fn go_fmt_spellings() {
        // CMD/ENTRYPOINT as docker's BuildKit wrote them.
        assert_eq!(
            quoted_list(&s(&["/bin/sh", "-ec", "echo \"q\\\"uote\" 'sq' tab\tend"])),
            r#"["/bin/sh" "-ec" "echo \"q\\\"uote\" 'sq' tab\tend"]"#
        );
        assert_eq!(quoted_list(&s(&["ünï \\ back"])), r#"["ünï \\ back"]"#);
        assert_eq!(
            quoted_list(&s(&["\u{1}\u{7f}\u{a0}\u{200b}\u{1f600}"])),
            r#"["\x01\x7f\u00a0\u200b😀"]"#
        );
        assert_eq!(quoted_list(&[]), "[]");
        assert_eq!(plain_list(&s(&["/bin/sh", "-ec"])), "[/bin/sh -ec]");
        assert_eq!(
            expose(&s(&["80/tcp", "8080/tcp", "443/udp", "80/tcp"])),
            "EXPOSE map[443/udp:{} 80/tcp:{} 8080/tcp:{}]"
        );
    }

    #[test]
    fn healthcheck_is_go_percent_q_of_the_struct() {
        let h = Healthcheck {
            test: s(&["CMD-SHELL", "curl -f http://x/ || exit 1"]),
            interval: 30_000_000_000,
            timeout: 90_000_000_000,
            retries: 3,
            ..Healthcheck::default()
        };
        assert_eq!(
            healthcheck(&h),
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://x/ || exit 1"] "30s" "1m30s" "0s" "0s" '\x03'}"#
        );
        let none = Healthcheck {
            test: s(&["NONE"]),
            ..Healthcheck::default()
        };
        assert_eq!(
            healthcheck(&none),
            r#"HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\x00'}"#
        );
        assert_eq!(quote_rune(65), "'A'");
        assert_eq!(quote_rune(39), r"'\''");
        assert_eq!(quote_rune(7), r"'\a'");
        assert_eq!(quote_rune(-1), "'\u{fffd}'");
    }

    #[test]
    fn durations_print_as_go_does() {
        for (ns, want) in [
            (0, "0s"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-5_000_000_000, "-5s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn entries_carry_buildkits_comment() {
        let h = entry("USER app".into(), true);
        assert_eq!(h.comment.as_deref(), Some("buildkit.dockerfile.v0"));
        assert!(h.empty_layer && h.created.is_none());
    }
}
