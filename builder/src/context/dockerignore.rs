//! `.dockerignore` with Docker's semantics.
//!
//! The file is read the way `ignorefile.ReadAll` reads it and each pattern is matched the way
//! moby's `patternmatcher` matches it (the library BuildKit and the Docker CLI share), so a
//! context that builds with Docker sends the same files with kiln. Where patternmatcher
//! translates a pattern into a regular expression, the quirks that change results on real file
//! names are kept: `**foo` (leading `**` and no other wildcard) is a plain suffix test and so
//! also matches `barfoo`, and `**` in the middle or at the end of a pattern does not cross a
//! newline in a file name.

use std::path::Path;

use super::ContextError;

/// The name of the ignore file at the root of a build context.
pub const DOCKERIGNORE_FILE: &str = ".dockerignore";

/// Parsed `.dockerignore` patterns, in file order.
///
/// The empty value excludes nothing.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
    /// Whether every exception is a plain path, which is what lets a walker prove that an
    /// excluded directory holds nothing an exception re-includes.
    exceptions_are_literal: bool,
}

/// One pattern of a `.dockerignore` file.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exception: bool,
    line: usize,
    matcher: Matcher,
}

impl Pattern {
    /// The pattern after cleaning, without its leading `!`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the pattern was written with `!` and so re-includes what it matches.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// The 1-based line of the ignore file the pattern came from.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether the pattern itself matches `path` (a cleaned, slash-separated relative path),
    /// without looking at parent directories.
    pub fn matches_exactly(&self, path: &str) -> bool {
        self.matcher.matches(path)
    }
}

