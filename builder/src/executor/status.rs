//! The status line a terminal shows under the scrolling step lines: what it says (the running
//! step, the layers moving, bytes and rates) and when it is redrawn (at most once an interval,
//! never when its text is what the screen shows). Time comes in as arguments, so tests drive
//! the clock.

use crate::transfer::TransferSnapshot;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Back to the start of the line and erase it.
pub(crate) const CLEAR: &str = "\r\x1b[2K";

/// The least time between two redraws.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// How long a finished transfer stays on the line.
const LINGER: Duration = Duration::from_secs(2);

/// The span rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// The line as the screen has it.
#[derive(Debug)]
pub(crate) struct StatusLine {
    interval: Duration,
    shown: String,
    drawn_at: Option<Instant>,
}

impl StatusLine {
    /// An empty line, redrawn at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        StatusLine {
            interval,
            shown: String::new(),
            drawn_at: None,
        }
    }

    /// What to write to show `text` at `now`: nothing when the screen shows it already, or
    /// when the last redraw is less than an interval ago and `force` is not set.
    pub fn draw(&mut self, now: Instant, text: &str, force: bool) -> Option<String> {
        if text == self.shown {
            return None;
        }
        if !force
            && self
                .drawn_at
                .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            return None;
        }
        self.shown = text.to_string();
        self.drawn_at = Some(now);
        Some(format!("{CLEAR}{text}"))
    }

    /// What to write before a line scrolls above: the status erased, the cursor at its start.
    pub fn hide(&self) -> &'static str {
        if self.shown.is_empty() {
            ""
        } else {
            CLEAR
        }
    }

    /// What puts the status back under a line just printed.
    pub fn unhide(&self) -> &str {
        &self.shown
    }

    /// Takes the status off the screen for good; what to write for it.
    pub fn close(&mut self) -> &'static str {
        let out = self.hide();
        self.shown.clear();
        out
    }
}

/// Bytes per second over the last few seconds.
#[derive(Debug, Default)]
pub(crate) struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// Records `bytes` (a running total) at `now`; returns the rate once there is a span to
    /// measure it over.
    pub fn sample(&mut self, now: Instant, bytes: u64) -> Option<f64> {
        if self.samples.back().is_some_and(|&(_, b)| bytes < b) {
            self.samples.clear();
        }
        self.samples.push_back((now, bytes));
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= RATE_WINDOW
        {
            self.samples.pop_front();
        }
        let (t0, b0) = *self.samples.front()?;
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        (dt >= 0.5).then(|| (bytes - b0) as f64 / dt)
    }
}

/// One kind of transfer as the line names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    pub doing: &'static str,
    pub done: &'static str,
}

/// The pull, extract, compress and push kinds, in the order the line shows them.
pub(crate) const KINDS: [Kind; 4] = [
    Kind {
        doing: "pulling",
        done: "pulled",
    },
    Kind {
        doing: "extracting",
        done: "extracted",
    },
    Kind {
        doing: "compressing",
        done: "compressed",
    },
    Kind {
        doing: "pushing",
        done: "pushed",
    },
];

/// A step under way.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub id: u64,
    pub text: String,
    pub since: Instant,
}

/// What the status line says, from the counters and the running steps.
#[derive(Debug, Default)]
pub(crate) struct StatusView {
    rates: [Rate; 4],
    /// When each transfer was first seen finished (it leaves the line a while later).
    finished_at: [Option<Instant>; 4],
}

