//! The Dockerfile front end: text → syntax tree → typed instructions, as exact as BuildKit's.

mod error;
pub mod expand;
pub mod instructions;
pub mod parser;

pub use error::DockerfileError;
use instructions::Located;
use std::path::Path;

/// A Dockerfile read into typed instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character in force.
    pub escape: char,
    /// Parser directives.
    pub directives: parser::Directives,
    /// Instructions in file order.
    pub instructions: Vec<Located>,
    /// Non-fatal findings, with their lines.
    pub warnings: Vec<parser::Warning>,
}

/// Parses and checks Dockerfile `text`; errors name `file` and the line.
pub fn parse(text: &str, file: &Path) -> Result<Dockerfile, DockerfileError> {
    let located = |line: usize, message: String| DockerfileError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let parsed = parser::parse(text).map_err(|e| located(e.line, e.message))?;
    let instructions = parsed
        .nodes
        .iter()
        .map(|n| instructions::from_node(n).map_err(|m| located(n.start_line, m)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dockerfile {
        escape: parsed.escape,
        directives: parsed.directives,
        instructions,
        warnings: parsed.warnings,
    })
}
