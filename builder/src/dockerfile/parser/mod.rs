//! Dockerfile text → syntax tree, following BuildKit's parser: parser directives, the escape
//! character, line continuations, heredocs, and per-instruction argument forms.

mod args;
mod directives;
mod dump;
mod heredoc;
mod json;
mod known;
mod lines;
mod split;
#[cfg(test)]
mod tests;

pub use dump::{dump, dump_all, go_quote, go_quote_rune};
pub use known::{suggest, KNOWN_INSTRUCTIONS};

use args::{form_of, parse_args, Form};
use directives::DirectiveState;
use lines::{
    is_comment, is_empty_continuation, physical_lines, strip_comment, trim_continuation,
    trim_newline, MAX_LINE,
};
use split::split_command;

/// One instruction of a Dockerfile as the parser understood it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The instruction keyword, lower-cased (`from`, `run`, `onbuild`, ...).
    pub keyword: String,
    /// The arguments, after the instruction's own argument parser (JSON array, name/value pairs, ...).
    ///
    /// As in BuildKit's tree: ENV and LABEL give `key, value, separator` triples (separator `=`
    /// for `k=v`, empty for the legacy `ENV k v`; quotes and escapes stay in the value), ARG
    /// gives its words, HEALTHCHECK gives the type word (`CMD`, `NONE`) then the command, shell
    /// forms give the whole rest as one argument, ADD/COPY/VOLUME/FROM/EXPOSE split on white
    /// space. For keywords BuildKit does not know, the white-space separated words.
    pub args: Vec<String>,
    /// ONBUILD's trigger instruction (then `args` is empty).
    pub sub: Option<Box<Node>>,
    /// Flags (`--from=builder`) in order, with quotes removed and `\` escapes applied.
    pub flags: Vec<String>,
    /// True when the arguments were given in exec (JSON) form.
    pub json: bool,
    /// Heredocs attached to this instruction, in order. For ONBUILD they are on both the
    /// ONBUILD node (as BuildKit has them) and its [`Node::sub`].
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text as written, continuation lines joined (without the escapes).
    pub original: String,
    /// First line (1-based) of the instruction in the file.
    pub start_line: usize,
    /// Last line (1-based) of the instruction, heredoc bodies included.
    pub end_line: usize,
    /// Comment lines directly above the instruction, without the `#`.
    pub prev_comment: Vec<String>,
}

/// A heredoc body attached to an instruction (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heredoc {
    /// The delimiter word, without quotes.
    pub name: String,
    /// The body, every line ending in `\n` (leading tabs removed for `<<-`). Line endings are
    /// kept as written, so a CRLF file gives `\r\n`.
    pub content: String,
    /// False when the delimiter was quoted: then the body is not expanded.
    pub expand: bool,
    /// True for `<<-`: leading tabs were removed.
    pub chomp: bool,
}

/// What parser directives at the top of the file said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directives {
    /// `# syntax=` value.
    pub syntax: Option<String>,
    /// `# escape=` value (the escape character in force is [`Parsed::escape`]).
    pub escape: Option<char>,
    /// `# check=` value.
    pub check: Option<String>,
}

/// A non-fatal finding of the parser (BuildKit prints these as warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Line (1-based) the warning is about.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The instructions in file order.
    pub nodes: Vec<Node>,
    /// The escape character in force (`\` unless a directive changed it).
    pub escape: char,
    /// The parser directives found.
    pub directives: Directives,
    /// Warnings (empty continuation lines, ...).
    pub warnings: Vec<Warning>,
}

/// A Dockerfile the parser rejects; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct ParseError {
    /// Line (1-based) where the problem is.
    pub line: usize,
    /// What is wrong, for a person.
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line: line.max(1),
        message: message.into(),
    }
}

/// Builds the node for one logical line (BuildKit's `newNodeFromLine`), without line numbers.
fn node_from_line(line: &str, escape: char, comments: Vec<String>) -> Result<Node, String> {
    let split = split_command(line);
    let form = form_of(&split.keyword);
    let mut node = Node {
        original: line.to_string(),
        prev_comment: comments,
        ..Node::default()
    };
    if form == Some(Form::SubCommand) {
        if !split.rest.is_empty() {
            node.sub = Some(Box::new(node_from_line(&split.rest, escape, Vec::new())?));
        }
    } else {
        let parsed = parse_args(form, &split.rest, escape)?;
        node.args = parsed.args;
        node.json = parsed.json;
    }
    node.keyword = split.keyword;
    node.flags = split.flags;
    Ok(node)
}

