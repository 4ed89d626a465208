//! A fake GitLab for the runner's tests: a real HTTP server on 127.0.0.1 that behaves
//! like GitLab's runner API by default, lets each test override any answer, and records
//! every request. `examples/fake_gitlab.rs` serves it to the benchmark (bench/runner.py).
#![allow(dead_code, missing_docs)]

pub mod exposition;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kiln_runner::config::RunnerConfig;
use kiln_runner::executor::LocalExecutor;
use kiln_runner::gitlab::Client;
use kiln_runner::job::{JobEnv, Shutdown, Timings};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn is_patch(&self) -> bool {
        self.method == "PATCH"
    }
    pub fn is_update(&self) -> bool {
        self.method == "PUT" && self.path.starts_with("/api/v4/jobs/")
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, k: &str, v: impl ToString) -> Self {
        self.headers.push((k.to_owned(), v.to_string()));
        self
    }
    /// `Retry-After` as an HTTP date `secs` from now.
    pub fn retry_after_date(self, secs: u64) -> Self {
        let at = std::time::SystemTime::now() + Duration::from_secs(secs);
        self.header("Retry-After", httpdate::fmt_http_date(at))
    }
    pub fn json(mut self, v: &Value) -> Self {
        self.body = serde_json::to_vec(v).unwrap();
        self.headers
            .push(("Content-Type".into(), "application/json".into()));
        self
    }
}

/// The fake's view of the world; tests read and change it.
#[derive(Debug, Default)]
pub struct State {
    pub jobs: VecDeque<Value>,
    /// What GitLab holds of each job's trace, by job id.
    pub traces: BTreeMap<u64, Vec<u8>>,
    /// `Job-Status` sent on PATCH/PUT answers.
    pub job_status: String,
    pub trace_interval: Option<u64>,
    pub last_update_counter: u64,
    /// Final updates (state success/failed) seen.
    pub final_updates: Vec<Value>,
    /// Hold a job request that finds no job for up to this long, as Workhorse does
    /// (`apiCiLongPollingDuration`), answering as soon as a job is pushed.
    pub long_poll: Option<Duration>,
}

impl State {
    /// Job `id`'s trace as GitLab holds it.
    pub fn trace_mut(&mut self, id: u64) -> &mut Vec<u8> {
        self.traces.entry(id).or_default()
    }
}

/// The job id in `/api/v4/jobs/:id[/…]`.
pub fn job_id_of(path: &str) -> Option<u64> {
    path.strip_prefix("/api/v4/jobs/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

type Override = Box<dyn FnMut(&Recorded, &mut State) -> Option<Resp> + Send>;

pub struct FakeGitlab {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub state: Arc<Mutex<State>>,
    over: Arc<Mutex<Option<Override>>>,
    /// Ends long polls: `notify_waiters` after queueing into `State::jobs` directly.
    pub pushed: Arc<Notify>,
}

fn default_response(r: &Recorded, s: &mut State) -> Resp {
    let status_hdr = if s.job_status.is_empty() {
        "running".to_owned()
    } else {
        s.job_status.clone()
    };
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/v4/jobs/request") => match s.jobs.pop_front() {
            Some(j) => Resp::new(201).json(&j),
            None => {
                s.last_update_counter += 1;
                Resp::new(204).header(
                    "X-GitLab-Last-Update",
                    format!("lu-{}", s.last_update_counter),
                )
            }
        },
        ("POST", "/api/v4/runners") => Resp::new(201)
            .json(&json!({"id": 12, "token": "glrt-registered", "token_expires_at": null})),
        ("POST", "/api/v4/runners/verify") => {
            Resp::new(200).json(&json!({"id": 12, "token": r.json()["token"]}))
        }
        ("DELETE", "/api/v4/runners") => Resp::new(204),
        ("PUT", p) if p.starts_with("/api/v4/jobs/") => {
            let body = r.json();
            if body["state"] != "running" {
                s.final_updates.push(body);
            }
            Resp::new(200).header("Job-Status", status_hdr)
        }
        ("PATCH", p) if p.ends_with("/trace") => {
            let range = r.header("Content-Range").unwrap_or("");
            let (a, b) = range.split_once('-').unwrap_or(("x", "x"));
            let (a, b): (usize, usize) = (a.parse().unwrap_or(usize::MAX), b.parse().unwrap_or(0));
            let trace = s.trace_mut(job_id_of(p).unwrap_or(0));
            if a != trace.len() || b + 1 != a + r.body.len() {
                return Resp::new(416).header("Range", format!("0-{}", trace.len()));
            }
            trace.extend_from_slice(&r.body);
            let mut resp = Resp::new(202)
                .header("Range", format!("0-{}", trace.len()))
                .header("Job-Status", status_hdr);
            if let Some(i) = s.trace_interval {
                resp = resp.header("X-GitLab-Trace-Update-Interval", i);
            }
            resp
        }
        _ => Resp::new(404),
    }
}

