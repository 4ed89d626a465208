//! What a build's progress output looks like, as a pure function: each event (a line printed, a
//! step started or ended, a clock tick with the transfer counters, the end) and the time it
//! happened give the bytes to write. The live [`super::progress::Progress`] feeds it from the
//! build and a redraw thread; tests feed it a recorded sequence with a made-up clock, so what a
//! terminal shows is checked without racing the build.

use super::status::{Running, StatusLine, StatusView, INTERVAL};
use crate::transfer::TransferSnapshot;
use std::time::Instant;

/// Something the build told its progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A line to print above the status line.
    Line(String),
    /// A step began: its line is printed and it shows on the status line until it ends.
    StepStarted {
        /// Tells the step's end from others' (steps of parallel stages overlap).
        id: u64,
        /// The step's line.
        text: String,
    },
    /// A step ended.
    StepEnded {
        /// As given when it started.
        id: u64,
    },
    /// The redraw clock ticked, with the counters read then.
    Tick([TransferSnapshot; 4]),
    /// The work is over: the final counters are drawn whatever the interval, then the status
    /// line is erased for good.
    Settle([TransferSnapshot; 4]),
}

/// The progress output's state between events.
#[derive(Debug)]
pub(crate) struct Renderer {
    start: Instant,
    timestamps: bool,
    /// The status line, in tty mode until the build settles.
    status: Option<StatusLine>,
    view: StatusView,
    steps: Vec<Running>,
}

impl Renderer {
    /// Plain output (lines only; `timestamps` puts the time since `start` before each).
    pub fn plain(start: Instant, timestamps: bool) -> Self {
        Renderer {
            start,
            timestamps,
            status: None,
            view: StatusView::default(),
            steps: Vec::new(),
        }
    }

    /// Terminal output: lines scroll above a status line.
    pub fn tty(start: Instant) -> Self {
        Renderer {
            status: Some(StatusLine::new(INTERVAL)),
            ..Renderer::plain(start, false)
        }
    }

    /// Whether a status line is still drawn (so a clock is worth ticking).
    pub fn has_status(&self) -> bool {
        self.status.is_some()
    }

    /// What to write for `event` at `now`, the status line at most `width` columns.
    pub fn apply(&mut self, now: Instant, event: Event, width: usize) -> String {
        match event {
            Event::Line(text) => self.line(now, &text),
            Event::StepStarted { id, text } => {
                let out = self.line(now, &text);
                self.steps.push(Running {
                    id,
                    text,
                    since: now,
                });
                out
            }
            Event::StepEnded { id } => {
                self.steps.retain(|s| s.id != id);
                String::new()
            }
            Event::Tick(transfers) => self.redraw(now, transfers, width, false),
            Event::Settle(transfers) => {
                let mut out = self.redraw(now, transfers, width, true);
                if let Some(mut status) = self.status.take() {
                    out.push_str(status.close());
                }
                out
            }
        }
    }

    fn line(&self, now: Instant, text: &str) -> String {
        let (hide, unhide) = self
            .status
            .as_ref()
            .map_or(("", ""), |s| (s.hide(), s.unhide()));
        if self.timestamps {
            let secs = now.saturating_duration_since(self.start).as_secs_f64();
            format!("{hide}[{secs:>7.2}s] {text}\n{unhide}")
        } else {
            format!("{hide}{text}\n{unhide}")
        }
    }

    fn redraw(
        &mut self,
        now: Instant,
        transfers: [TransferSnapshot; 4],
        width: usize,
        force: bool,
    ) -> String {
        let Some(status) = &mut self.status else {
            return String::new();
        };
        let text = self.view.text(now, transfers, &self.steps, width);
        status.draw(now, &text, force).unwrap_or_default()
    }
}

