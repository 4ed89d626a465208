//! The part of BuildKit's shell lexer (`shell.Lex.ProcessWords` with `SkipUnsetEnv` and an
//! empty environment) that heredoc detection depends on: word splitting, quotes, escapes, and
//! which `$`/`${...}` forms are syntax errors. Variables are left as written.

/// Accumulates words the way the lexer's `wordsStruct` does.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
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

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
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

/// A syntax error of the lexer (unterminated quote, bad `${...}`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LexError;

/// Nested `${...}` deeper than this is refused: Go's growable stacks cope with any depth,
/// ours would overflow.
const MAX_NESTING: usize = 500;

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    depth: usize,
}

impl Lexer {
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

    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '\'' => {
                    let tmp = self.single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' => {
                    let tmp = self.double_quote(raw_escapes)?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\\' => {
                    self.pos += 1;
                    if raw_escapes {
                        words.add_raw_char('\\');
                        result.push('\\');
                    }
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                }
                c => {
                    self.pos += 1;
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        if stop.is_some() {
            return Err(LexError);
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        let mut out = String::new();
        if self.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next().ok_or(LexError)? {
                '\'' => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
    }

    fn double_quote(&mut self, raw_escapes: bool) -> Result<String, LexError> {
        self.pos += 1;
        let mut out = String::new();
        if self.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek().ok_or(LexError)? {
                '"' => {
                    self.pos += 1;
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    let mut c = self.next().ok_or(LexError)?;
                    if c == '\\' {
                        if raw_escapes {
                            out.push('\\');
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | '\\') => c = self.next().ok_or(LexError)?,
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(d) = self.peek().filter(|d| d.is_numeric()) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// `$name` and `${...}` with every variable unset: the text comes back as written (after
    /// the lexer's own processing of nested words), or an error where BuildKit errors.
    fn dollar(&mut self) -> Result<String, LexError> {
        if self.depth >= MAX_NESTING {
            return Err(LexError);
        }
        self.depth += 1;
        let result = self.dollar_inner();
        self.depth -= 1;
        result
    }

    fn dollar_inner(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.pos += 1;
        match self.peek() {
            None | Some('{' | '}' | ':') => return Err(LexError),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut c) = self.next() else {
            return Err(LexError);
        };
        let mut modifier = c.to_string();
        match c {
            '}' => Ok(format!("${{{name}}}")),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if c == ':' {
                    // BuildKit reads the next character as the modifier whatever it is.
                    c = self.next().unwrap_or('\u{FFFD}');
                    modifier.push(c);
                }
                let (word, _) = self.stop_on(Some('}'), c == '#' || c == '%')?;
                Ok(format!("${{{name}{modifier}{word}}}"))
            }
            '/' => {
                if self.peek() == Some('/') {
                    self.pos += 1;
                }
                let (pattern, _) = self.stop_on(Some('/'), true)?;
                let (replacement, _) = self.stop_on(Some('}'), true)?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            _ => Err(LexError),
        }
    }
}

/// Splits `text` into words; `raw_quotes`/`raw_escapes` keep quotes/escapes in the words.
pub(crate) fn process_words(
    text: &str,
    raw_quotes: bool,
    raw_escapes: bool,
) -> Result<Vec<String>, LexError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        raw_quotes,
        depth: 0,
    };
    lexer.stop_on(None, raw_escapes).map(|(_, words)| words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words() {
        assert_eq!(
            process_words("a 'b c' \"d\"", false, false),
            Ok(w(&["a", "b c", "d"]))
        );
        assert_eq!(
            process_words("a 'b c'", true, false),
            Ok(w(&["a", "'b c'"]))
        );
        assert_eq!(process_words("a\\ b", false, false), Ok(w(&["a b"])));
        assert_eq!(process_words("a\\ b", true, true), Ok(w(&["a\\ b"])));
        assert_eq!(
            process_words("$A ${B} ${C:-x y}", false, false),
            Ok(w(&["$A", "${B}", "${C:-x", "y}"]))
        );
        assert_eq!(process_words("'a", false, false), Err(LexError));
        assert_eq!(process_words("\"a", false, false), Err(LexError));
        assert_eq!(process_words("${}", false, false), Err(LexError));
        assert_eq!(process_words("${a", false, false), Err(LexError));
        assert_eq!(process_words("${a!}", false, false), Err(LexError));
        assert_eq!(process_words("''", false, false), Ok(vec![]));
    }
}
