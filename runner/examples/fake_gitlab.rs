//! The tests' fake GitLab (`kiln_testkit::fake_gitlab`) as a process, for `bench/runner.py`.
//!
//! `cargo run --release -p kiln-runner --example fake_gitlab -- [--long-poll-ms N]` prints
//! its URL on the first line of stdout and serves until killed. Besides GitLab's runner API
//! it answers, under `/_fake/`:
//! - `POST /_fake/jobs` `{"count": N, "script": ["…"]}`: queues N jobs (fresh ids);
//! - `GET /_fake/stats`: per job, milliseconds from being queued to `PUT state=running`
//!   (`ack_ms`) and to the final update (`done_ms`), the final state, and whether the
//!   trace checksum and size in the final update match the trace GitLab holds;
//! - `POST /_fake/reset`: forgets jobs, traces, stats and recorded requests.

use kiln_testkit::fake_gitlab as common;

use common::{job_id_of, FakeGitlab, JobSpec, Resp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

#[derive(Default)]
struct JobStat {
    queued: Option<Instant>,
    ack: Option<Instant>,
    done: Option<Instant>,
    state: Option<String>,
    checksum_ok: Option<bool>,
}

fn ms(from: Option<Instant>, to: Option<Instant>) -> Value {
    match (from, to) {
        (Some(a), Some(b)) => json!(b.saturating_duration_since(a).as_secs_f64() * 1000.0),
        _ => Value::Null,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut long_poll = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--long-poll-ms" => {
                let v: u64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--long-poll-ms N");
                long_poll = Some(Duration::from_millis(v));
            }
            other => panic!("unknown argument {other:?} (--long-poll-ms N)"),
        }
    }
    let fake = FakeGitlab::start().await;
    fake.set_long_poll(long_poll);
    let pushed = fake.pushed.clone();
    let requests = fake.requests.clone();
    let mut stats: BTreeMap<u64, JobStat> = BTreeMap::new();
    let mut next_id = 1000u64;
    fake.set_override(move |r, s| {
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/_fake/jobs") => {
                let body = r.json();
                let count = body["count"].as_u64().unwrap_or(1);
                let script: Vec<&str> = body["script"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_else(|| vec!["true"]);
                let now = Instant::now();
                for _ in 0..count {
                    next_id += 1;
                    s.jobs.push_back(JobSpec::new(next_id, &script).json());
                    stats.insert(
                        next_id,
                        JobStat {
                            queued: Some(now),
                            ..JobStat::default()
                        },
                    );
                }
                pushed.notify_waiters();
                return Some(Resp::new(201).json(&json!({"queued": count})));
            }
            ("GET", "/_fake/stats") => {
                let jobs: Vec<Value> = stats
                    .iter()
                    .map(|(id, st)| {
                        json!({
                            "id": id,
                            "ack_ms": ms(st.queued, st.ack),
                            "done_ms": ms(st.queued, st.done),
                            "state": st.state,
                            "checksum_ok": st.checksum_ok,
                        })
                    })
                    .collect();
                return Some(Resp::new(200).json(&json!({ "jobs": jobs })));
            }
            ("POST", "/_fake/reset") => {
                stats.clear();
                s.jobs.clear();
                s.traces.clear();
                s.final_updates.clear();
                requests.lock().unwrap().clear();
                return Some(Resp::new(204));
            }
            ("PUT", p) => {
                let (Some(id), body) = (job_id_of(p), r.json()) else {
                    return None;
                };
                let st = stats.entry(id).or_default();
                match body["state"].as_str() {
                    Some("running") => {
                        st.ack.get_or_insert(r.at);
                    }
                    Some(state) => {
                        let trace = s.traces.get(&id).map(Vec::as_slice).unwrap_or_default();
                        let mut h = crc32fast::Hasher::new();
                        h.update(trace);
                        let want = format!("crc32:{:08x}", h.finalize());
                        st.checksum_ok = Some(
                            body["output"]["checksum"] == want.as_str()
                                && body["output"]["bytesize"] == trace.len(),
                        );
                        st.state = Some(state.to_owned());
                        st.done = Some(r.at);
                    }
                    None => {}
                }
            }
            _ => {}
        }
        None
    });
    println!("{}", fake.url);
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
}