/// Every event of a recorded sequence applied in order: what the output holds at the end.
#[cfg(test)]
pub(crate) fn render(r: &mut Renderer, events: Vec<(Instant, Event)>, width: usize) -> String {
    events
        .into_iter()
        .map(|(now, e)| r.apply(now, e, width))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::executor::status::{snap, CLEAR as ERASE};

    const MIB: u64 = 1 << 20;

    /// The four counters (pull, extract, compress, push).
    fn counters(
        pull: TransferSnapshot,
        extract: TransferSnapshot,
        compress: TransferSnapshot,
        push: TransferSnapshot,
    ) -> [TransferSnapshot; 4] {
        [pull, extract, compress, push]
    }

    /// The status texts drawn, in order: what follows each erase that is not a line scrolling
    /// above (a line ends in `\n`; what follows one is the status put back, not a redraw).
    fn draws(out: &str) -> Vec<&str> {
        out.split(ERASE)
            .skip(1)
            .filter(|s| !s.contains('\n') && !s.is_empty())
            .collect()
    }

    /// A build as the executor reports it: the base pulled and extracted while a RUN step waits
    /// for it, the step's output, the layers compressed and pushed, the summary. Ticks come
    /// every 100 ms as the redraw thread sends them.
    fn recorded_build(t0: Instant) -> Vec<(Instant, Event)> {
        let at = |ms| t0 + Duration::from_millis(ms);
        let idle = TransferSnapshot::default();
        let pulled = snap(1, 1, 2 * MIB, 2 * MIB);
        let extracted = snap(1, 1, 2 * MIB, 2 * MIB);
        // A layer being written has no size yet.
        let compressing = TransferSnapshot {
            open_ended: true,
            ..snap(2, 1, 6 * MIB, 7 * MIB)
        };
        let compressed = snap(2, 2, 9 * MIB, 9 * MIB);
        let pushed = snap(3, 3, 11 * MIB, 11 * MIB);
        vec![
            (at(0), Event::Line("#0 building 1 stage".into())),
            (
                at(10),
                Event::StepStarted {
                    id: 1,
                    text: "#1 [#0 1/2] COPY data.bin /data.bin".into(),
                },
            ),
            (at(40), Event::StepEnded { id: 1 }),
            (
                at(50),
                Event::StepStarted {
                    id: 2,
                    text: "#2 [#0 2/2] RUN cat /data.bin /data.bin > /twice.bin".into(),
                },
            ),
            (
                at(100),
                Event::Tick(counters(snap(1, 0, 2 * MIB, MIB), idle, idle, idle)),
            ),
            (
                at(200),
                Event::Tick(counters(pulled, snap(1, 0, 2 * MIB, MIB), idle, idle)),
            ),
            (at(250), Event::Line("#2 done".into())),
            (at(260), Event::StepEnded { id: 2 }),
            (
                at(300),
                Event::Tick(counters(pulled, extracted, compressing, idle)),
            ),
            (
                at(400),
                Event::Tick(counters(
                    pulled,
                    extracted,
                    compressed,
                    snap(3, 1, 11 * MIB, 5 * MIB),
                )),
            ),
            // The push ends between two ticks: only settling draws it.
            (
                at(450),
                Event::Settle(counters(pulled, extracted, compressed, pushed)),
            ),
            (at(460), Event::Line("pushed r/x@sha256:ab".into())),
        ]
    }

    #[test]
    fn a_recorded_build_shows_the_running_step_then_what_moves_then_the_final_counts() {
        let t0 = Instant::now();
        let out = render(&mut Renderer::tty(t0), recorded_build(t0), 200);
        let d = draws(&out);
        assert_eq!(
            d,
            [
                "#2 [#0 2/2] RUN cat /data.bin /data.bin > /twice.bin │ pulling 0/1 layers  1.0/2.0 MiB",
                "#2 [#0 2/2] RUN cat /data.bin /data.bin > /twice.bin │ extracting 0/1 layers  1.0/2.0 MiB │ pulled 1/1 layers  2.0/2.0 MiB",
                "compressing 1 layer  7.0 MiB │ extracted 1/1 layers  2.0/2.0 MiB │ pulled 1/1 layers  2.0/2.0 MiB",
                "pushing 1/3 layers  5.0/11.0 MiB │ compressed 2/2 layers  9.0/9.0 MiB │ extracted 1/1 layers  2.0/2.0 MiB │ pulled 1/1 layers  2.0/2.0 MiB",
                "pushed 3/3 layers  11.0/11.0 MiB │ compressed 2/2 layers  9.0/9.0 MiB │ extracted 1/1 layers  2.0/2.0 MiB │ pulled 1/1 layers  2.0/2.0 MiB",
            ]
        );
        // A line scrolls above: the status is erased first and drawn again under it.
        let step_line =
            "#2 done\n#2 [#0 2/2] RUN cat /data.bin /data.bin > /twice.bin │ extracting";
        assert!(out.contains(&format!("{ERASE}{step_line}")), "{out:?}");
        // After settling: the final counts erased, the summary alone, no status put back.
        assert!(
            out.ends_with(&format!(
                "pulled 1/1 layers  2.0/2.0 MiB{ERASE}pushed r/x@sha256:ab\n"
            )),
            "{out:?}"
        );
        assert!(!out.contains("s] "), "no timestamps on a terminal");
    }

    #[test]
    fn ticks_closer_than_the_interval_or_with_nothing_new_draw_nothing() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let idle = TransferSnapshot::default();
        let pull = |done| counters(snap(1, 0, 1000, done), idle, idle, idle);
        let mut r = Renderer::tty(t0);
        assert_eq!(
            r.apply(at(0), Event::Tick(pull(100)), 80),
            format!("{ERASE}pulling 0/1 layers  100/1000 B")
        );
        assert_eq!(r.apply(at(50), Event::Tick(pull(200)), 80), "", "too soon");
        assert_eq!(
            r.apply(at(150), Event::Tick(pull(100)), 80),
            "",
            "unchanged"
        );
        assert_eq!(
            r.apply(at(160), Event::Tick(pull(300)), 80),
            format!("{ERASE}pulling 0/1 layers  300/1000 B")
        );
        // Settling draws at once, then erases; a later tick draws nothing.
        let end = counters(snap(1, 1, 1000, 1000), idle, idle, idle);
        assert_eq!(
            r.apply(at(170), Event::Settle(end), 80),
            format!("{ERASE}pulled 1/1 layers  1000/1000 B{ERASE}")
        );
        assert!(!r.has_status());
        assert_eq!(r.apply(at(400), Event::Tick(end), 80), "");
        assert_eq!(r.apply(at(410), Event::Line("x".into()), 80), "x\n");
    }

    #[test]
    fn a_step_stays_on_the_line_with_its_age_until_it_ends() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let idle = [TransferSnapshot::default(); 4];
        let mut r = Renderer::tty(t0);
        let started = r.apply(
            at(0),
            Event::StepStarted {
                id: 7,
                text: "#7 RUN sleep 3".into(),
            },
            80,
        );
        assert_eq!(started, "#7 RUN sleep 3\n", "nothing drawn yet to erase");
        assert_eq!(
            r.apply(at(2500), Event::Tick(idle), 80),
            format!("{ERASE}#7 RUN sleep 3 2s")
        );
        r.apply(at(2600), Event::StepEnded { id: 7 }, 80);
        // With nothing running nor moving the line is empty, and drawn so.
        assert_eq!(r.apply(at(2700), Event::Tick(idle), 80), ERASE);
    }

    #[test]
    fn plain_output_is_the_lines_alone_with_the_time_since_the_start_in_ci() {
        let t0 = Instant::now();
        let mut ci = Renderer::plain(t0, true);
        let out = render(&mut ci, recorded_build(t0), 200);
        assert_eq!(
            out,
            "[   0.00s] #0 building 1 stage\n\
             [   0.01s] #1 [#0 1/2] COPY data.bin /data.bin\n\
             [   0.05s] #2 [#0 2/2] RUN cat /data.bin /data.bin > /twice.bin\n\
             [   0.25s] #2 done\n\
             [   0.46s] pushed r/x@sha256:ab\n"
        );
        let out = render(&mut Renderer::plain(t0, false), recorded_build(t0), 200);
        assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
        assert!(out.starts_with("#0 building 1 stage\n#1 [#0 1/2] COPY"));
    }
}
