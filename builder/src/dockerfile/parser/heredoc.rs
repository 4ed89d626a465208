//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) in RUN/COPY/ADD lines.

use super::Heredoc;

/// How the shell-like word splitter treats quotes and escapes.
#[derive(Clone, Copy)]
struct Raw {
    quotes: bool,
    escapes: bool,
}

/// Splits a line into shell words the way BuildKit's lexer does for heredoc detection
/// (`$` is left alone: no environment is in scope). `None` on an unterminated quote.
fn shell_words(line: &str, raw: Raw) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                if raw.quotes {
                    word.push('\'');
                }
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
                if raw.quotes {
                    word.push('\'');
                }
            }
            '"' => {
                in_word = true;
                if raw.quotes {
                    word.push('"');
                }
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.peek().copied() {
                            Some(next @ ('"' | '$' | '\\')) => {
                                chars.next();
                                if raw.escapes {
                                    word.push('\\');
                                }
                                word.push(next);
                            }
                            _ => word.push('\\'),
                        },
                        c => word.push(c),
                    }
                }
                if raw.quotes {
                    word.push('"');
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(next) => {
                        if raw.escapes {
                            word.push('\\');
                        }
                        word.push(next);
                    }
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
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
    let unterminated = || format!("unterminated quote in heredoc delimiter {delim}");
    let plain = shell_words(
        delim,
        Raw {
            quotes: false,
            escapes: false,
        },
    )
    .ok_or_else(unterminated)?;
    let [name] = plain.as_slice() else {
        return Ok(None);
    };
    let quoted = shell_words(
        delim,
        Raw {
            quotes: true,
            escapes: false,
        },
    )
    .ok_or_else(unterminated)?;
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
    let words = shell_words(
        line,
        Raw {
            quotes: true,
            escapes: true,
        },
    )
    .unwrap_or_default();
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
