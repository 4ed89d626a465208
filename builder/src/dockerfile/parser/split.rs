//! Splitting an instruction line into keyword, flags and the rest (BuildKit's `splitCommand`).

/// BuildKit's `[\t\v\f\r ]+` separator, which (unlike `unicode.IsSpace`) is ASCII only.
pub(crate) fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits `s` at the first run of [`is_token_space`] characters.
pub(crate) fn split_first_token(s: &str) -> (&str, Option<&str>) {
    match s.find(is_token_space) {
        Some(i) => {
            let rest = s[i..].trim_start_matches(is_token_space);
            (&s[..i], Some(rest))
        }
        None => (s, None),
    }
}

/// Splits `s` at every run of [`is_token_space`] characters (Go's `regexp.Split(s, -1)`).
pub(crate) fn split_all_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let (word, tail) = split_first_token(rest);
        out.push(word.to_string());
        match tail {
            Some(t) => rest = t,
            None => return out,
        }
    }
}

/// Lower-cases like Go's `strings.ToLower`: per character, without context rules.
pub(crate) fn go_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            // Go maps dotted capital I to a plain `i`, Rust to `i` + combining dot.
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The parts of one instruction line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) keyword: String,
    pub(crate) flags: Vec<String>,
    pub(crate) rest: String,
}

/// Splits a logical line into lower-cased keyword, leading `--flags` and the trimmed rest.
pub(crate) fn split_command(line: &str) -> Split {
    let (cmd, tail) = split_first_token(line.trim());
    let (rest, flags) = match tail {
        Some(t) => extract_flags(t),
        None => (String::new(), Vec::new()),
    };
    Split {
        keyword: go_lower(cmd),
        flags,
        rest: rest.trim().to_string(),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// Takes the `--flag[=value]` words off the front of `line`; flags end at `--` or at the first
/// word not starting with `--`. Quotes around flag values are removed, `\` escapes one character.
pub(crate) fn extract_flags(line: &str) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    let byte_at = |p: usize| chars.get(p).map(|&(b, _)| b).unwrap_or(line.len());
    while pos <= n {
        let ch = chars.get(pos).map(|&(_, c)| c).unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            let next_is_dash = chars.get(pos + 1).map(|&(_, c)| c) == Some('-');
            if ch != '-' || !next_is_dash {
                return (line[byte_at(pos)..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if pos == n {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[byte_at(pos)..].to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                    pos += 1;
                    continue;
                }
                let mut c = ch;
                if c == '\\' {
                    if pos + 1 == n {
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    c = chars.get(pos).map(|&(_, c)| c).unwrap_or('\\');
                }
                word.push(c);
                pos += 1;
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                    pos += 1;
                    continue;
                }
                let mut c = ch;
                if c == '\\' {
                    if pos + 1 == n {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    c = chars.get(pos).map(|&(_, c)| c).unwrap_or('\\');
                }
                word.push(c);
                pos += 1;
            }
            Phase::Spaces => pos += 1,
        }
    }
    (String::new(), words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let s = split_command("COPY --from=a --chown=\"x y\" -- src dst");
        assert_eq!(s.keyword, "copy");
        assert_eq!(s.flags, vec!["--from=a", "--chown=x y"]);
        assert_eq!(s.rest, "src dst");
        let s = split_command("CMD --doit -- [ ]");
        assert_eq!(s.flags, vec!["--doit"]);
        assert_eq!(s.rest, "[ ]");
        let s = split_command("RUN --mount=type=cache,target=/x echo -- hi");
        assert_eq!(s.flags, vec!["--mount=type=cache,target=/x"]);
        assert_eq!(s.rest, "echo -- hi");
        let s = split_command("RUN --network=none");
        assert_eq!(s.flags, vec!["--network=none"]);
        assert_eq!(s.rest, "");
        assert_eq!(split_command("  ").keyword, "");
    }
}
