//! Sending the trace as `PATCH /jobs/:id/trace` requests.

use super::Trace;
use crate::gitlab::{Client, RemoteJobStatus};
use std::time::Duration;

/// The largest patch sent at once.
pub const MAX_PATCH: usize = 1024 * 1024;

/// How a round of patches went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipResult {
    /// Everything written so far is on GitLab.
    UpToDate,
    /// Something is left; try again later (network error, 5xx, …).
    Behind,
    /// GitLab asked to stop the script and run `after_script`.
    Canceling,
    /// GitLab no longer accepts the trace (403, 404, `Job-Status: canceled/failed`).
    Aborted,
}

/// Keeps track of what GitLab has of one job's trace.
#[derive(Debug)]
pub struct TraceShipper {
    client: Client,
    job_id: u64,
    job_token: String,
    trace: Trace,
    sent: usize,
    max_patch: usize,
    /// The interval GitLab last asked for (`X-GitLab-Trace-Update-Interval`).
    pub update_interval: Option<Duration>,
}

impl TraceShipper {
    /// A shipper for `trace` of job `job_id`.
    pub fn new(client: Client, job_id: u64, job_token: String, trace: Trace) -> Self {
        Self {
            client,
            job_id,
            job_token,
            trace,
            sent: 0,
            max_patch: MAX_PATCH,
            update_interval: None,
        }
    }

    /// Sends at most `max` bytes a patch (tests use small values).
    pub fn with_max_patch(mut self, max: usize) -> Self {
        self.max_patch = max.max(1);
        self
    }

    /// Bytes GitLab is known to have.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Starts over from byte 0 (after a 412 on the final update).
    pub fn reset(&mut self) {
        self.sent = 0;
    }

    /// True when nothing is left to send.
    pub fn up_to_date(&self) -> bool {
        self.sent >= self.trace.len()
    }

    /// Sends everything written so far, patch by patch.
    pub async fn ship(&mut self) -> ShipResult {
        let mut canceling = false;
        loop {
            let chunk = self.trace.slice(self.sent, self.max_patch);
            if chunk.is_empty() {
                return if canceling {
                    ShipResult::Canceling
                } else {
                    ShipResult::UpToDate
                };
            }
            let len = chunk.len();
            let out = match self
                .client
                .patch_trace(self.job_id, &self.job_token, self.sent as u64, chunk)
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(job = self.job_id, error = %crate::error_chain(&e), "trace patch failed");
                    return ShipResult::Behind;
                }
            };
            if let Some(i) = out.update_interval {
                self.update_interval = Some(i);
            }
            match out.remote {
                RemoteJobStatus::Aborted => return ShipResult::Aborted,
                RemoteJobStatus::Canceling => canceling = true,
                RemoteJobStatus::Running => {}
            }
            match out.status {
                202 => self.sent += len,
                416 => {
                    // GitLab has a different length than we thought: continue from there.
                    let remote = out.remote_end.unwrap_or(0) as usize;
                    tracing::warn!(
                        job = self.job_id,
                        sent = self.sent,
                        remote,
                        "trace range mismatch"
                    );
                    let next = remote.min(self.trace.len());
                    if next == self.sent {
                        return ShipResult::Behind;
                    }
                    self.sent = next;
                }
                403 | 404 => return ShipResult::Aborted,
                status => {
                    tracing::warn!(job = self.job_id, status, "trace patch not accepted");
                    return ShipResult::Behind;
                }
            }
        }
    }
}
