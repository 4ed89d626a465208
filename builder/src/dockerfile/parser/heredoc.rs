//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) in RUN/COPY/ADD lines.

use std::collections::BTreeMap;

use super::Heredoc;
use crate::dockerfile::expand::{ExpandError, Lexer};

/// Splits `text` into words as BuildKit's heredoc detection does: its shell lexer with `\` as
/// the escape, an empty environment and `SkipUnsetEnv`, so variables stay as written;
/// `raw_quotes`/`raw_escapes` keep quotes/escapes in the words.
fn process_words(
    text: &str,
    raw_quotes: bool,
    raw_escapes: bool,
) -> Result<Vec<String>, ExpandError> {
    let lexer = Lexer {
        raw_quotes,
        raw_escapes,
        skip_unset_env: true,
        ..Lexer::new('\\')
    };
    lexer.process_words(text, &BTreeMap::new())
}

/// Matches `^(\d*)<<(-?)([^<]*)$`; returns (chomp, delimiter text) when the word is a marker.
fn marker(word: &str) -> Option<(bool, &str)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    Some((chomp, rest))
}

/// Parses one word as a heredoc marker (BuildKit's `ParseHeredoc`).
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let Some((chomp, delim)) = marker(word) else {
        return Ok(None);
    };
    let unterminated = || format!("invalid heredoc delimiter {delim}");
    let plain = process_words(delim, false, false).map_err(|_| unterminated())?;
    let [name] = plain.as_slice() else {
        return Ok(None);
    };
    let quoted = process_words(delim, true, false).map_err(|_| unterminated())?;
    if quoted.len() != plain.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {delim}"
        ));
    }
    let count = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    // Quotes that the lexer removed mean part of the delimiter was quoted: no expansion.
    let expand = quoted.first().map(|q| count(q)) == Some(count(name));
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand,
        chomp,
    }))
}

/// Every heredoc marker of an instruction line, in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    // BuildKit ignores lexing errors here: such a line simply has no heredocs.
    let words = process_words(line, true, true).unwrap_or_default();
    let mut docs = Vec::new();
    for word in &words {
        if let Some(doc) = parse_heredoc(word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Removes leading tabs from every line (`<<-`).
pub(crate) fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        heredocs_from_line(line)
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words() {
        let ok =
            |text, raw_quotes, raw_escapes| process_words(text, raw_quotes, raw_escapes).unwrap();
        assert_eq!(ok("a 'b c' \"d\"", false, false), w(&["a", "b c", "d"]));
        assert_eq!(ok("a 'b c'", true, false), w(&["a", "'b c'"]));
        assert_eq!(ok("a\\ b", false, false), w(&["a b"]));
        assert_eq!(ok("a\\ b", true, true), w(&["a\\ b"]));
        // Unset variables stay as written, whatever their form; `//` comes back as `/`.
        assert_eq!(
            ok(
                "$A ${B} ${C:-x y} ${D?} ${E:?m} ${F#p} ${G//p/r} $",
                false,
                false
            ),
            w(&["$A", "${B}", "${C:-x", "y}", "${D?}", "${E:?m}", "${F#p}", "${G/p/r}", "$"])
        );
        assert_eq!(ok("''", false, false), Vec::<String>::new());
        for bad in ["'a", "\"a", "${}", "${a", "${a!}", "${a:#p}", "${a:-x"] {
            assert!(process_words(bad, false, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn markers() {
        for ok in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
        ] {
            assert_eq!(parse_heredoc(ok).unwrap().unwrap().name, "EOF", "{ok}");
        }
        for bad in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(bad).is_err(), "{bad}");
        }
        for not in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF"] {
            assert_eq!(parse_heredoc(not).unwrap(), None, "{not}");
        }
        assert_eq!(names("RUN <<EOF <<EOF2"), vec!["EOF", "EOF2"]);
        assert_eq!(names("RUN 4<<EOF"), vec!["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert_eq!(chomp("\thello\n\t\tworld\n"), "hello\nworld\n");
    }
}