impl DockerIgnore {
    /// Parses the text of an ignore file; `file_name` only labels errors.
    ///
    /// # Errors
    /// [`ContextError::BadPattern`] for a pattern Docker rejects: a malformed `[...]` class, a
    /// trailing `\`, a class range running backwards, or a lone `!`.
    pub fn parse(text: &str, file_name: &str) -> Result<Self, ContextError> {
        let mut patterns = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            // Docker tests for `#` before trimming, so an indented `#` starts a pattern.
            if raw.starts_with('#') {
                continue;
            }
            let Some(normalized) = normalize_line(raw) else {
                continue;
            };
            let bad = |reason: String| ContextError::BadPattern {
                file: file_name.to_owned(),
                line,
                pattern: raw.trim().to_owned(),
                reason,
            };
            // patternmatcher cleans once more after ignorefile did; that second pass is what
            // turns `!/` into a lone `!`.
            let cleaned = clean(normalized.trim());
            let (exception, body) = match cleaned.strip_prefix('!') {
                Some("") => return Err(bad("illegal exclusion pattern \"!\"".to_owned())),
                Some(rest) => (true, rest),
                None => (false, cleaned.as_str()),
            };
            let matcher = Matcher::compile(body).map_err(bad)?;
            patterns.push(Pattern {
                text: body.to_owned(),
                exception,
                line,
                matcher,
            });
        }
        let has_exceptions = patterns.iter().any(|p| p.exception);
        let exceptions_are_literal = patterns
            .iter()
            .filter(|p| p.exception)
            .all(|p| !p.text.contains(['*', '[', ']', '?', '^', '\\']));
        Ok(Self {
            patterns,
            has_exceptions,
            exceptions_are_literal,
        })
    }

    /// Reads `.dockerignore` at the root of `context_dir`; a missing file excludes nothing.
    ///
    /// # Errors
    /// [`ContextError::Io`] if the file exists but cannot be read, and the errors of
    /// [`DockerIgnore::parse`].
    pub fn load(context_dir: &Path) -> Result<Self, ContextError> {
        let path = context_dir.join(DOCKERIGNORE_FILE);
        match read_in_context(context_dir) {
            Ok(bytes) => {
                // Docker works on bytes; a pattern with invalid UTF-8 could only ever match a
                // file name that is not UTF-8 either, which the walker refuses anyway.
                let text = String::from_utf8_lossy(&bytes);
                Self::parse(&text, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(crate::path_io::PathIo::new(&path, source).into()),
        }
    }

    /// Reads the ignore file BuildKit uses for `dockerfile`: `<Dockerfile>.dockerignore` next to
    /// the Dockerfile when it exists (it takes precedence), else `.dockerignore` at the root of
    /// `context_dir`; neither existing excludes nothing.
    ///
    /// # Errors
    /// As [`DockerIgnore::load`].
    pub fn load_for_dockerfile(
        context_dir: &Path,
        dockerfile: &Path,
    ) -> Result<Self, ContextError> {
        if let Some(name) = dockerfile.file_name() {
            let mut specific_name = name.to_os_string();
            specific_name.push(DOCKERIGNORE_FILE);
            let specific = dockerfile.with_file_name(specific_name);
            match read_beside_dockerfile(context_dir, &specific) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    return Self::parse(&text, &specific.display().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(crate::path_io::PathIo::new(&specific, source).into()),
            }
        }
        Self::load(context_dir)
    }

    /// The patterns in file order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether `rel_path` (slash-separated, relative to the context root) is excluded from the
    /// context.
    ///
    /// The path is cleaned first (`./a//b/` is `a/b`); the root itself (`.` or empty) is never
    /// excluded. A pattern that matches any parent directory matches the path too, and the last
    /// pattern that matches decides, exactly like patternmatcher's `MatchesOrParentMatches`.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let file = clean(rel_path);
        if file == "." {
            return false;
        }
        let parent = parent_dir(&file);
        let mut excluded = false;
        for pattern in &self.patterns {
            // An include cannot change an already excluded path and an exception cannot change
            // an included one, so patternmatcher does not even try them.
            if pattern.exception != excluded {
                continue;
            }
            let hit = pattern.matcher.matches(&file)
                || parent.as_deref().is_some_and(|parent| {
                    ancestors_of(parent).any(|dir| pattern.matcher.matches(dir))
                });
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether a walker may skip everything below the directory `rel_dir` without reading it.
    ///
    /// True only if the directory is excluded and no exception could re-include anything under
    /// it. As in BuildKit's walker, an exception containing a wildcard could match anywhere, so
    /// any such exception keeps every excluded directory open; otherwise only exceptions naming
    /// a path inside `rel_dir` do.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.is_excluded(rel_dir) {
            return false;
        }
        if !self.has_exceptions {
            return true;
        }
        if !self.exceptions_are_literal {
            return false;
        }
        let dir_slash = format!("{}/", clean(rel_dir));
        !self
            .patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| format!("{}/", p.text).starts_with(&dir_slash))
    }
}

/// Applies ignorefile's per-line normalisation; `None` for a blank line.
fn normalize_line(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (invert, rest) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut pattern = String::new();
    if !rest.is_empty() {
        pattern = clean(rest);
        // Only one slash goes, and `/` alone stays: it then matches nothing, as in Docker.
        if pattern.len() > 1 {
            if let Some(stripped) = pattern.strip_prefix('/') {
                pattern = stripped.to_owned();
            }
        }
    }
    Some(if invert {
        format!("!{pattern}")
    } else {
        pattern
    })
}

/// Lexical path cleaning with the rules of Go's `path.Clean`.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` at the root is the root; elsewhere it must be kept.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir` of an already cleaned path, or `None` when that is `.`.
fn parent_dir(file: &str) -> Option<String> {
    let slash = file.rfind('/')?;
    Some(clean(&file[..=slash]))
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`: the prefixes patternmatcher tries as parent directories.
fn ancestors_of(dir: &str) -> impl Iterator<Item = &str> {
    dir.match_indices('/')
        .map(move |(i, _)| &dir[..i])
        .chain(std::iter::once(dir))
}

/// How one pattern is tested, mirroring patternmatcher's match types so that its string-test
/// shortcuts (which differ from its regular expressions) give the same answers here.
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard at all: string equality.
    Exact(String),
    /// Literal text then a final `**`: a prefix test.
    Prefix(String),
    /// A leading `**` then literal text: a suffix test (plus `**/foo` matching `foo`).
    Suffix(String),
    /// Anything else, matched like patternmatcher's anchored regular expression.
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**` or `**/` followed by more pattern: nothing, or any run ending in `/`.
    AnyDirs,
    /// `**` at the end: any run.
    AnyTail,
    Class(Class),
}

