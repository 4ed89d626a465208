//! Prometheus text metrics and `/health` on `listen_address`.
//!
//! A handful of counters do not justify a metrics framework or an HTTP server crate:
//! the endpoint answers one `GET` per connection.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Upper bounds (seconds) of the job duration histogram.
const BUCKETS: &[f64] = &[30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    running: BTreeMap<String, i64>,
    finished: BTreeMap<(String, String), u64>,
    api: BTreeMap<(String, String), u64>,
    durations: BTreeMap<String, Histogram>,
    healthy: BTreeMap<String, bool>,
}

/// The runner's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn esc(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one API request.
    pub fn api_request(&self, endpoint: &str, status: &str) {
        *self
            .lock()
            .api
            .entry((endpoint.to_owned(), status.to_owned()))
            .or_default() += 1;
    }

    /// A job of `runner` started.
    pub fn job_started(&self, runner: &str) {
        *self.lock().running.entry(runner.to_owned()).or_default() += 1;
    }

    /// A job of `runner` ended in `state` after `took`.
    pub fn job_finished(&self, runner: &str, state: &str, took: Duration) {
        let mut i = self.lock();
        *i.running.entry(runner.to_owned()).or_default() -= 1;
        *i.finished
            .entry((state.to_owned(), runner.to_owned()))
            .or_default() += 1;
        let h = i.durations.entry(runner.to_owned()).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        let secs = took.as_secs_f64();
        for (c, b) in h.counts.iter_mut().zip(BUCKETS) {
            if secs <= *b {
                *c += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Records whether GitLab accepts `runner`'s token (false after a 403).
    pub fn set_healthy(&self, runner: &str, healthy: bool) {
        self.lock().healthy.insert(runner.to_owned(), healthy);
    }

    /// False when some entries are known and none of them is healthy.
    pub fn healthy(&self) -> bool {
        let i = self.lock();
        i.healthy.is_empty() || i.healthy.values().any(|h| *h)
    }

    /// Jobs running now, all entries together.
    pub fn running_jobs(&self) -> i64 {
        self.lock().running.values().sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let i = self.lock();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP kiln_runner_jobs Jobs by state.\n# TYPE kiln_runner_jobs gauge"
        );
        for (runner, n) in &i.running {
            let _ = writeln!(
                o,
                "kiln_runner_jobs{{state=\"running\",runner=\"{}\"}} {n}",
                esc(runner)
            );
        }
        let _ = writeln!(o, "# HELP kiln_runner_jobs_finished_total Jobs finished by final state.\n# TYPE kiln_runner_jobs_finished_total counter");
        for ((state, runner), n) in &i.finished {
            let _ = writeln!(
                o,
                "kiln_runner_jobs_finished_total{{state=\"{}\",runner=\"{}\"}} {n}",
                esc(state),
                esc(runner)
            );
        }
        let _ = writeln!(o, "# HELP kiln_runner_api_requests_total GitLab API requests by endpoint and status.\n# TYPE kiln_runner_api_requests_total counter");
        for ((ep, status), n) in &i.api {
            let _ = writeln!(
                o,
                "kiln_runner_api_requests_total{{endpoint=\"{}\",status=\"{}\"}} {n}",
                esc(ep),
                esc(status)
            );
        }
        let _ = writeln!(o, "# HELP kiln_runner_healthy 1 while GitLab accepts the entry's token.\n# TYPE kiln_runner_healthy gauge");
        for (runner, h) in &i.healthy {
            let _ = writeln!(
                o,
                "kiln_runner_healthy{{runner=\"{}\"}} {}",
                esc(runner),
                u8::from(*h)
            );
        }
        let _ = writeln!(o, "# HELP kiln_runner_job_duration_seconds Job durations.\n# TYPE kiln_runner_job_duration_seconds histogram");
        for (runner, h) in &i.durations {
            let r = esc(runner);
            for (c, b) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    o,
                    "kiln_runner_job_duration_seconds_bucket{{runner=\"{r}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                o,
                "kiln_runner_job_duration_seconds_bucket{{runner=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "kiln_runner_job_duration_seconds_sum{{runner=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "kiln_runner_job_duration_seconds_count{{runner=\"{r}\"}} {}",
                h.count
            );
        }
        o
    }
}

/// Binds `addr` and serves `/metrics` and `/health` until the task is dropped; returns
/// the bound address (useful with port 0).
pub async fn serve(
    addr: &str,
    metrics: std::sync::Arc<Metrics>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| MetricsError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                // Only the request line matters; stop at the end of the headers.
                while got < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[got..]))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => got += n,
                    }
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let req = String::from_utf8_lossy(&buf[..got]);
                let path = req.split_whitespace().nth(1).unwrap_or("");
                let (status, ctype, body) = match path {
                    "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
                    "/health" if metrics.healthy() => ("200 OK", "text/plain", "ok\n".to_owned()),
                    "/health" => (
                        "503 Service Unavailable",
                        "text/plain",
                        "no healthy runner entry\n".to_owned(),
                    ),
                    _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.api_request("request_job", "204");
        m.api_request("request_job", "204");
        m.job_started("a");
        m.job_finished("a", "success", Duration::from_secs(45));
        let t = m.render();
        assert!(
            t.contains("kiln_runner_api_requests_total{endpoint=\"request_job\",status=\"204\"} 2")
        );
        assert!(t.contains("kiln_runner_jobs{state=\"running\",runner=\"a\"} 0"));
        assert!(t.contains("kiln_runner_jobs_finished_total{state=\"success\",runner=\"a\"} 1"));
        assert!(t.contains("kiln_runner_job_duration_seconds_bucket{runner=\"a\",le=\"30\"} 0"));
        assert!(t.contains("kiln_runner_job_duration_seconds_bucket{runner=\"a\",le=\"60\"} 1"));
        assert!(t.contains("kiln_runner_job_duration_seconds_count{runner=\"a\"} 1"));
    }
}