impl FakeGitlab {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let state: Arc<Mutex<State>> = Arc::default();
        let over: Arc<Mutex<Option<Override>>> = Arc::default();
        let pushed: Arc<Notify> = Arc::default();
        let (rq, st, ov, pu) = (
            requests.clone(),
            state.clone(),
            over.clone(),
            pushed.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (rq, st, ov, pu) = (rq.clone(), st.clone(), ov.clone(), pu.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (rq, st, ov, pu) = (rq.clone(), st.clone(), ov.clone(), pu.clone());
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let rec = Recorded {
                                method,
                                path,
                                headers,
                                body,
                                at: Instant::now(),
                            };
                            if rec.path == "/api/v4/jobs/request" {
                                hold_while_no_job(&st, &pu).await;
                            }
                            let resp = {
                                let mut s = st.lock().unwrap();
                                let custom =
                                    ov.lock().unwrap().as_mut().and_then(|f| f(&rec, &mut s));
                                custom.unwrap_or_else(|| default_response(&rec, &mut s))
                            };
                            rq.lock().unwrap().push(rec);
                            let mut b = hyper::Response::builder().status(resp.status);
                            for (k, v) in &resp.headers {
                                b = b.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                b.body(Full::new(Bytes::from(resp.body))).unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            requests,
            state,
            over,
            pushed,
        }
    }

    /// Holds job requests that find no job for up to `d` (`None`: answer at once).
    pub fn set_long_poll(&self, d: Option<Duration>) {
        self.state.lock().unwrap().long_poll = d;
    }

    /// Answers requests for which `f` returns `Some` itself; the rest as GitLab would.
    pub fn set_override(
        &self,
        f: impl FnMut(&Recorded, &mut State) -> Option<Resp> + Send + 'static,
    ) {
        *self.over.lock().unwrap() = Some(Box::new(f));
    }

    pub fn push_job(&self, job: Value) {
        self.state.lock().unwrap().jobs.push_back(job);
        self.pushed.notify_waiters();
    }

    /// Whether job `id` was acknowledged as running (its first update, recorded once answered).
    pub fn saw_running(&self, id: u64) -> bool {
        let path = format!("/api/v4/jobs/{id}");
        self.updates_with_state("running")
            .iter()
            .any(|r| r.path == path)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Every job's trace, in job id order (one job's in most tests).
    pub fn trace(&self) -> String {
        let s = self.state.lock().unwrap();
        let all: Vec<u8> = s.traces.values().flatten().copied().collect();
        String::from_utf8_lossy(&all).into_owned()
    }

    /// Job `id`'s trace.
    pub fn trace_of(&self, id: u64) -> Vec<u8> {
        let s = self.state.lock().unwrap();
        s.traces.get(&id).cloned().unwrap_or_default()
    }

    pub fn final_updates(&self) -> Vec<Value> {
        self.state.lock().unwrap().final_updates.clone()
    }

    /// The `PUT /jobs/:id` requests with this `state`, answered or not.
    pub fn updates_with_state(&self, state: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_update() && r.json()["state"] == state)
            .collect()
    }

    pub fn patches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_patch())
            .collect()
    }

    pub fn content_ranges(&self) -> Vec<String> {
        self.patches()
            .iter()
            .map(|r| r.header("Content-Range").unwrap_or("").to_owned())
            .collect()
    }
}

/// Waits, when long polling is on, until a job is queued or the poll duration passes.
async fn hold_while_no_job(state: &Mutex<State>, pushed: &Notify) {
    let Some(d) = state.lock().unwrap().long_poll else {
        return;
    };
    let deadline = tokio::time::Instant::now() + d;
    loop {
        // Registered before the check so that a push in between is not missed.
        let woken = pushed.notified();
        if !state.lock().unwrap().jobs.is_empty() {
            return;
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            return;
        }
    }
}

