//! The exec-form check: Go's `json.Unmarshal` into `[]any`, then "strings only".

/// Why text is not a usable JSON string array.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON, or a number Go cannot hold: the caller falls back to the shell form.
    NotJson,
    /// Valid JSON array with a non-string element: BuildKit rejects the instruction.
    NotStringArray,
}

/// Go's `encoding/json` refuses documents nested deeper than this.
const MAX_DEPTH: usize = 10_000;

struct Cursor<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(JsonError::NotJson)
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.text.get(at..at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }

    /// Reads a string starting at `"`; returns its decoded value.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..).ok_or(JsonError::NotJson)?;
            let c = rest.chars().next().ok_or(JsonError::NotJson)?;
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                c if (c as u32) < 0x20 => return Err(JsonError::NotJson),
                '\\' => {
                    let esc = self
                        .s
                        .get(self.pos + 1)
                        .copied()
                        .ok_or(JsonError::NotJson)?;
                    self.pos += 2;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4(self.pos).ok_or(JsonError::NotJson)?;
                            self.pos += 4;
                            out.push(self.surrogate_aware(hi));
                        }
                        _ => return Err(JsonError::NotJson),
                    }
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// Go pairs a high surrogate with a directly following `\uDC00`-`\uDFFF`; anything else
    /// unpaired becomes U+FFFD.
    fn surrogate_aware(&mut self, hi: u32) -> char {
        if !(0xD800..0xE000).contains(&hi) {
            return char::from_u32(hi).unwrap_or('\u{FFFD}');
        }
        if (0xD800..0xDC00).contains(&hi) && self.s.get(self.pos..self.pos + 2) == Some(b"\\u") {
            if let Some(lo) = self.hex4(self.pos + 2) {
                if (0xDC00..0xE000).contains(&lo) {
                    self.pos += 6;
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return char::from_u32(c).unwrap_or('\u{FFFD}');
                }
            }
        }
        '\u{FFFD}'
    }

    /// Reads a number; `Ok(false)` when it is valid JSON but does not fit a float64.
    fn number(&mut self) -> Result<bool, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::NotJson),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::NotJson);
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::NotJson);
            }
            self.digits();
        }
        let text = self.text.get(start..self.pos).unwrap_or("");
        Ok(text.parse::<f64>().map(f64::is_finite).unwrap_or(false))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

/// What one top-level element turned out to be.
enum Element {
    Str(String),
    Other,
}

#[derive(PartialEq, Clone, Copy)]
enum State {
    /// Right after `[` or `{`: a value, a key, or the closing bracket.
    Open,
    /// After `,` or `:`: a value (or key) must follow.
    Value,
    /// After a value: `,` or the closing bracket.
    After,
}

/// Parses `text` (leading white space allowed) as a JSON array of strings, like BuildKit's
/// `parseJSON`. Nesting is tracked on an explicit stack so deep input cannot overflow ours.
pub(crate) fn parse_string_array(text: &str) -> Result<Vec<String>, JsonError> {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let mut cur = Cursor {
        s: text.as_bytes(),
        text,
        pos: 1,
    };
    let mut elements = Vec::new();
    let mut number_overflow = false;
    // One entry per open container: true for an object, false for an array.
    let mut stack: Vec<bool> = vec![false];
    let mut state = State::Open;
    while let Some(&in_object) = stack.last() {
        cur.skip_ws();
        let closing = if in_object { b'}' } else { b']' };
        if state != State::Value && cur.peek() == Some(closing) {
            cur.pos += 1;
            stack.pop();
            state = State::After;
            continue;
        }
        if state == State::After {
            if cur.peek() != Some(b',') {
                return Err(JsonError::NotJson);
            }
            cur.pos += 1;
            state = State::Value;
            continue;
        }
        if in_object {
            if cur.peek() != Some(b'"') {
                return Err(JsonError::NotJson);
            }
            cur.string()?;
            cur.skip_ws();
            if cur.peek() != Some(b':') {
                return Err(JsonError::NotJson);
            }
            cur.pos += 1;
            cur.skip_ws();
        }
        let top_level = stack.len() == 1;
        state = State::After;
        match cur.peek() {
            Some(b'"') => {
                let s = cur.string()?;
                if top_level {
                    elements.push(Element::Str(s));
                }
                continue;
            }
            Some(open @ (b'[' | b'{')) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(JsonError::NotJson);
                }
                cur.pos += 1;
                stack.push(open == b'{');
                state = State::Open;
            }
            Some(b't') => cur.literal("true")?,
            Some(b'f') => cur.literal("false")?,
            Some(b'n') => cur.literal("null")?,
            Some(b'-' | b'0'..=b'9') => number_overflow |= !cur.number()?,
            _ => return Err(JsonError::NotJson),
        }
        if top_level {
            elements.push(Element::Other);
        }
    }
    cur.skip_ws();
    if cur.pos != cur.s.len() || number_overflow {
        return Err(JsonError::NotJson);
    }
    elements
        .into_iter()
        .map(|e| match e {
            Element::Str(s) => Ok(s),
            Element::Other => Err(JsonError::NotStringArray),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        assert_eq!(
            parse_string_array(" [ \"a\" , \"b\" ] "),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_string_array("[]"), Ok(vec![]));
        assert_eq!(
            parse_string_array("[\"\\u00e9\\ud83d\\ude00\\ud800\"]"),
            Ok(vec!["é😀\u{FFFD}".into()])
        );
        assert_eq!(parse_string_array("[\"a\",]"), Err(JsonError::NotJson));
        assert_eq!(parse_string_array("[\"a\"] x"), Err(JsonError::NotJson));
        assert_eq!(parse_string_array("['a']"), Err(JsonError::NotJson));
        assert_eq!(
            parse_string_array("[\"a\", [\"b\"]]"),
            Err(JsonError::NotStringArray)
        );
        assert_eq!(
            parse_string_array("[1, {\"a\": [true, null, -1.5e3]}]"),
            Err(JsonError::NotStringArray)
        );
        assert_eq!(parse_string_array("[1e400]"), Err(JsonError::NotJson));
        assert_eq!(parse_string_array("[{\"a\" 1}]"), Err(JsonError::NotJson));
        assert_eq!(parse_string_array("[01]"), Err(JsonError::NotJson));
        assert_eq!(
            parse_string_array(&"[".repeat(20000)),
            Err(JsonError::NotJson)
        );
        assert_eq!(parse_string_array("[\"a\tb\"]"), Err(JsonError::NotJson));
    }
}
