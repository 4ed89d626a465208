//! The daemon's JSON message stream (`POST /build`, `POST /images/.../push`) turned into plain
//! log lines of the shape kiln's native builder prints: `#N [N/M] INSTRUCTION` for a step,
//! `#N text` for what the step printed, one line per status change (no progress bars).

use serde_json::Value;

/// What one JSON message meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Lines to show.
    Lines(Vec<String>),
    /// The built image's ID (`aux.ID`).
    ImageId(String),
    /// A pushed manifest's digest (`aux.Digest`), with its tag.
    Pushed {
        /// The tag pushed.
        tag: String,
        /// `sha256:...`.
        digest: String,
    },
    /// The daemon reported a failure.
    Error(String),
}

/// Numbers steps across a build and its pushes.
#[derive(Debug, Default)]
pub struct Progress {
    step: usize,
}

impl Progress {
    /// A new stream, before step 1.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Starts a step kiln itself names (a push): returns its header line.
    pub fn start(&mut self, what: &str) -> String {
        self.step += 1;
        format!("#{} {what}", self.step)
    }

    /// A line of kiln's own about the current step.
    pub fn line(&self, text: &str) -> String {
        format!("#{} {text}", self.step)
    }

    /// Interprets one message of the stream.
    pub fn message(&mut self, msg: &Value) -> Event {
        if let Some(e) = msg.get("error").and_then(Value::as_str) {
            let detail = msg
                .pointer("/errorDetail/message")
                .and_then(Value::as_str)
                .unwrap_or(e);
            return Event::Error(detail.trim_end().to_string());
        }
        if let Some(aux) = msg.get("aux") {
            if let Some(id) = aux.get("ID").and_then(Value::as_str) {
                return Event::ImageId(id.to_string());
            }
            if let Some(d) = aux.get("Digest").and_then(Value::as_str) {
                return Event::Pushed {
                    tag: aux
                        .get("Tag")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    digest: d.to_string(),
                };
            }
            return Event::Lines(Vec::new());
        }
        if let Some(s) = msg.get("stream").and_then(Value::as_str) {
            return Event::Lines(self.stream(s));
        }
        if let Some(status) = msg.get("status").and_then(Value::as_str) {
            // Byte counters repeat many times a second; a CI log wants the state changes.
            if msg
                .get("progressDetail")
                .is_some_and(|p| p.get("current").is_some())
            {
                return Event::Lines(Vec::new());
            }
            let line = match msg.get("id").and_then(Value::as_str) {
                Some(id) => format!("#{} {id}: {status}", self.step),
                None => format!("#{} {status}", self.step),
            };
            return Event::Lines(vec![line]);
        }
        Event::Lines(Vec::new())
    }

    fn stream(&mut self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            // The classic builder announces steps as `Step 2/5 : RUN make`.
            if let Some((count, instruction)) = line
                .strip_prefix("Step ")
                .and_then(|rest| rest.split_once(" : "))
            {
                if let Some((n, _)) = count.split_once('/') {
                    if let Ok(n) = n.parse::<usize>() {
                        self.step = n;
                        out.push(format!("#{n} [{count}] {instruction}"));
                        continue;
                    }
                }
            }
            out.push(format!("#{} {line}", self.step));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_are_numbered_and_output_prefixed() {
        let mut p = Progress::new();
        let lines = |e| match e {
            Event::Lines(l) => l,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            lines(p.message(&json!({"stream": "Step 1/2 : FROM base\n"}))),
            ["#1 [1/2] FROM base"]
        );
        assert_eq!(
            lines(p.message(&json!({"status": "Pulling fs layer", "id": "abc"}))),
            ["#1 abc: Pulling fs layer"]
        );
        assert!(lines(p.message(&json!({
            "status": "Downloading", "id": "abc",
            "progressDetail": {"current": 10, "total": 20}
        })))
        .is_empty());
        assert_eq!(
            lines(
                p.message(&json!({"stream": "Step 2/2 : RUN echo hi\n ---> Running in 1f\nhi\n"}))
            ),
            ["#2 [2/2] RUN echo hi", "#2  ---> Running in 1f", "#2 hi"]
        );
        assert_eq!(p.start("push x"), "#3 push x");
        assert_eq!(p.line("pushed"), "#3 pushed");
    }

    #[test]
    fn aux_and_errors_are_events() {
        let mut p = Progress::new();
        assert_eq!(
            p.message(&json!({"aux": {"ID": "sha256:ab"}})),
            Event::ImageId("sha256:ab".into())
        );
        assert_eq!(
            p.message(&json!({"aux": {"Tag": "1", "Digest": "sha256:cd", "Size": 5}})),
            Event::Pushed {
                tag: "1".into(),
                digest: "sha256:cd".into()
            }
        );
        assert_eq!(
            p.message(
                &json!({"error": "x", "errorDetail": {"code": 1, "message": "RUN failed\n"}})
            ),
            Event::Error("RUN failed".into())
        );
    }
}
