//! Word expansion exactly as BuildKit's shell lexer: quotes, escapes and `$var` forms.
//!
//! The behaviour follows BuildKit's `frontend/dockerfile/shell` lexer, quirks included, so
//! that a Dockerfile expands to the same words under kiln as under `docker build`:
//!
//! - `$name`, `${name}`; positional (`$1`, `${001}`) and special (`$@`, `$#`, …) parameters
//!   are never set; a `$` before anything else stays literal (`$.`).
//! - `${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`, `${v:?w}`, `${v?w}`, where `w` is expanded too.
//! - `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}`, `${v//p/r}` with `*`, `?` and `\`
//!   escapes in `p`; as in BuildKit there are no bracket expressions, `[` is literal.
//! - Single quotes keep everything; in double quotes the escape character only escapes `"`,
//!   `$` and itself; outside quotes it escapes any character and is dropped at the end.
//!
//! Errors read like BuildKit's, e.g. `failed to process "${X:?}": X: is not allowed to be unset`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::dockerfile::parser::go_quote;

mod lex;
mod pattern;
#[cfg(test)]
mod tests;

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, `None` when unset (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Ordered `NAME=value` pairs; the last definition of a name wins.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The slice impl above cannot be a `&dyn Env` itself (a slice is unsized), so the owning
/// vector delegates to it.
impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// A reference to any environment, notably `&[(String, String)]`, is one too.
impl<T: Env + ?Sized> Env for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// Which variables an expansion read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// Names that were set when read.
    pub matched: BTreeSet<String>,
    /// Names that were read while unset.
    pub unmatched: BTreeSet<String>,
}

/// An expansion that fails (unterminated quote, bad substitution, `${v:?msg}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What is wrong, for a person.
    pub message: String,
}

/// BuildKit's shell lexer with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character (`\` or a backtick).
    pub escape: char,
    /// Keep quote characters in the output (heredoc bodies).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (heredoc bodies).
    pub raw_escapes: bool,
    /// Leave unset variables as written (`$A`, `${A:-x}`) instead of expanding them, as
    /// BuildKit's `SkipUnsetEnv` does for heredoc detection.
    pub skip_unset_env: bool,
}

impl Lexer {
    /// A lexer with the given escape character and no raw options.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` into one word (white space from variables kept).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        self.process_word_with_matches(word, env).map(|(w, _)| w)
    }

    /// Expands `word` into one word and says which variables it read.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<(String, Matches), ExpandError> {
        let out = self.run(word, env)?;
        Ok((out.word, out.matches))
    }

    /// Expands `word` and splits it into words on unquoted white space.
    ///
    /// White space inside variable values splits too; quoted or escaped white space does not.
    /// Empty words (such as a lone `""`) are dropped, as BuildKit does.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Ok(self.run(word, env)?.words)
    }

    fn run(&self, word: &str, env: &dyn Env) -> Result<lex::Outcome, ExpandError> {
        // BuildKit names the whole word in every error, Go-quoted.
        lex::run(self, word, env).map_err(|e| ExpandError {
            message: format!("failed to process {}: {e}", go_quote(word)),
        })
    }
}
