//! Shell patterns for `${v#p}`, `${v%p}` and `${v/p/r}`, matched the way BuildKit's
//! translation to a Go regular expression behaves.
//!
//! BuildKit turns the pattern into a regexp (`*` → `.*` or `.*?`, `?` → `.`, every other
//! character literal, no bracket expressions) and lets Go's leftmost-first engine pick the
//! match. A depth-first search that tries the alternatives in the same priority order finds
//! the same match, so that is what this module does, without a regex engine.

use std::collections::HashSet;

/// One element of a translated pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// Exactly this character.
    Lit(char),
    /// Any one character except a newline (Go's `.` without the `s` flag).
    Any,
    /// Any run of characters without a newline.
    Star,
}

/// A pattern ready to be matched against a value.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
    /// Whether `*` prefers the longest run (`.*`) or the shortest (`.*?`).
    greedy: bool,
}

impl Pattern {
    /// Translates `pattern`; an escape other than `\*`, `\?`, `\\`, `\}` or `\/` is an error, as
    /// in BuildKit.
    pub(crate) fn parse(pattern: &[char], greedy: bool) -> Result<Self, String> {
        let mut tokens = Vec::with_capacity(pattern.len());
        // BuildKit scans the pattern with a fresh text/scanner, which drops a leading BOM.
        let mut i = usize::from(pattern.first() == Some(&super::lex::BOM));
        while i < pattern.len() {
            let c = pattern[i];
            i += 1;
            match c {
                // `**` matches what `*` matches and picks the same end under either
                // preference, and merging them keeps the search space small.
                '*' if tokens.last() == Some(&Token::Star) => {}
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => match pattern.get(i) {
                    // The escape only kept `}` or `/` from ending the `${…}`; the character
                    // after it is read as an ordinary literal on the next round.
                    Some('}') | Some('/') => {}
                    Some(&e @ ('*' | '?' | '\\')) => {
                        tokens.push(Token::Lit(e));
                        i += 1;
                    }
                    Some(e) => return Err(format!("invalid escape '\\{e}'")),
                    None => return Err("invalid escape '\\' at the end of the pattern".into()),
                },
                other => tokens.push(Token::Lit(other)),
            }
        }
        Ok(Pattern { tokens, greedy })
    }

    /// A matcher of this pattern against `value`.
    pub(crate) fn matcher<'a>(&'a self, value: &'a [char]) -> Matcher<'a> {
        let states = (self.tokens.len() + 1).saturating_mul(value.len() + 1);
        let dead = if states <= DENSE_LIMIT {
            Visited::Dense(vec![0; states.div_ceil(64)])
        } else {
            Visited::Sparse(HashSet::new())
        };
        Matcher {
            pattern: self,
            value,
            dead,
        }
    }
}

/// Up to this many search states a bit set records them (8 MiB); past it only the states
/// actually reached are stored.
const DENSE_LIMIT: usize = 1 << 26;

/// The states already explored, `(token index, value index)`.
enum Visited {
    Dense(Vec<u64>),
    Sparse(HashSet<(usize, usize)>),
}

impl Visited {
    /// Records a state; false when it was already there.
    fn insert(&mut self, pi: usize, si: usize, width: usize) -> bool {
        match self {
            Visited::Dense(bits) => {
                let i = pi * width + si;
                let (word, bit) = (i / 64, 1u64 << (i % 64));
                let fresh = bits[word] & bit == 0;
                bits[word] |= bit;
                fresh
            }
            Visited::Sparse(set) => set.insert((pi, si)),
        }
    }
}

/// Searches one value; remembers the states that cannot lead to a match, which keeps the
/// search polynomial and stays valid across searches over the same value.
pub(crate) struct Matcher<'a> {
    pattern: &'a Pattern,
    value: &'a [char],
    dead: Visited,
}

impl Matcher<'_> {
    /// End of the match that starts exactly at `start`, as leftmost-first priority picks it.
    pub(crate) fn match_at(&mut self, start: usize) -> Option<usize> {
        let tokens = &self.pattern.tokens;
        let value = self.value;
        let mut stack = vec![(0usize, start)];
        while let Some((pi, si)) = stack.pop() {
            if pi == tokens.len() {
                return Some(si);
            }
            // States are only reached again after their whole subtree failed: transitions
            // always move forward, so a state is never its own ancestor.
            if !self.dead.insert(pi, si, value.len() + 1) {
                continue;
            }
            let here = value.get(si).copied();
            match tokens[pi] {
                Token::Lit(c) => {
                    if here == Some(c) {
                        stack.push((pi + 1, si + 1));
                    }
                }
                Token::Any => {
                    if here.is_some_and(|c| c != '\n') {
                        stack.push((pi + 1, si + 1));
                    }
                }
                Token::Star => {
                    let can_take = here.is_some_and(|c| c != '\n');
                    // The stack pops last-pushed first: push the less preferred choice first.
                    if self.pattern.greedy {
                        stack.push((pi + 1, si));
                        if can_take {
                            stack.push((pi, si + 1));
                        }
                    } else {
                        if can_take {
                            stack.push((pi, si + 1));
                        }
                        stack.push((pi + 1, si));
                    }
                }
            }
        }
        None
    }

    /// The leftmost match starting at or after `from`, as `(start, end)`.
    pub(crate) fn find_from(&mut self, from: usize) -> Option<(usize, usize)> {
        (from..=self.value.len()).find_map(|start| self.match_at(start).map(|end| (start, end)))
    }
}

