//! Where a build's time went, step by step: each phase's time recorded where the phase happens
//! (the pull in the layer fetch, the RUN around the sandbox, the upload in its task), then shown
//! as a table (`--timings`) or JSON, and on each step's DONE line.
//!
//! A phase's time is the time the step's thread (or, for uploads and cache writes, the step's
//! background task) spent in it. Writing a layer is one streaming pass, so its share is split by
//! who held the pass up: `compress` is the time the tar writer was blocked on the compressor,
//! `diff` the rest (walking the tree, reading files, tar).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kind of work a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Downloading layer blobs.
    Pull,
    /// Unpacking layers (or copying the parent tree when overlay is unavailable).
    Extract,
    /// The step's own work: the RUN process, COPY's copying.
    Run,
    /// Turning the step's changes into a tar stream (and, without overlay, finding them).
    Diff,
    /// Compressing the layer (the time the tar writer waited on the compressor).
    Compress,
    /// Pushing the layer's blob to the destinations (the final push's own work for its row).
    Upload,
    /// Looking the step up in, and writing it to, the cache repository.
    Cache,
    /// Waiting on work another thread or build was doing.
    Wait,
}

impl Phase {
    /// Every phase, in the order the table shows them.
    pub const ALL: [Phase; 8] = [
        Phase::Pull,
        Phase::Extract,
        Phase::Run,
        Phase::Diff,
        Phase::Compress,
        Phase::Upload,
        Phase::Cache,
        Phase::Wait,
    ];

    /// Its name in the table and on DONE lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pull => "pull",
            Phase::Extract => "extract",
            Phase::Run => "run",
            Phase::Diff => "diff",
            Phase::Compress => "compress",
            Phase::Upload => "upload",
            Phase::Cache => "cache",
            Phase::Wait => "wait",
        }
    }

    /// Whether the phase runs on a background task, alongside later steps.
    pub fn background(self) -> bool {
        matches!(self, Phase::Upload | Phase::Cache)
    }

    fn index(self) -> usize {
        Phase::ALL.iter().position(|p| *p == self).expect("listed")
    }
}

/// One phase of one step: its total time and the window it happened in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PhaseTime {
    /// Time spent in the phase, in seconds.
    pub secs: f64,
    /// When the phase first started, in seconds since the build began.
    pub start: Option<f64>,
    /// When it last ended, in seconds since the build began.
    pub end: Option<f64>,
}

/// A step's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTimings {
    /// Its number in the build (the `#N` of the progress lines); 0 for the output row.
    pub number: usize,
    /// `[stage n/m]`, as the progress lines have it, or `output` for the export and push.
    pub label: String,
    /// The instruction, abbreviated.
    pub instruction: String,
    /// Whether the step was found in the cache.
    pub cached: bool,
    /// Time per phase, in [`Phase::ALL`]'s order (a JSON object by phase name).
    #[serde(serialize_with = "phase_map")]
    pub phases: Vec<(Phase, PhaseTime)>,
}

fn phase_map<S: serde::Serializer>(phases: &[(Phase, PhaseTime)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(phases.iter().map(|(p, t)| (p.name(), t)))
}

impl StepTimings {
    /// The time of `phase`.
    pub fn phase(&self, phase: Phase) -> PhaseTime {
        self.phases[phase.index()].1
    }

    /// The sum of its phases, in seconds.
    pub fn total(&self) -> f64 {
        self.phases.iter().map(|(_, t)| t.secs).sum()
    }
}

/// A build's timings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timings {
    /// The build's wall time, in seconds.
    pub wall: f64,
    /// The steps in the order they started, then the output row.
    pub steps: Vec<StepTimings>,
}

/// Longest instruction text the table shows.
const INSTRUCTION_WIDTH: usize = 36;

impl Timings {
    /// Each phase's time summed over the steps, in [`Phase::ALL`]'s order.
    pub fn totals(&self) -> Vec<(Phase, f64)> {
        Phase::ALL
            .iter()
            .map(|&p| (p, self.steps.iter().map(|s| s.phase(p).secs).sum()))
            .collect()
    }

