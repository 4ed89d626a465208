//! The Dockerfile front end: text → syntax tree → typed instructions, as exact as BuildKit's.

pub mod expand;
pub mod instructions;
pub mod parser;
