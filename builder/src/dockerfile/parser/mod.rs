//! Dockerfile text → syntax tree, following BuildKit's parser: parser directives, the escape
//! character, line continuations, heredocs, and per-instruction argument forms.

/// One instruction of a Dockerfile as the parser understood it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The instruction keyword, lower-cased (`from`, `run`, `onbuild`, ...).
    pub keyword: String,
    /// The arguments, after the instruction's own argument parser (JSON array, name/value pairs, ...).
    pub args: Vec<String>,
    /// ONBUILD's trigger instruction (then `args` is empty).
    pub sub: Option<Box<Node>>,
    /// Flags (`--from=builder`) as written, in order.
    pub flags: Vec<String>,
    /// True when the arguments were given in exec (JSON) form.
    pub json: bool,
    /// Heredocs attached to this instruction, in order.
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
    /// The body, every line ending in `\n` (leading tabs removed for `<<-`).
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

/// Parses Dockerfile text.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let _ = text;
    Err(ParseError {
        line: 1,
        message: "parser not written yet".into(),
    })
}