/// BuildKit's `canContainHeredoc`: RUN, COPY and ADD in shell form, also as ONBUILD triggers.
fn can_contain_heredoc(node: &Node) -> bool {
    let target = match &node.sub {
        Some(sub) if node.keyword == "onbuild" => sub,
        _ => node,
    };
    matches!(target.keyword.as_str(), "run" | "copy" | "add") && !target.json
}

fn set_lines(node: &mut Node, start: usize, end: usize) {
    node.start_line = start;
    node.end_line = end;
    if let Some(sub) = node.sub.as_deref_mut() {
        set_lines(sub, start, end);
    }
}

/// Walks physical lines, tracking the 1-based number of the last line consumed.
struct Reader<'a> {
    lines: Vec<&'a str>,
    next: usize,
}

impl<'a> Reader<'a> {
    fn next_line(&mut self) -> Result<Option<&'a str>, ParseError> {
        let Some(line) = self.lines.get(self.next).copied() else {
            return Ok(None);
        };
        self.next += 1;
        if line.len() > MAX_LINE {
            return Err(error(
                self.next,
                format!(
                    "dockerfile line greater than max allowed size of {}",
                    MAX_LINE - 1
                ),
            ));
        }
        Ok(Some(line))
    }

    fn line_no(&self) -> usize {
        self.next
    }
}

/// Parses Dockerfile text the way BuildKit's `parser.Parse` does.
///
/// Errors: a repeated or invalid parser directive, an instruction whose arguments cannot be
/// parsed (`ENV name` without value, a JSON array holding non-strings), an unterminated
/// heredoc, a physical line longer than 64 KiB, and a file without instructions.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut reader = Reader {
        lines: physical_lines(text),
        next: 0,
    };
    let mut dirs = DirectiveState::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();

    while let Some(mut raw) = reader.next_line()? {
        if reader.line_no() == 1 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        if is_comment(raw) {
            let comment = trim_newline(raw).trim_start();
            let comment = comment.get(1..).unwrap_or("").trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        let first = trim_newline(raw).trim_start();
        dirs.observe(first)
            .map_err(|m| error(reader.line_no(), m))?;
        let start = reader.line_no();
        let escape = dirs.escape;
        let (mut line, mut end_of_line) = trim_continuation(strip_comment(first), escape);
        if end_of_line && line.is_empty() {
            continue;
        }

        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = reader.next_line()? else {
                break;
            };
            let cont = trim_newline(raw);
            dirs.observe(cont).map_err(|m| error(reader.line_no(), m))?;
            if is_comment(raw) {
                continue;
            }
            let cont = strip_comment(cont);
            if is_empty_continuation(cont) {
                empty_continuation = true;
                continue;
            }
            let (part, eol) = trim_continuation(cont, escape);
            line.push_str(&part);
            end_of_line = eol;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start,
                message: format!(
                    "Empty continuation line found in: {line} (empty continuation lines will become errors in a future release)"
                ),
            });
        }

        let mut node = node_from_line(&line, escape, std::mem::take(&mut comments))
            .map_err(|m| error(start, m))?;

        if can_contain_heredoc(&node) && line.contains("<<") {
            let docs = heredoc::heredocs_from_line(&line).map_err(|m| error(start, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while let Some(body) = reader.next_line()? {
                    let mut candidate = trim_newline(body);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body);
                }
                if !terminated {
                    return Err(error(
                        start,
                        format!(
                            "unterminated heredoc <<{} (no line {} found)",
                            doc.name, doc.name
                        ),
                    ));
                }
                if doc.chomp {
                    doc.content = heredoc::chomp(&doc.content);
                }
                node.heredocs.push(doc);
            }
            if let Some(sub) = node.sub.as_deref_mut() {
                sub.heredocs = node.heredocs.clone();
            }
        }

        set_lines(&mut node, start, reader.line_no());
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(error(reader.line_no(), "file with no instructions"));
    }
    Ok(Parsed {
        nodes,
        escape: dirs.escape,
        directives: dirs.found,
        warnings,
    })
}
