//! The Prometheus text exposition format (version 0.0.4), the one gitlab-runner serves:
//! a `# HELP` and a `# TYPE` line per family, then its samples.

use std::fmt::Write;

/// Accumulates metric families as exposition text.
#[derive(Debug, Default)]
pub(super) struct Text {
    out: String,
}

impl Text {
    /// Starts the family `name` of `kind` (`counter`, `gauge`, `histogram`).
    pub(super) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the family last started (or of its `_bucket`/`_sum`/`_count`).
    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// The text.
    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str(r"\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str(r"\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes backslash and newline only.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

/// Go's formatting of the special values, which Prometheus parses; finite values as
/// Rust prints them (integers without a fraction, never an exponent).
pub(super) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_labels_and_help() {
        let mut t = Text::default();
        t.family("m", "gauge", "a \\ b\nc");
        t.sample("m", &[("a", "q\"b\\s\nn"), ("b", "x")], 1.5);
        t.sample("m", &[], f64::INFINITY);
        assert_eq!(
            t.finish(),
            "# HELP m a \\\\ b\\nc\n# TYPE m gauge\nm{a=\"q\\\"b\\\\s\\nn\",b=\"x\"} 1.5\nm +Inf\n"
        );
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }
}
