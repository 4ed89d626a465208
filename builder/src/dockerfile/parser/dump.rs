//! BuildKit's `Node.Dump()` format, byte for byte.

use super::args::form_of;
use super::Node;

/// Go's `strconv.IsPrint`, approximated without Unicode category tables: control, format,
/// private-use, non-character and separator code points are not printable; unassigned code
/// points are treated as printable.
fn is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE;
    !(format || private || nonchar)
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    quote_with(s, '"')
}

/// Go's `strconv.QuoteRune`.
pub fn go_quote_rune(c: char) -> String {
    quote_with(c.encode_utf8(&mut [0; 4]), '\'')
}

/// `s` between `quote`s, escaped as Go's `strconv` quoting functions escape.
fn quote_with(s: &str, quote: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// One instruction as BuildKit's `Node.Dump()` prints it, e.g. `copy ["--from=a"] "x" "/y"`.
///
/// BuildKit drops the arguments of keywords it does not know and prints one empty string
/// instead; that is reproduced here although [`Node::args`] keeps the words.
pub fn dump(node: &Node) -> String {
    let mut out = node.keyword.clone();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(" [");
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    if let Some(sub) = &node.sub {
        out.push_str(" (");
        out.push_str(&dump(sub));
        out.push(')');
    } else if form_of(&node.keyword).is_none() {
        out.push_str(" \"\"");
    } else {
        for arg in &node.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
    }
    out.trim().to_string()
}

/// A whole file as BuildKit's root `Dump()` plus newline: one `(instruction)` per line.
pub fn dump_all(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        out.push('(');
        out.push_str(&dump(node));
        out.push_str(")\n");
    }
    let mut out = out.trim().to_string();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t\n\u{1b}\u{7f}"), r#""\x00\t\n\x1b\x7f""#);
        assert_eq!(go_quote("한국어 ☃"), "\"한국어 ☃\"");
        assert_eq!(go_quote("\u{a0}\u{85}\u{200b}"), r#""\u00a0\u0085\u200b""#);
        assert_eq!(go_quote("\u{F0000}"), r#""\U000f0000""#);
        assert_eq!(go_quote_rune('\''), r"'\''");
        assert_eq!(go_quote_rune('"'), "'\"'");
        assert_eq!(go_quote_rune('\u{3}'), r"'\x03'");
    }
}
