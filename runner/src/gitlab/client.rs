//! The HTTP client.

use super::types::*;
use super::GitlabError;
use crate::metrics::Metrics;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use std::sync::Arc;
use std::time::Duration;

/// What `Job-Status` said about the job on GitLab's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteJobStatus {
    /// Still running (or nothing said).
    Running,
    /// The user cancelled: stop the script, run `after_script`.
    Canceling,
    /// Cancelled or failed on GitLab: stop at once.
    Aborted,
}

impl RemoteJobStatus {
    fn from_headers(h: &HeaderMap) -> Self {
        match h.get("Job-Status").and_then(|v| v.to_str().ok()) {
            Some("canceling") => Self::Canceling,
            Some("canceled") | Some("failed") => Self::Aborted,
            _ => Self::Running,
        }
    }
}

/// The answer to a job request.
#[derive(Debug)]
pub enum JobRequestOutcome {
    /// A job (201).
    Job(Box<JobResponse>),
    /// No job (204); `last_update` is to be sent back next time.
    NoJob {
        /// `X-GitLab-Last-Update`.
        last_update: Option<String>,
    },
    /// The token is not valid (403): stop polling with it.
    Forbidden,
    /// GitLab asks to slow down (409, 422, 429, 5xx).
    Backoff {
        /// The status.
        status: u16,
        /// `Retry-After` (429, 503).
        retry_after: Option<Duration>,
    },
}

/// The answer to `PUT /jobs/:id`.
#[derive(Debug, Clone)]
pub struct UpdateOutcome {
    /// HTTP status.
    pub status: u16,
    /// `Job-Status`.
    pub remote: RemoteJobStatus,
    /// `Retry-After` (202, 429, 503).
    pub retry_after: Option<Duration>,
    /// `X-GitLab-Trace-Update-Interval`.
    pub update_interval: Option<Duration>,
}

/// The answer to `PATCH /jobs/:id/trace`.
#[derive(Debug, Clone)]
pub struct PatchOutcome {
    /// HTTP status.
    pub status: u16,
    /// `Job-Status`.
    pub remote: RemoteJobStatus,
    /// End of the `Range: 0-N` header: how much GitLab has.
    pub remote_end: Option<u64>,
    /// `X-GitLab-Trace-Update-Interval`.
    pub update_interval: Option<Duration>,
}

/// A client for one GitLab instance.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// Where requests are counted, and the token of the entry they are for.
    metrics: Option<(Arc<Metrics>, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish()
    }
}

fn secs_header(h: &HeaderMap, name: &str) -> Option<Duration> {
    let v: u64 = h.get(name)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(v))
}

/// `Retry-After`, capped once here so that no path (a 429, a 503, a 202 of the final update)
/// can be held for hours by a far-off date.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    kiln_retry_after::parse(h.get(RETRY_AFTER)?.to_str().ok()?)
        .map(|d| d.min(super::backoff::MAX_RETRY_AFTER))
}

