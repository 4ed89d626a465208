//! The scanner that walks a word once, expanding as it goes, the way BuildKit's `shellWord`
//! does: a result string and, alongside, the word split on unquoted white space.

use super::pattern;
use super::{Env, Lexer, Matches};

/// The byte-order mark that Go's text/scanner drops when it starts a text.
pub(crate) const BOM: char = '\u{FEFF}';

/// Nesting of `${…}` inside `${…}` beyond which a word is refused, so that hostile input
/// cannot exhaust the stack (Go's growable stacks have no such limit).
const MAX_DEPTH: usize = 200;

/// What [`run`] produces.
pub(crate) struct Outcome {
    pub(crate) word: String,
    pub(crate) words: Vec<String>,
    pub(crate) matches: Matches,
}

/// Expands `source` with `lexer`'s options.
pub(crate) fn run(lexer: &Lexer, source: &str, env: &dyn Env) -> Result<Outcome, String> {
    let chars: Vec<char> = source.chars().collect();
    let mut walk = Walk {
        lexer,
        env,
        // Go's text/scanner, which BuildKit reads words with, skips a leading byte-order mark.
        pos: usize::from(chars.first() == Some(&BOM)),
        chars,
        raw_escapes: lexer.raw_escapes,
        depth: 0,
        matches: Matches::default(),
    };
    let (word, words) = walk.until(None, lexer.raw_escapes)?;
    Ok(Outcome {
        word,
        words: words.finish(),
        matches: walk.matches,
    })
}

/// Go's `unicode.IsLetter`, as near as the standard library gets: letter-like numbers (`Nl`)
/// are left out, but the combining vowel signs that `Alphabetic` holds still count.
pub(crate) fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic() && !c.is_numeric())
}

/// Go's `unicode.IsDigit` (decimal digits), as near as the standard library gets: letter-like
/// numbers such as `Ⅻ` are left out, but superscripts, fractions and other `No` characters
/// still count.
pub(crate) fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric() && !c.is_alphabetic())
}

/// Parameters that POSIX reserves; a Dockerfile never sets them, but they still parse as names.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// The words of an expansion as they build up.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    /// Set by anything quoted or escaped, so that `""` still opens a word, which then only
    /// survives if something non-empty lands in it (BuildKit drops empty words).
    in_word: bool,
}

impl Words {
    /// A character that white space may split on (unquoted text or a variable's value).
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Walk<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    chars: Vec<char>,
    pos: usize,
    /// Whether escape characters are kept; `${v#p}`, `${v%p}` and `${v/p/r}` turn it on for
    /// their pattern so the pattern still sees `\*`, the other modifiers turn it off.
    raw_escapes: bool,
    depth: usize,
    matches: Matches,
}

