//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) in RUN/COPY/ADD lines.

use super::shellwords::process_words;
use super::Heredoc;

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