#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

impl Matcher {
    /// Compiles a cleaned pattern (without `!`); the error is the reason it is invalid.
    fn compile(pattern: &str) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut kind = Kind::Exact;
        let mut pos = 0;
        let mut step = 0;
        while pos < chars.len() {
            let c = chars[pos];
            pos += 1;
            match c {
                '*' if chars.get(pos) == Some(&'*') => {
                    pos += 1;
                    if chars.get(pos) == Some(&'/') {
                        pos += 1;
                    }
                    if pos == chars.len() {
                        kind = if kind == Kind::Exact {
                            Kind::Prefix
                        } else {
                            Kind::Tokens
                        };
                        tokens.push(Token::AnyTail);
                    } else {
                        kind = Kind::Tokens;
                        tokens.push(Token::AnyDirs);
                    }
                    if step == 0 {
                        kind = Kind::Suffix;
                    }
                }
                '*' => {
                    kind = Kind::Tokens;
                    tokens.push(Token::Star);
                }
                '?' => {
                    kind = Kind::Tokens;
                    tokens.push(Token::AnyChar);
                }
                '\\' => {
                    let Some(&next) = chars.get(pos) else {
                        return Err("trailing backslash escapes nothing".to_owned());
                    };
                    pos += 1;
                    kind = Kind::Tokens;
                    tokens.push(Token::Literal(next));
                }
                '[' => {
                    kind = Kind::Tokens;
                    let (class, next) = parse_class(&chars, pos)?;
                    pos = next;
                    tokens.push(Token::Class(class));
                }
                ']' => {
                    kind = Kind::Tokens;
                    tokens.push(Token::Literal(']'));
                }
                other => tokens.push(Token::Literal(other)),
            }
            step += 1;
        }
        // The `**` that decides Prefix or Suffix is ASCII, so these byte slices are on
        // character boundaries.
        Ok(match kind {
            Kind::Exact => Matcher::Exact(pattern.to_owned()),
            Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_owned()),
            Kind::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
            Kind::Tokens => Matcher::Tokens(tokens),
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(text) => path == text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Tokens(tokens) => match_tokens(tokens, path),
        }
    }
}

/// Parses a `[...]` class starting just after `[` with the syntax rules of Go's
/// `filepath.Match`, which is what Docker validates patterns with.
fn parse_class(chars: &[char], mut pos: usize) -> Result<(Class, usize), String> {
    let unterminated = || "unterminated character class '['".to_owned();
    let mut negated = false;
    if chars.get(pos) == Some(&'^') {
        negated = true;
        pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(pos) {
            None => return Err(unterminated()),
            Some(']') if !ranges.is_empty() => return Ok((Class { negated, ranges }, pos + 1)),
            _ => {}
        }
        let (lo, next) = class_char(chars, pos)?;
        pos = next;
        let mut hi = lo;
        if chars.get(pos) == Some(&'-') {
            let (h, next) = class_char(chars, pos + 1)?;
            hi = h;
            pos = next;
        }
        if hi < lo {
            // Go's filepath.Match accepts this, but the regular expression Docker builds from it
            // does not compile, so Docker fails the build on it.
            return Err(format!("invalid character class range {lo}-{hi}"));
        }
        if pos >= chars.len() {
            return Err(unterminated());
        }
        ranges.push((lo, hi));
    }
}