impl StatusView {
    /// The line at `now`, at most `width` characters.
    pub fn text(
        &mut self,
        now: Instant,
        transfers: [TransferSnapshot; 4],
        steps: &[Running],
        width: usize,
    ) -> String {
        let mut parts = Vec::new();
        let mut finished = Vec::new();
        for (i, s) in transfers.iter().enumerate() {
            let rate = self.rates[i].sample(now, s.bytes_done);
            if s.blobs == 0 {
                continue;
            }
            if s.active() {
                self.finished_at[i] = None;
                parts.push(transfer_text(KINDS[i], s, rate));
            } else {
                let at = *self.finished_at[i].get_or_insert(now);
                if now.saturating_duration_since(at) < LINGER {
                    finished.push(transfer_text(KINDS[i], s, None));
                }
            }
        }
        let moving = parts.join(" │ ");
        // Of what finished, the latest in the pipeline first: a cut end loses the least news.
        let finished: Vec<String> = finished.into_iter().rev().collect();
        let finished = finished.join(" │ ");
        let step = steps.iter().max_by_key(|s| s.id).map(|s| {
            let secs = now.saturating_duration_since(s.since).as_secs();
            let more = match steps.len() {
                1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            let tail = if secs > 0 {
                format!("{more} {secs}s")
            } else {
                more
            };
            // The step's text gives way to what is moving when the line is short; finished
            // work gives way to the step.
            let room = width
                .saturating_sub(moving.chars().count() + 3)
                .saturating_sub(tail.chars().count())
                .max(12);
            format!("{}{tail}", truncate(&s.text, room))
        });
        let line = [step.unwrap_or_default(), moving, finished]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" │ ");
        truncate(&line, width)
    }
}

/// `pushing 3/5 layers  12.4/40.1 MiB  18 MiB/s`; without a known total,
/// `compressing 1 layer  12.4 MiB  30 MiB/s`.
pub(crate) fn transfer_text(kind: Kind, s: &TransferSnapshot, rate: Option<f64>) -> String {
    let verb = if s.active() { kind.doing } else { kind.done };
    let mut out = if s.open_ended {
        let n = s.blobs - s.blobs_done;
        let noun = if n == 1 { "layer" } else { "layers" };
        format!("{verb} {n} {noun}  {}", bytes(s.bytes_done))
    } else {
        format!(
            "{verb} {}/{} layers  {}",
            s.blobs_done,
            s.blobs,
            bytes_of(s.bytes_done.min(s.bytes), s.bytes)
        )
    };
    if let Some(r) = rate.filter(|_| s.active()) {
        out.push_str("  ");
        out.push_str(&bytes_rate(r));
    }
    out
}

const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

fn unit_of(n: f64) -> usize {
    let mut u = 0;
    let mut v = n;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    u
}

fn scaled(n: f64, unit: usize) -> f64 {
    n / 1024f64.powi(unit as i32)
}

/// `12.4 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    let u = unit_of(n as f64);
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{:.1} {}", scaled(n as f64, u), UNITS[u])
    }
}

/// `12.4/40.1 MiB`: both in the unit of `total`.
pub fn bytes_of(done: u64, total: u64) -> String {
    let u = unit_of(total as f64);
    if u == 0 {
        format!("{done}/{total} B")
    } else {
        format!(
            "{:.1}/{:.1} {}",
            scaled(done as f64, u),
            scaled(total as f64, u),
            UNITS[u]
        )
    }
}

/// `18 MiB/s`, `1.5 MiB/s`, `850 KiB/s`.
pub fn bytes_rate(per_second: f64) -> String {
    let u = unit_of(per_second);
    let v = scaled(per_second, u);
    if v >= 10.0 || u == 0 {
        format!("{v:.0} {}/s", UNITS[u])
    } else {
        format!("{v:.1} {}/s", UNITS[u])
    }
}

