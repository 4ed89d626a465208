//! Per-instruction argument parsers (BuildKit's `line_parsers.go`).

use super::json::{parse_string_array, JsonError};
use super::split::{split_all_tokens, split_first_token};

/// What an argument parser produced for one instruction.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) args: Vec<String>,
    pub(crate) json: bool,
}

impl Args {
    fn plain(args: Vec<String>) -> Self {
        Args { args, json: false }
    }
}

/// The argument form an instruction keyword uses; `None` for keywords BuildKit does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    MaybeJson,
    MaybeJsonToList,
    NameVal(&'static str),
    NameOrNameVal,
    Whitespace,
    Str,
    Health,
    SubCommand,
}

/// BuildKit's dispatch table.
pub(crate) fn form_of(keyword: &str) -> Option<Form> {
    Some(match keyword {
        "add" | "copy" | "volume" => Form::MaybeJsonToList,
        "arg" => Form::NameOrNameVal,
        "cmd" | "entrypoint" | "run" | "shell" => Form::MaybeJson,
        "env" => Form::NameVal("ENV"),
        "label" => Form::NameVal("LABEL"),
        "expose" | "from" => Form::Whitespace,
        "healthcheck" => Form::Health,
        "maintainer" | "stopsignal" | "user" | "workdir" => Form::Str,
        "onbuild" => Form::SubCommand,
        _ => return None,
    })
}

#[derive(PartialEq, Clone, Copy)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// Splits on white space outside quotes, keeping quotes and escapes in the words
/// (BuildKit's `parseWords`).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if pos == n {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        let mut c = ch;
        if phase == Phase::Word {
            if c.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if c == '\'' || c == '"' {
                quote = c;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if c == escape {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                // Outside quotes the escape and the character it escapes both stay.
                word.push(c);
                pos += 1;
                c = chars.get(pos).copied().unwrap_or(escape);
            }
            word.push(c);
            pos += 1;
            continue;
        }
        if c == quote {
            phase = Phase::Word;
        }
        // Inside single quotes nothing can be escaped.
        if c == escape && quote != '\'' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(c);
            c = chars.get(pos).copied().unwrap_or(escape);
        }
        word.push(c);
        pos += 1;
    }
    words
}

/// ENV / LABEL: `key value` (legacy, separator "") or `k=v ...` (separator "="); each pair
/// becomes three arguments: key, value, separator.
fn name_val(rest: &str, key: &str, escape: char) -> Result<Args, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::default());
    };
    if !first.contains('=') {
        let (name, value) = split_first_token(rest);
        let Some(value) = value else {
            return Err(format!("{key} must have two arguments"));
        };
        return Ok(Args::plain(vec![
            name.to_string(),
            value.to_string(),
            String::new(),
        ]));
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                super::dump::go_quote(word)
            ));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Args::plain(args))
}

fn whitespace_delimited(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args::plain(split_all_tokens(rest))
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_string_array(rest) {
        Ok(args) => Ok(Args { args, json: true }),
        Err(JsonError::NotStringArray) => Err(NOT_STRINGS.to_string()),
        Err(JsonError::NotJson) => Ok(Args::plain(vec![rest.to_string()])),
    }
}

fn maybe_json_to_list(rest: &str) -> Result<Args, String> {
    match parse_string_array(rest) {
        Ok(args) => Ok(Args { args, json: true }),
        Err(JsonError::NotStringArray) => Err(NOT_STRINGS.to_string()),
        Err(JsonError::NotJson) => Ok(whitespace_delimited(rest)),
    }
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`, ...) then the command like CMD's arguments.
fn health(rest: &str) -> Result<Args, String> {
    // BuildKit looks at single bytes here, so only ASCII white space separates.
    let is_space = |c: char| c.is_ascii_whitespace() || c == '\x0b';
    let sep = rest.find(is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let (typ, tail) = rest.split_at(sep);
    let cmd = maybe_json(tail.trim_start_matches(is_space))?;
    let mut args = vec![typ.to_string()];
    args.extend(cmd.args);
    Ok(Args {
        args,
        json: cmd.json,
    })
}

/// Runs the argument parser of `form` (everything except ONBUILD, which the caller handles).
pub(crate) fn parse_args(form: Option<Form>, rest: &str, escape: char) -> Result<Args, String> {
    match form {
        Some(Form::MaybeJson) => maybe_json(rest),
        Some(Form::MaybeJsonToList) => maybe_json_to_list(rest),
        Some(Form::NameVal(key)) => name_val(rest, key, escape),
        Some(Form::NameOrNameVal) => Ok(Args::plain(parse_words(rest, escape))),
        Some(Form::Whitespace) => Ok(whitespace_delimited(rest)),
        Some(Form::Str) if rest.is_empty() => Ok(Args::default()),
        Some(Form::Str) => Ok(Args::plain(vec![rest.to_string()])),
        Some(Form::Health) => health(rest),
        // Unknown keywords: BuildKit ignores the arguments; kiln keeps the words for messages.
        Some(Form::SubCommand) | None => Ok(whitespace_delimited(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_like_buildkit() {
        assert_eq!(parse_words("foo bar", '\\'), w(&["foo", "bar"]));
        assert_eq!(parse_words("foo\\ bar", '\\'), w(&["foo\\ bar"]));
        assert_eq!(
            parse_words("foo bar 'abc xyz'", '\\'),
            w(&["foo", "bar", "'abc xyz'"])
        );
        assert_eq!(
            parse_words("föo bàr \"âbc xÿz\"", '\\'),
            w(&["föo", "bàr", "\"âbc xÿz\""])
        );
        assert_eq!(parse_words("a=''", '\\'), w(&["a=''"]));
    }
}