/// One member character of a class, possibly escaped.
fn class_char(chars: &[char], mut pos: usize) -> Result<(char, usize), String> {
    match chars.get(pos) {
        None => return Err("unterminated character class '['".to_owned()),
        Some('-') => return Err("unescaped '-' in character class".to_owned()),
        Some(']') => return Err("empty character class or range".to_owned()),
        Some('\\') => pos += 1,
        Some(_) => {}
    }
    match chars.get(pos) {
        Some(&c) => Ok((c, pos + 1)),
        None => Err("unterminated character class '['".to_owned()),
    }
}

/// Runs the tokens as an NFA over `path`, anchored at both ends; linear in the path for each
/// token, so hostile patterns cannot make matching blow up.
fn match_tokens(tokens: &[Token], path: &str) -> bool {
    // State 2*i: about to match token i; state 2*i+1: inside the `.*` of an AnyDirs token i.
    let states = 2 * (tokens.len() + 1);
    let mut current = vec![false; states];
    let mut next = vec![false; states];
    current[0] = true;
    close(tokens, &mut current);
    for c in path.chars() {
        next.iter_mut().for_each(|s| *s = false);
        for (i, token) in tokens.iter().enumerate() {
            if current[2 * i] {
                match token {
                    Token::Literal(l) if *l == c => next[2 * i + 2] = true,
                    Token::AnyChar if c != '/' => next[2 * i + 2] = true,
                    Token::Class(class) if class.contains(c) => next[2 * i + 2] = true,
                    Token::Star if c != '/' => next[2 * i] = true,
                    // Go's `.` does not match a newline.
                    Token::AnyTail if c != '\n' => next[2 * i] = true,
                    _ => {}
                }
            }
            if current[2 * i + 1] && c != '\n' {
                next[2 * i + 1] = true;
                if c == '/' {
                    next[2 * i + 2] = true;
                }
            }
        }
        close(tokens, &mut next);
        if !next.iter().any(|&s| s) {
            return false;
        }
        std::mem::swap(&mut current, &mut next);
    }
    current[2 * tokens.len()]
}

/// Adds the states reachable without consuming a character.
fn close(tokens: &[Token], states: &mut [bool]) {
    // Empty moves only go forward, so one pass in token order reaches everything.
    for (i, token) in tokens.iter().enumerate() {
        if !states[2 * i] {
            continue;
        }
        match token {
            Token::Star | Token::AnyTail => states[2 * i + 2] = true,
            Token::AnyDirs => {
                states[2 * i + 1] = true;
                states[2 * i + 2] = true;
            }
            _ => {}
        }
    }
}

/// The bytes of the context's `.dockerignore`, a symlink followed only within the context (as
/// if the context were `/`): a link cannot make kiln read, and echo in an error, a host file.
fn read_in_context(context_dir: &Path) -> std::io::Result<Vec<u8>> {
    read_confined(context_dir, Path::new(DOCKERIGNORE_FILE))
}

/// The bytes of `<Dockerfile>.dockerignore` at `path`, by the same rule: within the context when
/// the Dockerfile is in it, else within the Dockerfile's own directory.
fn read_beside_dockerfile(context_dir: &Path, path: &Path) -> std::io::Result<Vec<u8>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(Path::new).unwrap_or(Path::new(""));
    // Compared as real paths: `-f ./Dockerfile` and `--context .` name one directory.
    let context = std::fs::canonicalize(context_dir)?;
    let real_dir = std::fs::canonicalize(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })?;
    match real_dir.strip_prefix(&context) {
        Ok(rel) => read_confined(&context, &rel.join(name)),
        Err(_) => read_confined(&real_dir, name),
    }
}