/// At most `width` characters of `s`, an ellipsis marking a cut.
fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Counters of a transfer whose sizes are all known, for tests.
#[cfg(test)]
pub(crate) fn snap(blobs: u64, blobs_done: u64, bytes: u64, bytes_done: u64) -> TransferSnapshot {
    TransferSnapshot {
        blobs,
        blobs_done,
        bytes,
        bytes_done,
        open_ended: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn byte_counts_and_rates_read_as_the_issue_shows_them() {
        let s = snap(5, 3, 40 * MIB + MIB / 10, 12 * MIB + 2 * MIB / 5);
        assert_eq!(
            transfer_text(KINDS[3], &s, Some(18.0 * MIB as f64)),
            "pushing 3/5 layers  12.4/40.1 MiB  18 MiB/s"
        );
        assert_eq!(
            transfer_text(KINDS[3], &snap(2, 2, 3000, 3000), Some(5.0)),
            "pushed 2/2 layers  2.9/2.9 KiB",
            "a finished transfer has no rate"
        );
        assert_eq!(bytes_of(100, 900), "100/900 B");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(3 * MIB / 2), "1.5 MiB");
        assert_eq!(bytes_rate(1.5 * MIB as f64), "1.5 MiB/s");
        assert_eq!(bytes_rate(850.0 * 1024.0), "850 KiB/s");
        assert_eq!(bytes_rate(12.0), "12 B/s");
        let open = TransferSnapshot {
            open_ended: true,
            ..snap(3, 2, 10 * MIB, 12 * MIB)
        };
        assert_eq!(
            transfer_text(KINDS[2], &open, Some(30.0 * MIB as f64)),
            "compressing 1 layer  12.0 MiB  30 MiB/s"
        );
    }

    #[test]
    fn redraws_are_rate_limited_and_skipped_when_nothing_changed() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut l = StatusLine::new(INTERVAL);
        assert_eq!(l.draw(t0, "a", false).as_deref(), Some("\r\x1b[2Ka"));
        assert_eq!(l.draw(ms(50), "b", false), None, "too soon");
        assert_eq!(l.draw(ms(100), "a", false), None, "unchanged");
        assert_eq!(l.draw(ms(100), "b", false).as_deref(), Some("\r\x1b[2Kb"));
        assert_eq!(l.draw(ms(500), "b", false), None, "unchanged, however late");
        assert_eq!(l.draw(ms(510), "c", true).as_deref(), Some("\r\x1b[2Kc"));
        assert_eq!(l.draw(ms(520), "c", true), None, "forced, yet unchanged");
        assert_eq!((l.hide(), l.unhide()), (CLEAR, "c"));
        assert_eq!(l.close(), CLEAR);
        assert_eq!((l.hide(), l.unhide()), ("", ""));
    }

    #[test]
    fn the_rate_is_measured_over_the_last_seconds() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_millis(n);
        let mut r = Rate::default();
        assert_eq!(r.sample(t0, 0), None);
        assert_eq!(r.sample(s(200), MIB), None, "too short a span");
        assert_eq!(r.sample(s(1000), 10 * MIB), Some(10.0 * MIB as f64));
        // Stalled: the rate falls as the window moves past the bytes.
        r.sample(s(4000), 10 * MIB);
        let later = r.sample(s(8000), 10 * MIB).unwrap();
        assert_eq!(later, 0.0);
    }

    #[test]
    fn the_line_shows_the_newest_step_and_what_moves_then_lets_finished_work_go() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut v = StatusView::default();
        let steps = vec![
            Running {
                id: 1,
                text: "#1 [a 1/2] RUN sleep 5".into(),
                since: t0,
            },
            Running {
                id: 2,
                text: "#2 [b 1/1] COPY . /src".into(),
                since: t0,
            },
        ];
        let idle = TransferSnapshot::default();
        let pull = snap(2, 1, 4 * MIB, 3 * MIB);
        v.text(t0, [snap(2, 0, 4 * MIB, 0), idle, idle, idle], &steps, 200);
        assert_eq!(
            v.text(at(1500), [pull, idle, idle, idle], &steps, 200),
            "#2 [b 1/1] COPY . /src (+1 more) 1s │ pulling 1/2 layers  3.0/4.0 MiB  2.0 MiB/s"
        );
        let done = snap(2, 2, 4 * MIB, 4 * MIB);
        assert_eq!(
            v.text(at(1600), [done, idle, idle, idle], &steps[..1], 200),
            "#1 [a 1/2] RUN sleep 5 1s │ pulled 2/2 layers  4.0/4.0 MiB"
        );
        let push = snap(3, 1, 3 * MIB, MIB);
        assert_eq!(
            v.text(at(1700), [done, idle, done, push], &[], 200),
            "pushing 1/3 layers  1.0/3.0 MiB  602 KiB/s │ compressed 2/2 layers  4.0/4.0 MiB │ pulled 2/2 layers  4.0/4.0 MiB",
            "active work first, then the latest finished"
        );
        assert_eq!(
            v.text(at(3700), [done, idle, idle, idle], &steps[..1], 200),
            "#1 [a 1/2] RUN sleep 5 3s",
            "finished transfers leave the line"
        );
        // A narrow terminal cuts the step's text, not the bytes.
        let line = v.text(at(3800), [pull, idle, idle, idle], &steps[..1], 50);
        assert_eq!(line, "#1 [a 1/2] R… 3s │ pulling 1/2 layers  3.0/4.0 MiB");
        assert_eq!(line.chars().count(), 50);
    }
}
