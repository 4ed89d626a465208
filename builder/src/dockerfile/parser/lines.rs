//! Physical-line handling: splitting, comment detection and the line-continuation rule.

/// BuildKit reads with a `bufio.Scanner` whose token limit is 64 KiB including the newline.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Splits text into physical lines, each keeping its `\n` (BuildKit's `scanLines`).
pub(crate) fn physical_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Removes every trailing `\r` and `\n` (Go's `bytes.TrimRight(src, "\r\n")`).
pub(crate) fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// True when the line, ignoring leading white space, starts with `#`.
pub(crate) fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// True when nothing but white space is left of a continuation line.
pub(crate) fn is_empty_continuation(processed: &str) -> bool {
    trim_newline(processed).trim_start().is_empty()
}

/// Blanks a line that is a comment; BuildKit only does this when `#` is the first character
/// of the (possibly left-trimmed) line.
pub(crate) fn strip_comment(line: &str) -> &str {
    if line.starts_with('#') {
        ""
    } else {
        line
    }
}

/// Applies BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` (E the escape character):
/// returns the line without the escape and whether the logical line ends here.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        // An escaped escape character ("foo \\") is a literal, not a continuation.
        Some(before) if !before.is_empty() && before.ends_with(escape) => (line.to_string(), true),
        Some(before) => (before.to_string(), false),
        None => (line.to_string(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ".into(), false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ".into(), false));
        assert_eq!(trim_continuation("\\", '\\'), ("".into(), false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\".into(), true));
        assert_eq!(trim_continuation("a `", '`'), ("a ".into(), false));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\".into(), true));
    }
}