/// The bytes of `rel` under `root`, symlinks resolved as if `root` were `/`.
fn read_confined(root: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
    use crate::fsview::{self, DirView, FsView};
    use std::io::Read;
    let view = DirView::new(root);
    let inside = fsview::resolve(&view, Path::new("/").join(rel).as_path(), true)?;
    let mut bytes = Vec::new();
    view.open(&inside)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Matcher::compile(pattern).unwrap().matches(path)
    }

    #[test]
    fn clean_follows_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a//b/", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/..", "../.."),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a", "/a"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn match_kinds_follow_patternmatcher() {
        assert!(matches!(
            Matcher::compile("a.b").unwrap(),
            Matcher::Exact(_)
        ));
        assert!(matches!(
            Matcher::compile("dir/**").unwrap(),
            Matcher::Prefix(_)
        ));
        assert!(matches!(
            Matcher::compile("**").unwrap(),
            Matcher::Suffix(_)
        ));
        assert!(matches!(
            Matcher::compile("**/dir").unwrap(),
            Matcher::Suffix(_)
        ));
        assert!(matches!(
            Matcher::compile("**file").unwrap(),
            Matcher::Suffix(_)
        ));
        assert!(matches!(
            Matcher::compile("**/**").unwrap(),
            Matcher::Tokens(_)
        ));
        assert!(matches!(
            Matcher::compile("**/a*").unwrap(),
            Matcher::Tokens(_)
        ));
        assert!(matches!(
            Matcher::compile("a\\b").unwrap(),
            Matcher::Tokens(_)
        ));
    }

    #[test]
    fn suffix_shortcut_is_a_plain_string_test() {
        // patternmatcher's own case: `**file` matches `file` and `dir/file`, and being a plain
        // suffix test it also matches a longer name.
        assert!(m("**file", "file"));
        assert!(m("**file", "dir/file"));
        assert!(m("**file", "myfile"));
        assert!(!m("**/file", "myfile"));
        assert!(m("**/file", "file"));
        assert!(!m("**/.foo", "bar.foo"));
    }

    #[test]
    fn double_star_does_not_cross_newlines_in_regex_mode() {
        assert!(m("a/**/b*", "a/x/y/b1"));
        assert!(!m("a/**/b*", "a/x\ny/b1"));
        // `*` is `[^/]*`, which does match a newline in Go.
        assert!(m("a*", "a\nb"));
        // The prefix shortcut is a string test and so does cross it.
        assert!(m("a/**", "a/x\ny"));
    }

    #[test]
    fn classes() {
        assert!(m("a[b-d]e", "ace"));
        assert!(!m("a[b-d]e", "aae"));
        assert!(!m("a[b-d]e", "ae"));
        assert!(m("a[^b-d]e", "aze"));
        assert!(!m("a[^b-d]e", "ace"));
        assert!(m("[\\]a]", "]"));
        assert!(m("[x\\-]", "-"));
        assert!(!m("[x\\-]", "z"));
        assert!(m("[a-ζ]*", "α"));
        assert!(!m("*[a-ζ]", "A"));
        assert!(m("a[*]b", "a*b"));
        assert!(!m("a[*]b", "axb"));
    }

    #[test]
    fn invalid_classes() {
        for bad in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "[z-a]", "[]",
            "[^]",
        ] {
            assert!(Matcher::compile(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["[\\]a]", "[\\-]", "[x\\-]", "[\\-x]", "a]b", "[!a]"] {
            assert!(
                Matcher::compile(good).is_ok(),
                "{good:?} should be accepted"
            );
        }
    }

    #[test]
    fn nfa_handles_many_stars_quickly() {
        let pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let name = "a".repeat(5000);
        assert!(!m(pattern, &name));
        assert!(m(pattern, &format!("{name}b")));
    }

    #[test]
    fn ancestors() {
        let got: Vec<&str> = ancestors_of("a/b/c").collect();
        assert_eq!(got, ["a", "a/b", "a/b/c"]);
        assert_eq!(parent_dir("a"), None);
        assert_eq!(parent_dir("a/b").as_deref(), Some("a"));
        assert_eq!(parent_dir("/a").as_deref(), Some("/"));
    }
}
