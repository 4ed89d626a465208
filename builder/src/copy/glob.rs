//! Source wildcards exactly as BuildKit expands them: Go's `filepath.Match` (`*`, `?`,
//! `[...]` with `^` negation, `\` escapes; `**` is just two stars) applied to paths below the
//! longest wildcard-free prefix of the source.

/// The pattern is malformed (Go's `ErrBadPattern`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Whether a path component holds a wildcard (`\` escapes the next character).
pub(crate) fn has_wildcard(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Splits cleaned `path` components at the first one with a wildcard: (literal prefix,
/// pattern components).
pub(crate) fn split_wildcards(comps: &[String]) -> (Vec<String>, Vec<String>) {
    match comps.iter().position(|c| has_wildcard(c)) {
        Some(i) => (comps[..i].to_vec(), comps[i..].to_vec()),
        None => (comps.to_vec(), Vec::new()),
    }
}

/// Go's `filepath.Match(pattern, name)` on Unix.
pub(crate) fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern first, as Go reports a bad pattern even after a mismatch.
    validate(&p)?;
    Ok(match_from(&p, 0, &n, 0))
}

fn validate(p: &[char]) -> Result<(), BadPattern> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(BadPattern);
                }
                i += 2;
            }
            '[' => {
                let (_, next) = class(p, i + 1, None)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Parses a class starting after `[`; with `c`, whether it matches. Returns the index after
/// `]`.
fn class(p: &[char], mut i: usize, c: Option<char>) -> Result<(bool, usize), BadPattern> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        match p.get(i) {
            None => return Err(BadPattern),
            Some(']') if !first => {
                i += 1;
                break;
            }
            _ => {}
        }
        first = false;
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    Ok((matched != negated, i))
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize), BadPattern> {
    match p.get(i) {
        None | Some('-') | Some(']') => Err(BadPattern),
        Some('\\') => p.get(i + 1).map(|&c| (c, i + 2)).ok_or(BadPattern),
        Some(&c) => Ok((c, i + 1)),
    }
}

/// Backtracking matcher; `*` never crosses `/`. Patterns here are one source word, so the
/// backtracking stays small.
fn match_from(p: &[char], mut pi: usize, n: &[char], mut ni: usize) -> bool {
    while pi < p.len() {
        match p[pi] {
            '*' => {
                while pi < p.len() && p[pi] == '*' {
                    pi += 1;
                }
                let mut k = ni;
                loop {
                    if match_from(p, pi, n, k) {
                        return true;
                    }
                    if k >= n.len() || n[k] == '/' {
                        return false;
                    }
                    k += 1;
                }
            }
            '?' => {
                if ni >= n.len() || n[ni] == '/' {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
            '[' => {
                let Some(&c) = n.get(ni) else { return false };
                if c == '/' {
                    return false;
                }
                match class(p, pi + 1, Some(c)) {
                    Ok((true, next)) => {
                        pi = next;
                        ni += 1;
                    }
                    _ => return false,
                }
            }
            '\\' => {
                if p.get(pi + 1) != n.get(ni) || ni >= n.len() {
                    return false;
                }
                pi += 2;
                ni += 1;
            }
            c => {
                if n.get(ni) != Some(&c) {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
        }
    }
    ni == n.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_cases() {
        for (pat, name, want) in [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abe", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("**", "a", true),
            ("**", "a/b", false),
            ("*.txt", "x.txt", true),
        ] {
            assert_eq!(matches(pat, name), Ok(want), "{pat} {name}");
        }
        for bad in ["[", "a[", "[^", "[]", "[-]", "[x-]", "a\\", "[a-b-c]"] {
            assert_eq!(matches(bad, "a"), Err(BadPattern), "{bad}");
        }
    }

    #[test]
    fn split() {
        let c = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
        assert_eq!(split_wildcards(&c("a/b*/c")), (c("a"), c("b*/c")));
        assert_eq!(split_wildcards(&c("a/b")), (c("a/b"), vec![]));
        assert!(!has_wildcard("a\\*b"));
    }
}
