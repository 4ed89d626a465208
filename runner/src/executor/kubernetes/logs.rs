//! Following a container's log into the job's trace. The log is asked for with
//! timestamps, so a stream that drops before the container ends is resumed from the last
//! line's time without repeating or losing lines.

use super::status::{container_state, ContainerState};
use super::watch::PodSeen;
use super::PodError;
use crate::trace::Trace;
use futures_util::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::Api;
use std::time::Duration;

/// Where a resumed stream starts: lines at `time` up to `seen_at_time` were written already.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resume {
    time: Option<String>,
    seen_at_time: usize,
}

impl Resume {
    /// Takes one timestamped line; returns its text if it was not written before.
    pub fn take<'a>(&mut self, line: &'a str, skip_at: &mut usize) -> Option<&'a str> {
        let (ts, text) = line.split_once(' ').unwrap_or((line, ""));
        // RFC 3339 with nanoseconds, all in UTC: equal lengths compare as times do.
        if let Some(last) = &self.time {
            if ts.len() == last.len() && ts < last.as_str() {
                return None;
            }
            if ts == last {
                if *skip_at > 0 {
                    *skip_at -= 1;
                    return None;
                }
                self.seen_at_time += 1;
                return Some(text);
            }
        }
        self.time = Some(ts.to_owned());
        self.seen_at_time = 1;
        *skip_at = 0;
        Some(text)
    }

    fn since(&self) -> Option<jiff::Timestamp> {
        self.time.as_deref().and_then(|t| t.parse().ok())
    }
}

/// Copies `container`'s log into `trace` until the container ends, resuming a dropped
/// stream. Returns once the stream ended with the container terminated (or the pod
/// gone), as the job's shared pod watch `seen` tells: no call of its own to ask.
pub async fn follow(
    api: &Api<Pod>,
    pod: &str,
    container: &str,
    trace: &Trace,
    namespace: &str,
    seen: &tokio::sync::watch::Receiver<PodSeen>,
) -> Result<(), PodError> {
    let mut resume = Resume::default();
    let mut tries = 0u32;
    loop {
        let lp = LogParams {
            container: Some(container.to_owned()),
            follow: true,
            timestamps: true,
            // sinceTime has one-second resolution on the server: lines of that second
            // come again and are skipped by count.
            since_time: resume.since(),
            ..LogParams::default()
        };
        let mut skip_at = resume.seen_at_time;
        match api.log_stream(pod, &lp).await {
            Ok(stream) => {
                let mut lines = stream.lines();
                while let Some(Ok(line)) = futures_util::StreamExt::next(&mut lines).await {
                    if let Some(text) = resume.take(&line, &mut skip_at) {
                        trace.write(text.as_bytes());
                        trace.write(b"\n");
                    }
                }
            }
            Err(e) if super::error::is_not_found(&e) => return Ok(()),
            Err(e) => {
                tries += 1;
                if tries > 5 {
                    return Err(PodError::api("get", "pods/log", namespace)(e));
                }
            }
        }
        // A stream that ended before the watch saw the container end is resumed: the
        // resumption repeats nothing, so a watch lagging behind costs one more request.
        match &*seen.borrow() {
            PodSeen::Gone => return Ok(()),
            PodSeen::Present(p)
                if matches!(
                    container_state(p, container),
                    ContainerState::Terminated { .. }
                ) =>
            {
                return Ok(())
            }
            PodSeen::Present(_) | PodSeen::NotYet => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_stream_skips_what_was_written_and_keeps_what_was_not() {
        let mut r = Resume::default();
        let mut skip = 0;
        let first = [
            "2026-12-02T10:00:00.100000000Z a",
            "2026-12-02T10:00:01.000000000Z b",
            "2026-12-02T10:00:01.000000000Z c",
        ];
        let out: Vec<_> = first.iter().filter_map(|l| r.take(l, &mut skip)).collect();
        assert_eq!(out, ["a", "b", "c"]);
        // The server resends from the start of the second: b and c again, then d.
        let mut skip = r.seen_at_time;
        let again = [
            "2026-12-02T10:00:00.900000000Z a2",
            "2026-12-02T10:00:01.000000000Z b",
            "2026-12-02T10:00:01.000000000Z c",
            "2026-12-02T10:00:01.000000000Z c2",
            "2026-12-02T10:00:02.000000000Z d",
        ];
        let out: Vec<_> = again.iter().filter_map(|l| r.take(l, &mut skip)).collect();
        assert_eq!(out, ["c2", "d"]);
        assert_eq!(r.since().unwrap().to_string(), "2026-12-02T10:00:02Z");
    }
}
