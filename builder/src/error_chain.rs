//! An error and its causes as the CLI prints them: a leaf every module may use without
//! depending on the crate's [`crate::Error`], which gathers them all.

/// An error and its causes on one line, `: `-separated, as the CLI prints them. Every cause is
/// printed, once: no error names its source in its own message.
pub fn chain_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
