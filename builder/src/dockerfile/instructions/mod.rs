//! Syntax tree → typed instructions with their flags.