impl Client {
    /// A client for the GitLab at `url` (e.g. `https://gitlab.example.com/`).
    pub fn new(url: &str) -> Result<Self, GitlabError> {
        let bad = || GitlabError::Url { url: url.into() };
        let mut base = Url::parse(url.trim_end_matches('/')).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad());
        }
        let path = format!("{}/api/v4/", base.path().trim_end_matches('/'));
        base.set_path(&path);
        let http = reqwest::Client::builder()
            .user_agent(format!(
                "kiln-runner {} ({}; {}/{})",
                crate::VERSION,
                crate::REVISION,
                std::env::consts::OS,
                std::env::consts::ARCH
            ))
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(GitlabError::Client)?;
        Ok(Self {
            http,
            base,
            metrics: None,
        })
    }

    /// Counts every request in `metrics`, as the entry `token`'s.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>, token: &str) -> Self {
        self.metrics = Some((metrics, token.to_owned()));
        self
    }

    /// The `/api/v4/` URL everything is relative to.
    pub fn base(&self) -> &Url {
        &self.base
    }

    async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GitlabError> {
        let url = self.base.join(path).map_err(|_| GitlabError::Url {
            url: format!("{}{path}", self.base),
        })?;
        let method_name = method_label(&method);
        let res = build(self.http.request(method, url)).send().await;
        if let Some((m, token)) = &self.metrics {
            let status = res.as_ref().ok().map(|r| r.status().as_u16());
            m.api_request(token, endpoint, method_name, status);
        }
        res.map_err(|source| GitlabError::Transport { endpoint, source })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        endpoint: &'static str,
        res: reqwest::Response,
    ) -> Result<T, GitlabError> {
        let bytes = res
            .bytes()
            .await
            .map_err(|source| GitlabError::Transport { endpoint, source })?;
        serde_json::from_slice(&bytes).map_err(|source| GitlabError::Decode { endpoint, source })
    }

    /// Registers a runner with a legacy registration token; returns its credentials.
    pub async fn register(&self, req: &RegisterRequest) -> Result<RunnerCredentials, GitlabError> {
        const EP: &str = "register_runner";
        let res = self
            .send(EP, Method::POST, "runners", |b| b.json(req))
            .await?;
        match res.status() {
            StatusCode::CREATED | StatusCode::OK => Self::json(EP, res).await,
            s => Err(GitlabError::Status {
                endpoint: EP,
                status: s.as_u16(),
            }),
        }
    }

    /// Checks a runner authentication token (`glrt-…`) and records `system_id`.
    pub async fn verify(
        &self,
        token: &str,
        system_id: &str,
    ) -> Result<RunnerCredentials, GitlabError> {
        const EP: &str = "verify_runner";
        let body = serde_json::json!({ "token": token, "system_id": system_id });
        let res = self
            .send(EP, Method::POST, "runners/verify", |b| b.json(&body))
            .await?;
        match res.status() {
            StatusCode::OK | StatusCode::CREATED => {
                // Old GitLabs answer an empty body.
                Ok(Self::json(EP, res).await.unwrap_or(RunnerCredentials {
                    id: None,
                    token: Some(token.into()),
                    token_expires_at: None,
                }))
            }
            s => Err(GitlabError::Status {
                endpoint: EP,
                status: s.as_u16(),
            }),
        }
    }

    /// Deletes the runner owning `token`.
    pub async fn unregister(&self, token: &str) -> Result<(), GitlabError> {
        const EP: &str = "unregister_runner";
        let body = serde_json::json!({ "token": token });
        let res = self
            .send(EP, Method::DELETE, "runners", |b| b.json(&body))
            .await?;
        match res.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            s => Err(GitlabError::Status {
                endpoint: EP,
                status: s.as_u16(),
            }),
        }
    }

    /// Asks for a job.
    pub async fn request_job(
        &self,
        req: &JobRequest<'_>,
    ) -> Result<JobRequestOutcome, GitlabError> {
        const EP: &str = "request_job";
        let res = self
            .send(EP, Method::POST, "jobs/request", |b| b.json(req))
            .await?;
        let status = res.status();
        Ok(match status.as_u16() {
            201 => JobRequestOutcome::Job(Box::new(Self::json(EP, res).await?)),
            204 => JobRequestOutcome::NoJob {
                last_update: res
                    .headers()
                    .get("X-GitLab-Last-Update")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
            403 => JobRequestOutcome::Forbidden,
            s => JobRequestOutcome::Backoff {
                status: s,
                retry_after: retry_after(res.headers()),
            },
        })
    }

    /// Updates a job's state (`PUT /jobs/:id`).
    pub async fn update_job(
        &self,
        id: u64,
        req: &UpdateJobRequest<'_>,
    ) -> Result<UpdateOutcome, GitlabError> {
        let res = self
            .send("update_job", Method::PUT, &format!("jobs/{id}"), |b| {
                b.json(req)
            })
            .await?;
        let h = res.headers();
        Ok(UpdateOutcome {
            status: res.status().as_u16(),
            remote: RemoteJobStatus::from_headers(h),
            retry_after: retry_after(h),
            update_interval: secs_header(h, "X-GitLab-Trace-Update-Interval"),
        })
    }

    /// Appends `data` at `start` to the job's trace (`PATCH /jobs/:id/trace`).
    pub async fn patch_trace(
        &self,
        id: u64,
        job_token: &str,
        start: u64,
        data: Vec<u8>,
    ) -> Result<PatchOutcome, GitlabError> {
        let end = start + data.len() as u64 - 1;
        let res = self
            .send(
                "patch_trace",
                Method::PATCH,
                &format!("jobs/{id}/trace"),
                |b| {
                    b.header("JOB-TOKEN", job_token)
                        .header("Content-Range", format!("{start}-{end}"))
                        .header(CONTENT_TYPE, "text/plain")
                        .body(data)
                },
            )
            .await?;
        let h = res.headers();
        let remote_end = h
            .get("Range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, e)| e.trim().parse().ok());
        Ok(PatchOutcome {
            status: res.status().as_u16(),
            remote: RemoteJobStatus::from_headers(h),
            remote_end,
            update_interval: secs_header(h, "X-GitLab-Trace-Update-Interval"),
        })
    }
}

/// The `method` label of a request: the methods the runner API uses.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_capped_where_it_is_read() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(
            retry_after(&h),
            Some(super::super::backoff::MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn base_url_gets_api_path() {
        let c = Client::new("https://gitlab.example.com").unwrap();
        assert_eq!(c.base().as_str(), "https://gitlab.example.com/api/v4/");
        let c = Client::new("https://example.com/gitlab/").unwrap();
        assert_eq!(c.base().as_str(), "https://example.com/gitlab/api/v4/");
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
    }
}