/// `${v#p}` / `${v##p}`: removes the shortest (or longest) matching prefix.
pub(crate) fn trim_prefix(
    pattern: &[char],
    value: &[char],
    greedy: bool,
) -> Result<String, String> {
    let pat = Pattern::parse(pattern, greedy)?;
    let end = pat.matcher(value).match_at(0).unwrap_or(0);
    Ok(value[end..].iter().collect())
}

/// `${v%p}` / `${v%%p}`: removes the shortest (or longest) matching suffix.
///
/// Like BuildKit, this reverses the value and the pattern (keeping each `\x` pair in order) and
/// trims a prefix, so a leftmost search finds the rightmost match.
pub(crate) fn trim_suffix(
    pattern: &[char],
    value: &[char],
    greedy: bool,
) -> Result<String, String> {
    let reversed_pattern = reverse_pattern(pattern);
    let reversed_value: Vec<char> = value.iter().rev().copied().collect();
    let trimmed = trim_prefix(&reversed_pattern, &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps escape pairs as `\x`, so `a\*c` becomes `c\*a`.
fn reverse_pattern(pattern: &[char]) -> Vec<char> {
    let mut out = vec!['\0'; pattern.len()];
    let last = pattern.len().saturating_sub(1);
    let mut i = 0;
    while i < pattern.len() {
        let at = last - i;
        if pattern[i] == '\\' && i != last {
            out[at - 1] = '\\';
            out[at] = pattern[i + 1];
            i += 2;
        } else {
            out[at] = pattern[i];
            i += 1;
        }
    }
    out
}

/// `${v/p/r}` (first match, `all` false) or `${v//p/r}` (every match).
///
/// Replacing every match goes through Go's `ReplaceAllString`, which reads `$0`, `${0}`, `$name`
/// and `$$` in the replacement as a template; BuildKit inherits that, and so does this.
pub(crate) fn replace(
    pattern: &[char],
    value: &[char],
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let pat = Pattern::parse(pattern, true)?;
    let mut matcher = pat.matcher(value);
    if !all {
        let mut out: String = value.iter().collect();
        if let Some((start, end)) = matcher.find_from(0) {
            out = value[..start].iter().collect();
            out.push_str(replacement);
            out.extend(&value[end..]);
        }
        return Ok(out);
    }

    // The same walk as Go's replaceAll: an empty match right after a match is skipped, and the
    // search moves on by one character after an empty match.
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((start, end)) = matcher.find_from(search) else {
            break;
        };
        out.extend(&value[last_end..start]);
        if end > last_end || start == 0 {
            expand_template(&mut out, replacement, &value[start..end]);
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(&value[last_end..]);
    Ok(out)
}

/// Go's `Regexp.Expand` for a pattern without capture groups: only group 0 exists.
fn expand_template(out: &mut String, template: &str, whole: &[char]) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.extend(whole);
                }
                rest = after;
            }
            // A malformed reference stays as text.
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// The name after a `$` in a template (`name` or `{name}`) and the text after it.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let len: usize = body
        .chars()
        .take_while(|&c| super::lex::is_letter(c) || super::lex::is_digit(c) || c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let after = &body[len..];
    if braced {
        return after.strip_prefix('}').map(|a| (name, a));
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn reverse_keeps_escape_pairs() {
        let cases = [
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
        ];
        for (input, expected) in cases {
            let got: String = reverse_pattern(&chars(input)).into_iter().collect();
            assert_eq!(got, expected, "reverse of {input:?}");
        }
    }

    #[test]
    fn invalid_escapes_are_errors() {
        for p in ["\\", "\\x", "\\\\\\"] {
            assert!(Pattern::parse(&chars(p), true).is_err(), "{p:?}");
        }
    }

    #[test]
    fn greedy_and_lazy_prefixes() {
        let v = chars("xxyy");
        assert_eq!(trim_prefix(&chars("*x*y"), &v, false).unwrap(), "y");
        assert_eq!(trim_prefix(&chars("*"), &v, false).unwrap(), "xxyy");
        assert_eq!(trim_prefix(&chars("*x"), &v, true).unwrap(), "yy");
        assert_eq!(trim_suffix(&chars("y*"), &v, false).unwrap(), "xxy");
        assert_eq!(trim_suffix(&chars("y*"), &v, true).unwrap(), "xx");
    }

    #[test]
    fn star_does_not_cross_newlines() {
        let v = chars("a\nb");
        assert_eq!(trim_prefix(&chars("*"), &v, true).unwrap(), "\nb");
        assert_eq!(trim_prefix(&chars("a?"), &v, true).unwrap(), "a\nb");
    }

    #[test]
    fn replace_all_templates_and_empty_matches() {
        let v = chars("abc");
        assert_eq!(replace(&chars(""), &v, "-", true).unwrap(), "-a-b-c-");
        assert_eq!(replace(&chars("b"), &v, "[$0]", true).unwrap(), "a[b]c");
        assert_eq!(replace(&chars("b"), &v, "$$x$", true).unwrap(), "a$x$c");
        assert_eq!(replace(&chars("b"), &v, "$1x", true).unwrap(), "ac");
        assert_eq!(replace(&chars("b"), &v, "[$0]", false).unwrap(), "a[$0]c");
    }

    #[test]
    fn large_search_uses_sparse_states() {
        let v: Vec<char> = "ab".repeat(40_000).chars().collect();
        let p: Vec<char> = "*b".repeat(500).chars().collect();
        assert_eq!(trim_prefix(&p, &v, false).unwrap().len(), 79_000);
        assert_eq!(trim_suffix(&p, &v, true).unwrap().len(), 0);
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let v: Vec<char> = "a".repeat(2000).chars().collect();
        let p = chars("*a*a*a*a*a*a*a*b");
        assert_eq!(trim_prefix(&p, &v, true).unwrap().len(), 2000);
    }
}
