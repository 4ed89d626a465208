//! What a build prints: one line per step, RUN output indented under its step, a summary at the
//! end. In CI (output not a terminal) each line starts with the time since the build began, so a
//! job log shows where the time went.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Lines of a failing command's output repeated in the error.
const TAIL_LINES: usize = 12;

/// Where build progress goes.
#[derive(Clone)]
pub struct Progress {
    start: Instant,
    timestamps: bool,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Progress {
    /// Progress on standard error, timestamped when it is not a terminal.
    pub fn stderr() -> Self {
        let tty = std::io::stderr().is_terminal();
        Progress::to(Box::new(std::io::stderr()), !tty)
    }

    /// Progress into `out`.
    pub fn to(out: Box<dyn Write + Send>, timestamps: bool) -> Self {
        Progress {
            start: Instant::now(),
            timestamps,
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// Prints one line.
    pub fn line(&self, text: &str) {
        let mut out = self.out.lock().expect("progress output");
        // Progress is best effort: a closed stderr must not fail the build.
        let _ = if self.timestamps {
            writeln!(out, "[{:>7.2}s] {text}", self.start.elapsed().as_secs_f64())
        } else {
            writeln!(out, "{text}")
        };
    }

    /// A writer for a command's output: whole lines, prefixed with `prefix`, the last ones kept.
    pub fn command_output(&self, prefix: String) -> CommandOutput {
        CommandOutput {
            progress: self.clone(),
            prefix,
            partial: Vec::new(),
            tail: VecDeque::new(),
        }
    }
}

/// A RUN step's output on its way to the progress lines.
pub struct CommandOutput {
    progress: Progress,
    prefix: String,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl CommandOutput {
    fn emit(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        self.progress.line(&format!("{}{text}", self.prefix));
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_string());
    }

    /// Flushes a last unterminated line and returns the last lines seen.
    pub fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.emit(&rest);
        }
        self.tail.into_iter().collect()
    }
}

impl Write for CommandOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.emit(&line[..line.len() - 1]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_is_split_into_prefixed_lines_and_the_tail_is_kept() {
        let sink = Sink::default();
        let p = Progress::to(Box::new(sink.clone()), false);
        let mut o = p.command_output("#3 ".into());
        o.write_all(b"one\ntw").unwrap();
        o.write_all(b"o\r\n").unwrap();
        for i in 0..20 {
            writeln!(o, "n{i}").unwrap();
        }
        o.write_all(b"last").unwrap();
        let tail = o.finish();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("#3 one\n#3 two\n#3 n0\n"), "{text}");
        assert!(text.ends_with("#3 n19\n#3 last\n"));
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "last");
        assert_eq!(tail[0], "n9");
    }

    #[test]
    fn timestamps_prefix_lines_in_ci() {
        let sink = Sink::default();
        let p = Progress::to(Box::new(sink.clone()), true);
        p.line("hello");
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with('[') && text.ends_with("s] hello\n"),
            "{text}"
        );
    }
}