impl Walk<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Expands up to `stop` (consumed) or the end of input when `stop` is `None`.
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Words), String> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn until_inner(&mut self, stop: Option<char>) -> Result<(String, Words), String> {
        let mut result = String::new();
        let mut words = Words::default();
        let escape = self.lexer.escape;

        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words));
            }
            match c {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    words.add_str(&value);
                }
                '\'' => {
                    let value = self.single_quoted()?;
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                '"' => {
                    let value = self.double_quoted()?;
                    result.push_str(&value);
                    words.add_raw_str(&value);
                }
                _ => {
                    self.pos += 1;
                    if c == escape {
                        if self.raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        // An escape at the very end escapes nothing and is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some(s) => Err(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok((result, words)),
        }
    }

    /// Everything up to the closing `'` literally; nothing escapes inside single quotes.
    fn single_quoted(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.pos += 1;
        if self.lexer.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Up to the closing `"`, expanding `$`; the escape character only escapes `"`, `$` and
    /// itself, before anything else it stays.
    fn double_quoted(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.pos += 1;
        if self.lexer.raw_quotes {
            result.push('"');
        }
        let escape = self.lexer.escape;
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                }
                Some(c) => {
                    self.pos += 1;
                    let mut out = c;
                    if c == escape {
                        // With raw escapes an escape before an ordinary character comes out
                        // twice; BuildKit does this too and heredoc bodies depend on it.
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            // Left for the loop to report the missing quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == escape => {
                                self.pos += 1;
                                out = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(out);
                }
            }
        }
    }

    /// A name after `$`: a run of digits (positional), one special character, or letters,
    /// digits and `_`. Empty when none of these follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if is_digit(c) => {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            Some(c) if is_special_param(c) => {
                self.pos += 1;
                name.push(c);
                return name;
            }
            _ => {}
        }
        while let Some(c) = self
            .peek()
            .filter(|&c| is_letter(c) || is_digit(c) || c == '_')
        {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matches.matched.insert(name.to_owned());
                Some(v.to_owned())
            }
            None => {
                self.matches.unmatched.insert(name.to_owned());
                None
            }
        }
    }

    /// The value of `name`; unset, `written` when the lexer skips unset variables, else empty.
    fn lookup_or(&mut self, name: &str, written: impl FnOnce() -> String) -> String {
        match self.lookup(name) {
            Some(v) => v,
            None if self.lexer.skip_unset_env => written(),
            None => String::new(),
        }
    }

    /// `$name` or `${…}`, the `$` being the next character.
    fn dollar(&mut self) -> Result<String, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("more than {MAX_DEPTH} nested substitutions"));
        }
        self.depth += 1;
        let out = self.dollar_inner();
        self.depth -= 1;
        out
    }

    fn dollar_inner(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup_or(&name, || format!("${name}")));
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(missing_brace()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return Err(missing_brace());
        };
        let mut modifier = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => Ok(self.lookup_or(&name, || format!("${{{name}}}"))),
            '/' => self.replace(&name),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if op == ':' {
                    null_is_unset = true;
                    // Whatever follows the colon is the operator, even `}` or nothing: the
                    // word is read first and a bad operator reported afterwards.
                    let Some(after) = self.next() else {
                        return Err(missing_brace());
                    };
                    op = after;
                    modifier.push(op);
                    // `${v:#p}` and `${v:%p}` mean nothing in POSIX; BuildKit rejects them
                    // since moby/buildkit#5146 rather than ignoring the colon.
                    if op == '#' || op == '%' {
                        return Err(unsupported(&modifier));
                    }
                }
                let raw = op == '#' || op == '%';
                let word = match self.until(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err(missing_brace()),
                    Err(e) => return Err(e),
                };
                let value = self.lookup(&name);
                if value.is_none() && self.lexer.skip_unset_env {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = null_is_unset && value.as_deref() == Some("");
                match op {
                    '-' => Ok(match value {
                        Some(v) if !empty => v,
                        _ => word,
                    }),
                    '+' => Ok(match value {
                        Some(_) if !empty => word,
                        _ => String::new(),
                    }),
                    '?' => match value {
                        None => Err(required(&name, &word, "is not allowed to be unset")),
                        Some(_) if empty => {
                            Err(required(&name, &word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        let mut pat: Vec<char> = word.chars().collect();
                        // Doubling is read from the expanded word, as BuildKit does.
                        let greedy = pat.first() == Some(&op);
                        if greedy {
                            pat.remove(0);
                        }
                        let value: Vec<char> = value.chars().collect();
                        let trimmed = if op == '%' {
                            pattern::trim_suffix(&pat, &value, greedy)
                        } else {
                            pattern::trim_prefix(&pat, &value, greedy)
                        };
                        trimmed.map_err(|e| bad_pattern(&pat, &e))
                    }
                    _ => Err(unsupported(&modifier)),
                }
            }
            _ => Err(unsupported(&modifier)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after the first `/`.
    fn replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pat = match self.until(Some('/'), true) {
            Ok((p, _)) => p,
            Err(_) if self.peek().is_none() => {
                return Err("syntax error: missing '/' in ${}".into())
            }
            Err(e) => return Err(e),
        };
        let replacement = match self.until(Some('}'), true) {
            Ok((r, _)) => r,
            Err(_) if self.peek().is_none() => return Err(missing_brace()),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset_env {
            // BuildKit writes `//` back as a single `/`.
            return Ok(format!("${{{name}/{pat}/{replacement}}}"));
        }
        let value: Vec<char> = value.unwrap_or_default().chars().collect();
        let pat: Vec<char> = pat.chars().collect();
        pattern::replace(&pat, &value, &replacement, all).map_err(|e| bad_pattern(&pat, &e))
    }
}

fn missing_brace() -> String {
    "syntax error: missing '}'".into()
}

fn unsupported(modifier: &str) -> String {
    format!("unsupported modifier ({modifier}) in substitution")
}

fn required(name: &str, word: &str, default: &str) -> String {
    let message = if word.is_empty() { default } else { word };
    format!("{name}: {message}")
}

fn bad_pattern(pat: &[char], err: &str) -> String {
    let pat: String = pat.iter().collect();
    format!("invalid pattern ({pat}) in substitution: {err}")
}