    /// The table `--timings` prints: a row per step, the totals, the wall time.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = write!(
            out,
            "{:<5} {:<14} {:<INSTRUCTION_WIDTH$}",
            "step", "stage", ""
        );
        for p in Phase::ALL {
            let _ = write!(out, " {:>8}", p.name());
        }
        out.push_str("    total\n");
        let row = |out: &mut String, num: &str, label: &str, ins: &str, secs: &[f64]| {
            let _ = write!(out, "{num:<5} {label:<14} {ins:<INSTRUCTION_WIDTH$}");
            for s in secs {
                let _ = write!(out, " {:>8}", seconds(*s));
            }
            let _ = writeln!(out, " {:>8}", seconds(secs.iter().sum()));
        };
        for s in &self.steps {
            let num = match s.number {
                0 => String::new(),
                n => format!("#{n}"),
            };
            let secs: Vec<f64> = s.phases.iter().map(|(_, t)| t.secs).collect();
            let ins = if s.cached {
                format!("{} (cached)", s.instruction)
            } else {
                s.instruction.clone()
            };
            row(&mut out, &num, &s.label, &abbreviate(&ins), &secs);
        }
        let totals: Vec<f64> = self.totals().into_iter().map(|(_, s)| s).collect();
        row(&mut out, "", "total", "", &totals);
        let background: f64 = self
            .totals()
            .into_iter()
            .filter(|(p, _)| p.background())
            .map(|(_, s)| s)
            .sum();
        let _ = writeln!(
            out,
            "wall {:.2}s (upload and cache run on background tasks, alongside later steps: \
             {background:.2}s of them)",
            self.wall
        );
        out
    }

    /// The timings as one line of JSON.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("timings serialise")
    }
}

/// `1.23`, or `-` for nothing.
fn seconds(s: f64) -> String {
    if s < 0.005 {
        "-".to_string()
    } else {
        format!("{s:.2}")
    }
}

/// The instruction on one line, cut to the table's width.
fn abbreviate(ins: &str) -> String {
    let one_line = ins.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= INSTRUCTION_WIDTH {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(INSTRUCTION_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// A phase's time accumulated as it happens.
#[derive(Debug, Default)]
struct Slot {
    nanos: AtomicU64,
    /// Nanoseconds since the build began, plus one (0: not yet).
    first_start: AtomicU64,
    last_end: AtomicU64,
}

#[derive(Debug)]
struct Row {
    number: usize,
    label: String,
    instruction: String,
    cached: std::sync::atomic::AtomicBool,
    slots: [Slot; 8],
}

/// Collects a build's timings while it runs.
#[derive(Debug)]
pub(crate) struct Recorder {
    start: Instant,
    rows: Mutex<Vec<Arc<Row>>>,
}

impl Recorder {
    /// Timings counted from now.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            rows: Mutex::new(Vec::new()),
        })
    }

    /// A new row, and the clock its phases are recorded on.
    pub fn row(self: &Arc<Self>, number: usize, label: &str, instruction: &str) -> StepClock {
        let row = Arc::new(Row {
            number,
            label: label.to_string(),
            instruction: instruction.to_string(),
            cached: Default::default(),
            slots: Default::default(),
        });
        self.rows.lock().expect("rows").push(row.clone());
        StepClock {
            recorder: self.clone(),
            row,
        }
    }

    /// What was recorded, the wall time counted until now.
    pub fn timings(&self) -> Timings {
        let since = |n: u64| (n > 0).then(|| (n - 1) as f64 / 1e9);
        let steps = self
            .rows
            .lock()
            .expect("rows")
            .iter()
            .map(|r| StepTimings {
                number: r.number,
                label: r.label.clone(),
                instruction: r.instruction.clone(),
                cached: r.cached.load(Ordering::Relaxed),
                phases: Phase::ALL
                    .iter()
                    .zip(&r.slots)
                    .map(|(&p, s)| {
                        let t = PhaseTime {
                            secs: s.nanos.load(Ordering::Relaxed) as f64 / 1e9,
                            start: since(s.first_start.load(Ordering::Relaxed)),
                            end: since(s.last_end.load(Ordering::Relaxed)),
                        };
                        (p, t)
                    })
                    .collect(),
            })
            .collect();
        Timings {
            wall: self.start.elapsed().as_secs_f64(),
            steps,
        }
    }

    fn offset(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64 + 1
    }
}

/// Where one step's phases are recorded; cheap to clone into a background task.
#[derive(Debug, Clone)]
pub(crate) struct StepClock {
    recorder: Arc<Recorder>,
    row: Arc<Row>,
}

