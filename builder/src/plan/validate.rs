//! Checks of expanded values that BuildKit makes when it dispatches a step: ports, signals,
//! modes and owners are only known to be wrong once their variables are expanded.

use crate::dockerfile::instructions::Instruction;

/// The signals `STOPSIGNAL` may name (Linux), without the `SIG` prefix.
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE",
    "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU",
    "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// Checks an instruction whose words are expanded; the error is for a person.
pub fn validate(ins: &Instruction) -> Result<(), String> {
    match ins {
        Instruction::Expose(ports) => ports.iter().try_for_each(|p| port(p)),
        Instruction::Stopsignal(s) => signal(s),
        Instruction::User(u) if u.trim().is_empty() => {
            Err("USER: the user expands to an empty string".into())
        }
        Instruction::Workdir(w) if w.trim().is_empty() => {
            Err("WORKDIR: the path expands to an empty string".into())
        }
        Instruction::Copy(c) => {
            if let Some(m) = &c.chmod {
                chmod(m).map_err(|e| format!("{}: --chmod={m}: {e}", ins.keyword()))?;
            }
            if let Some(o) = &c.chown {
                if o.is_empty() || o.starts_with(':') || o.ends_with(':') {
                    return Err(format!(
                        "{}: --chown={o}: expected user[:group]",
                        ins.keyword()
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn port(p: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("EXPOSE: invalid port {p:?}: {why}"));
    let (range, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    if !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
        return bad("the protocol must be tcp, udp or sctp");
    }
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    match (lo.parse::<u16>(), hi.parse::<u16>()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok(()),
        (Ok(_), Ok(_)) => bad("the range ends before it starts"),
        _ => bad("expected a number from 0 to 65535, or a range"),
    }
}

fn signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<u32>() {
        return if (1..=64).contains(&n) {
            Ok(())
        } else {
            Err(format!("STOPSIGNAL: invalid signal number {n}"))
        };
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let rt = name
        .strip_prefix("RTMIN")
        .or_else(|| name.strip_prefix("RTMAX"));
    let rt_ok =
        rt.is_some_and(|r| r.is_empty() || r.trim_start_matches(['+', '-']).parse::<u8>().is_ok());
    if SIGNALS.contains(&name) || rt_ok {
        Ok(())
    } else {
        Err(format!("STOPSIGNAL: unknown signal {s:?}"))
    }
}

/// Octal (`0755`) or symbolic (`u+x,g-w`) modes, as BuildKit accepts them.
fn chmod(m: &str) -> Result<(), String> {
    if !m.is_empty() && m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return if u32::from_str_radix(m, 8).is_ok_and(|v| v <= 0o7777) {
            Ok(())
        } else {
            Err("mode too large".into())
        };
    }
    let clause_ok = |c: &str| {
        let who_end = c.find(['+', '-', '=']).unwrap_or(c.len());
        let (who, rest) = c.split_at(who_end);
        who.chars().all(|ch| "ugoa".contains(ch))
            && !rest.is_empty()
            && rest.chars().all(|ch| "+-=rwxXst".contains(ch))
            && rest.starts_with(['+', '-', '='])
    };
    if m.split(',').all(clause_ok) {
        Ok(())
    } else {
        Err("expected an octal mode like 0755 or a symbolic one like u+x,go-w".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        for ok in ["80", "80/tcp", "53/UDP", "8000-8010", "9/sctp"] {
            assert!(port(ok).is_ok(), "{ok}");
        }
        for bad in ["http", "80/icmp", "70000", "90-80", "", "80-"] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            port("80/icmp").unwrap_err(),
            "EXPOSE: invalid port \"80/icmp\": the protocol must be tcp, udp or sctp"
        );
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "SIGWINCH"] {
            assert!(signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", ""] {
            assert!(signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        for ok in ["755", "0644", "4755", "u+x", "go-w,u=rwx", "a+X"] {
            assert!(chmod(ok).is_ok(), "{ok}");
        }
        for bad in ["", "0999", "77777", "u+q", "x+u", "u"] {
            assert!(chmod(bad).is_err(), "{bad}");
        }
    }
}
