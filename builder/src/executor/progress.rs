//! What a build prints: one line per step, RUN output indented under its step, a summary at the
//! end. In CI (output not a terminal) each line starts with the time since the build began, so a
//! job log shows where the time went. On a terminal (`--progress=tty`) the lines scroll above a
//! status line that shows the running step and the layers moving (see `status.rs`). What
//! is written for each event is `render.rs`'s pure function; this module feeds it the
//! build's events, a redraw clock and the counters.

use super::render::{Event, Renderer};
use super::status::INTERVAL;
use crate::transfer::Transfer;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// Lines of a failing command's output repeated in the error.
const TAIL_LINES: usize = 12;

/// BuildKit's `--progress`: what a build's output looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// `tty` on a terminal outside CI, `plain` otherwise.
    Auto,
    /// One line per event, timestamped when standard error is not a terminal.
    Plain,
    /// The lines scroll above a status line redrawn in place.
    Tty,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "plain" => Ok(ProgressMode::Plain),
            "tty" => Ok(ProgressMode::Tty),
            other => Err(format!("{other:?}: expected auto, plain or tty")),
        }
    }
}

impl ProgressMode {
    /// Plain or tty: `auto` is tty when the output is a terminal, `CI` is unset or empty and
    /// `TERM` is not `dumb` (a terminal that cannot erase a line).
    pub fn resolve(self, terminal: bool, ci: Option<&str>, term: Option<&str>) -> ProgressMode {
        match self {
            ProgressMode::Auto => {
                let in_ci = ci.is_some_and(|v| !v.is_empty());
                if terminal && !in_ci && term != Some("dumb") {
                    ProgressMode::Tty
                } else {
                    ProgressMode::Plain
                }
            }
            m => m,
        }
    }
}

/// The counters a build's work reports to; the status line reads them.
#[derive(Debug, Default)]
pub struct Transfers {
    /// Layers downloaded from registries.
    pub pull: Arc<Transfer>,
    /// Layers extracted on the machine (bytes of the blob read).
    pub extract: Arc<Transfer>,
    /// Layers written (bytes of tar fed to the compressor).
    pub compress: Arc<Transfer>,
    /// Layers pushed (a layer the registry had or mounted counts as sent).
    pub push: Arc<Transfer>,
}

impl Transfers {
    fn snapshots(&self) -> [crate::transfer::TransferSnapshot; 4] {
        [
            self.pull.snapshot(),
            self.extract.snapshot(),
            self.compress.snapshot(),
            self.push.snapshot(),
        ]
    }
}

/// Where build progress goes.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Shared>,
}

struct Shared {
    transfers: Transfers,
    screen: Mutex<Screen>,
    /// Dropped to stop the redrawing thread.
    ticker: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

/// The renderer and where its output goes.
struct Screen {
    out: Box<dyn Write + Send>,
    renderer: Renderer,
    next_step: u64,
    width: Width,
}

/// How wide the status line may be.
#[derive(Debug, Clone, Copy)]
enum Width {
    Fixed(usize),
    /// Standard error's terminal, asked at each redraw (it may be resized).
    Stderr,
}

impl Width {
    fn get(self) -> usize {
        match self {
            Width::Fixed(w) => w,
            Width::Stderr => rustix::termios::tcgetwinsize(std::io::stderr())
                .ok()
                .map(|w| w.ws_col as usize)
                .filter(|&w| w > 0)
                .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
                .unwrap_or(80),
        }
        // The last column would wrap the line on some terminals.
        .saturating_sub(1)
        .max(20)
    }
}

impl Screen {
    fn apply(&mut self, event: Event) {
        // Only a status line needs the width, and asking the terminal is a syscall.
        let width = if self.renderer.has_status() {
            self.width.get()
        } else {
            80
        };
        let bytes = self.renderer.apply(Instant::now(), event, width);
        if !bytes.is_empty() {
            // Progress is best effort: a closed stderr must not fail the build.
            let _ = self.out.write_all(bytes.as_bytes());
            let _ = self.out.flush();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let screen = self.screen.get_mut().unwrap_or_else(|e| e.into_inner());
        screen.apply(Event::Settle(self.transfers.snapshots()));
    }
}

impl Progress {
    /// Progress on standard error, as `--progress=auto` gives it.
    pub fn stderr() -> Self {
        Progress::for_stderr(ProgressMode::Auto)
    }

    /// Progress on standard error in `mode`.
    pub fn for_stderr(mode: ProgressMode) -> Self {
        let tty = std::io::stderr().is_terminal();
        let ci = std::env::var("CI").ok();
        let term = std::env::var("TERM").ok();
        match mode.resolve(tty, ci.as_deref(), term.as_deref()) {
            ProgressMode::Tty => Progress::new(
                Box::new(std::io::stderr()),
                Renderer::tty(Instant::now()),
                Width::Stderr,
            ),
            _ => Progress::to(Box::new(std::io::stderr()), !tty),
        }
    }

