//! Parser directives (`# syntax=`, `# escape=`, `# check=`) at the top of a Dockerfile.

use super::Directives;

/// Tracks directives while lines are read; directives stop at the first line that is not one.
#[derive(Debug)]
pub(crate) struct DirectiveState {
    done: bool,
    pub(crate) found: Directives,
    pub(crate) escape: char,
}

/// Go's RE2 `\s`: no vertical tab, no Unicode spaces.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` and returns (name, value).
pub(crate) fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let first = rest.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    if rest.is_empty() {
        return None;
    }
    let value = rest.trim_matches(is_re_space);
    if value.is_empty() {
        // `.+?` must take one character, so an all-space value keeps the last space.
        let last = rest.char_indices().last().map(|(i, _)| i).unwrap_or(0);
        return Some((name, &rest[last..]));
    }
    Some((name, value))
}

impl DirectiveState {
    /// Starts with no directives and `\` as escape character.
    pub(crate) fn new() -> Self {
        DirectiveState {
            done: false,
            found: Directives::default(),
            escape: '\\',
        }
    }

    /// Looks at one line (newline removed, left-trimmed for the first line of an instruction).
    pub(crate) fn observe(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        let seen = match key.as_str() {
            "syntax" => self.found.syntax.is_some(),
            "check" => self.found.check.is_some(),
            "escape" => self.found.escape.is_some(),
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        if seen {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "syntax" => self.found.syntax = Some(value.to_string()),
            "check" => self.found.check = Some(value.to_string()),
            _ => {
                let escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ))
                    }
                };
                self.escape = escape;
                self.found.escape = Some(escape);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_regex() {
        assert_eq!(match_directive("# escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("#syntax=docker/dockerfile:1  "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(match_directive("# escape=  "), Some(("escape", " ")));
        assert_eq!(match_directive("# escape="), None);
        assert_eq!(match_directive("# 1escape=x"), None);
        assert_eq!(match_directive("# hello world"), None);
    }
}
