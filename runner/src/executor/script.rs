//! The bash script a step runs as.

/// Quotes `s` for bash so it is one word with no expansion.
pub fn bash_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A bash script running `lines` in `dir` like gitlab-runner's bash shell: each line is
/// echoed as `$ line` (green) before it runs, and the first failing line ends the script
/// with its exit code (`set -eo pipefail`).
pub fn build_script(dir: &str, lines: &[String]) -> String {
    let mut s = String::from("set -eo pipefail\nset +o noclobber\n");
    // The checkout makes the directory; a job with GIT_STRATEGY=none in a fresh pod has none.
    s.push_str(&format!("mkdir -p {0}\ncd {0}\n", bash_quote(dir)));
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let shown = format!("\x1b[32;1m$ {line}\x1b[0;m");
        s.push_str(&format!("printf '%s\\n' {}\n", bash_quote(&shown)));
        s.push_str(line);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(bash_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn script_echoes_then_runs() {
        let s = build_script("/b", &["echo 'hi'".into(), " ".into()]);
        assert!(s.starts_with("set -eo pipefail\n"));
        assert!(s.contains("mkdir -p '/b'\ncd '/b'\n"));
        assert!(s.contains("printf '%s\\n' '\x1b[32;1m$ echo '\\''hi'\\''\x1b[0;m'\necho 'hi'\n"));
    }
}