impl StepClock {
    /// `phase` took `took` of the window from `start` to `end` (all of it when it is the whole).
    pub fn add_within(&self, phase: Phase, took: Duration, start: Instant, end: Instant) {
        let slot = &self.row.slots[phase.index()];
        slot.nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let (s, e) = (self.recorder.offset(start), self.recorder.offset(end));
        // 0 is "not yet", so the first start is the smallest non-zero value.
        let _ = slot
            .first_start
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old == 0 || s < old).then_some(s)
            });
        slot.last_end.fetch_max(e, Ordering::Relaxed);
    }

    /// `phase` ran from `start` until now.
    pub fn since(&self, phase: Phase, start: Instant) {
        let end = Instant::now();
        self.add_within(phase, end - start, start, end);
    }

    /// Runs `f`, its time counted as `phase`.
    pub fn time<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.since(phase, start);
        out
    }

    /// Marks the step as found in the cache.
    pub fn cached(&self) {
        self.row.cached.store(true, Ordering::Relaxed);
    }

    /// The step's foreground phases so far, for its DONE line: `run 1.02s, diff 0.31s`.
    pub fn summary(&self) -> String {
        Phase::ALL
            .iter()
            .zip(&self.row.slots)
            .filter(|(p, _)| !p.background())
            .map(|(p, s)| (p, s.nanos.load(Ordering::Relaxed) as f64 / 1e9))
            .filter(|(_, secs)| *secs >= 0.005)
            .map(|(p, secs)| format!("{} {secs:.2}s", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A snapshotter's work is the step's: copying the parent is its extraction, finding and
/// writing the changes its diff and compress.
impl crate::snapshot::Timer for StepClock {
    fn add(&self, work: crate::snapshot::Work, took: Duration, start: Instant, end: Instant) {
        use crate::snapshot::Work;
        let phase = match work {
            Work::Extract => Phase::Extract,
            Work::Diff => Phase::Diff,
            Work::Compress => Phase::Compress,
        };
        self.add_within(phase, took, start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_windows_span_every_interval() {
        let rec = Recorder::new();
        let clock = rec.row(3, "[#0 2/2]", "RUN sleep 1");
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        clock.add_within(Phase::Run, ms(200), t0 + ms(100), t0 + ms(300));
        clock.add_within(Phase::Run, ms(100), t0 + ms(10), t0 + ms(110));
        clock.add_within(Phase::Compress, ms(50), t0 + ms(300), t0 + ms(400));
        let t = rec.timings();
        let run = t.steps[0].phase(Phase::Run);
        assert!((run.secs - 0.3).abs() < 1e-9, "{run:?}");
        let (start, end) = (run.start.unwrap(), run.end.unwrap());
        assert!((0.01..0.1).contains(&start), "the earliest start: {start}");
        assert!((0.3..0.4).contains(&end), "the latest end: {end}");
        assert_eq!(t.steps[0].phase(Phase::Pull), PhaseTime::default());
        assert!((t.steps[0].total() - 0.35).abs() < 1e-9);
        assert_eq!(clock.summary(), "run 0.30s, compress 0.05s");
    }

    #[test]
    fn the_table_has_a_row_per_step_then_totals_and_wall() {
        let rec = Recorder::new();
        let a = rec.row(1, "[#0 1/2]", "COPY a /a");
        let b = rec.row(2, "[#0 2/2]", &format!("RUN {}", "x".repeat(80)));
        let t0 = Instant::now();
        a.add_within(Phase::Diff, Duration::from_millis(1500), t0, t0);
        b.add_within(Phase::Upload, Duration::from_millis(250), t0, t0);
        b.cached();
        let text = rec.timings().table();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("step  stage") && lines[0].contains("compress"));
        assert!(lines[1].starts_with("#1    [#0 1/2]") && lines[1].contains("1.50"));
        assert!(
            lines[2].contains("RUN xxx") && lines[2].contains('…'),
            "{text}"
        );
        assert!(lines[3].contains("total") && lines[3].trim_end().ends_with("1.75"));
        assert!(lines[4].starts_with("wall "), "{text}");
        let json: serde_json::Value = serde_json::from_str(&rec.timings().json()).unwrap();
        assert_eq!(json["steps"][1]["cached"], true);
        assert_eq!(json["steps"][1]["phases"]["upload"]["secs"], 0.25);
    }
}