    /// Plain progress into `out`.
    pub fn to(out: Box<dyn Write + Send>, timestamps: bool) -> Self {
        let renderer = Renderer::plain(Instant::now(), timestamps);
        Progress::new(out, renderer, Width::Fixed(80))
    }

    /// Terminal progress into `out`, its status line at most `width` columns.
    pub fn tty(out: Box<dyn Write + Send>, width: usize) -> Self {
        Progress::new(out, Renderer::tty(Instant::now()), Width::Fixed(width))
    }

    fn new(out: Box<dyn Write + Send>, renderer: Renderer, width: Width) -> Self {
        let ticks = renderer.has_status();
        let shared = Arc::new(Shared {
            transfers: Transfers::default(),
            screen: Mutex::new(Screen {
                out,
                renderer,
                next_step: 0,
                width,
            }),
            ticker: Mutex::new(None),
        });
        if ticks {
            let (tx, rx) = mpsc::channel();
            let weak = Arc::downgrade(&shared);
            let handle = std::thread::spawn(move || tick(weak, rx));
            *shared.ticker.lock().expect("ticker") = Some((tx, handle));
        }
        Progress { shared }
    }

    /// The counters the build's work reports to.
    pub fn transfers(&self) -> &Transfers {
        &self.shared.transfers
    }

    fn screen(&self) -> std::sync::MutexGuard<'_, Screen> {
        // A thread that panicked while printing leaves a screen as good as any.
        self.shared.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prints one line (above the status line, which is erased first and drawn again after).
    pub fn line(&self, text: &str) {
        self.screen().apply(Event::Line(text.to_string()));
    }

    /// Prints a step's line and shows the step on the status line until the guard is dropped.
    pub fn step(&self, text: &str) -> StepGuard {
        let mut s = self.screen();
        s.next_step += 1;
        let id = s.next_step;
        s.apply(Event::StepStarted {
            id,
            text: text.to_string(),
        });
        StepGuard {
            progress: self.clone(),
            id,
        }
    }

    /// Ends the status line: its last state drawn (so the final counts are seen even when the
    /// work ended between two redraws), then erased; later lines print without it.
    pub fn settle(&self) {
        let ticker = self.shared.ticker.lock().expect("ticker").take();
        if let Some((tx, handle)) = ticker {
            drop(tx);
            let _ = handle.join();
        }
        let snapshots = self.shared.transfers.snapshots();
        self.screen().apply(Event::Settle(snapshots));
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

/// Redraws the status line until the progress is settled or gone.
fn tick(shared: Weak<Shared>, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let snapshots = shared.transfers.snapshots();
        let mut s = shared.screen.lock().unwrap_or_else(|e| e.into_inner());
        s.apply(Event::Tick(snapshots));
    }
}

/// A step on the status line; dropping it takes the step off.
pub struct StepGuard {
    progress: Progress,
    id: u64,
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        self.progress
            .screen()
            .apply(Event::StepEnded { id: self.id });
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

    #[test]
    fn auto_is_tty_only_on_a_terminal_outside_ci() {
        use ProgressMode::*;
        assert_eq!(Auto.resolve(true, None, Some("xterm")), Tty);
        assert_eq!(Auto.resolve(true, Some(""), None), Tty);
        assert_eq!(Auto.resolve(true, Some("true"), Some("xterm")), Plain);
        assert_eq!(Auto.resolve(false, None, Some("xterm")), Plain);
        assert_eq!(Auto.resolve(true, None, Some("dumb")), Plain);
        assert_eq!(Tty.resolve(false, Some("true"), None), Tty);
        assert_eq!(Plain.resolve(true, None, None), Plain);
        assert_eq!("tty".parse::<ProgressMode>(), Ok(Tty));
        assert!("fancy".parse::<ProgressMode>().is_err());
    }

    /// The wiring to the renderer, asserting only what no redraw tick can change: whatever the
    /// ticks drew meanwhile, settling leaves the final counts drawn and erased, and later lines
    /// print alone.
    #[test]
    fn settling_ends_at_the_final_counts_and_later_lines_print_alone() {
        let sink = Sink::default();
        let p = Progress::tty(Box::new(sink.clone()), 100);
        let push = p.transfers().push.blob(Some(900));
        push.at(300);
        let step = p.step("#1 [stage 1/1] RUN x");
        p.line("#1 out");
        drop(step);
        push.finish();
        p.settle();
        p.line("built");
        let all = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            all.ends_with("\r\x1b[2Kpushed 1/1 layers  900/900 B\r\x1b[2Kbuilt\n"),
            "{all:?}"
        );
        assert!(all.contains("#1 [stage 1/1] RUN x\n"), "{all:?}");
        assert!(all.contains("#1 out\n"), "{all:?}");
    }
}