#[derive(Clone)]
pub struct JobSpec {
    pub id: u64,
    pub token: String,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    pub variables: Vec<Value>,
    pub timeout: u64,
}

impl JobSpec {
    pub fn new(id: u64, script: &[&str]) -> Self {
        Self {
            id,
            token: format!("job-token-{id}-abcdef"),
            script: script.iter().map(|s| s.to_string()).collect(),
            after_script: Vec::new(),
            variables: vec![
                json!({"key": "GIT_STRATEGY", "value": "none", "public": true, "masked": false}),
            ],
            timeout: 3600,
        }
    }
    pub fn after(mut self, lines: &[&str]) -> Self {
        self.after_script = lines.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn var(mut self, key: &str, value: &str, masked: bool, file: bool) -> Self {
        self.variables.push(
            json!({"key": key, "value": value, "public": !masked, "masked": masked, "file": file}),
        );
        self
    }
    pub fn timeout(mut self, t: u64) -> Self {
        self.timeout = t;
        self
    }
    pub fn json(&self) -> Value {
        let mut vars = self.variables.clone();
        vars.push(
            json!({"key": "CI_JOB_TOKEN", "value": self.token, "public": false, "masked": true}),
        );
        vars.push(json!({"key": "CI_JOB_ID", "value": self.id.to_string(), "public": true, "masked": false}));
        let mut steps = vec![
            json!({"name": "script", "script": self.script, "timeout": self.timeout, "when": "on_success", "allow_failure": false}),
        ];
        if !self.after_script.is_empty() {
            steps.push(json!({"name": "after_script", "script": self.after_script, "timeout": self.timeout, "when": "always", "allow_failure": true}));
        }
        json!({
            "id": self.id,
            "token": self.token,
            "allow_git_fetch": true,
            "job_info": {"id": self.id, "name": "build", "stage": "build", "project_id": 4, "project_name": "kiln-test"},
            "git_info": {"repo_url": "https://gitlab.invalid/group/kiln-test.git", "ref": "main", "sha": "0123456789abcdef0123456789abcdef01234567",
                         "before_sha": "0000000000000000000000000000000000000000", "ref_type": "branch", "refspecs": [], "depth": 20},
            "runner_info": {"timeout": self.timeout, "runner_session_url": null},
            "variables": vars,
            "steps": steps,
            "image": null,
            "services": [],
            "features": {"trace_sections": true, "failure_reasons": ["unknown_failure", "script_failure", "runner_system_failure", "job_execution_timeout"]}
        })
    }
}

pub fn fast_timings() -> Timings {
    Timings {
        trace_interval: Duration::from_millis(100),
        keepalive_interval: Duration::from_secs(30),
        retry_base: Duration::from_millis(50),
        retry_cap: Duration::from_millis(400),
        final_update_tries: 20,
        max_patch: 1024 * 1024,
    }
}

pub fn entry(url: &str, builds: &std::path::Path) -> RunnerConfig {
    RunnerConfig {
        name: "test-runner".into(),
        url: url.into(),
        token: "glrt-testtoken123".into(),
        builds_dir: Some(builds.to_owned()),
        ..Default::default()
    }
}

/// A job environment against `fake` with a local executor in `builds`.
pub fn job_env(
    fake: &FakeGitlab,
    builds: &std::path::Path,
    timings: Timings,
) -> (JobEnv, watch::Sender<Shutdown>) {
    job_env_with(fake, entry(&fake.url, builds), timings)
}

pub fn job_env_with(
    fake: &FakeGitlab,
    entry: RunnerConfig,
    timings: Timings,
) -> (JobEnv, watch::Sender<Shutdown>) {
    let (tx, rx) = watch::channel(Shutdown::None);
    let builds = entry.builds_dir.clone().unwrap();
    (
        JobEnv {
            client: Client::new(&fake.url).unwrap(),
            entry: Arc::new(entry),
            executor: Arc::new(LocalExecutor::new(builds)),
            timings,
            shutdown: rx,
            metrics: None,
        },
        tx,
    )
}

pub fn job_response(spec: &JobSpec) -> kiln_runner::gitlab::JobResponse {
    serde_json::from_value(spec.json()).unwrap()
}

pub fn crc(data: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    format!("crc32:{:08x}", h.finalize())
}

/// Waits until `done` holds, looking every 20 ms, and panics naming `what` after `limit`. Tests
/// wait for the state they need rather than sleep a guessed time, so a loaded machine makes them
/// slower, never wrong.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not seen within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
