//! Exec over a websocket, in the `v5.channel.k8s.io` and `v4.channel.k8s.io` framings: each
//! binary message starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 the final `Status`,
//! 4 resize, 255 a v5 close of a channel).

use std::process::Stdio;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::body::{self, Body};
use super::logs::pick_container;
use super::query::Query;
use crate::kubelet::procs::signal_group;
use crate::shared::Shared;
use crate::status::ApiError;

const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub(crate) async fn exec(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    query: &Query,
) -> Response<Body> {
    match start(shared, req, ns, name, query) {
        Ok(r) => r,
        Err(e) => body::error(&e),
    }
}

fn start(
    shared: &Arc<Shared>,
    mut req: Request<Incoming>,
    ns: &str,
    name: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let pod = shared
        .get_pod(ns, name)
        .ok_or_else(|| ApiError::not_found("pods", name))?;
    let container = pick_container(&pod, name, query.get("container"))?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let command = query.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let (stdin, stdout, stderr) = (
        query.flag("stdin"),
        query.flag("stdout"),
        query.flag("stderr"),
    );
    if !stdin && !stdout && !stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let headers = req.headers();
    let is_ws = headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let (true, Some(key)) = (is_ws, key) else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: no supported subprotocol in {offered:?}"
        )));
    };
    let proc = shared
        .kubelet
        .container_proc(ns, name, &container)
        .filter(|p| p.exit.borrow().is_none())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to upgrade connection: container not found (\"{container}\")"
            ))
        })?;
    let mut cmd = crate::kubelet::container::exec_command(&proc, &command);
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let child = cmd
        .spawn()
        .map_err(|e| ApiError::bad_request(format!("unable to upgrade connection: {e}")))?;
    if let Some(pid) = child.id() {
        shared.kubelet.procs.add(pid);
        shared.kubelet.add_exec(ns, name, pid);
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let v5 = *protocol == PROTOCOLS[0];
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            if let Some(pid) = child.id() {
                signal_group(pid, rustix::process::Signal::KILL);
            }
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        pump(ws, child, command, v5).await;
    });
    Ok(Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", *protocol)
        .body(body::full(""))
        .unwrap_or_default())
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// Moves bytes between the socket and the process until it exits; a client that goes away kills
/// the process's group.
async fn pump(
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    mut child: tokio::process::Child,
    command: Vec<String>,
    v5: bool,
) {
    let pid = child.id().unwrap_or(0);
    let (mut sink, mut source) = ws.split();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out_buf, mut err_buf) = (vec![0u8; 16384], vec![0u8; 16384]);
    let mut client_gone = false;
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = async { stdout.as_mut().unwrap().read(&mut out_buf).await }, if stdout.is_some() => match n {
                Ok(n) if n > 0 => if sink.send(framed(1, &out_buf[..n])).await.is_err() { client_gone = true; break },
                _ => stdout = None,
            },
            n = async { stderr.as_mut().unwrap().read(&mut err_buf).await }, if stderr.is_some() => match n {
                Ok(n) if n > 0 => if sink.send(framed(2, &err_buf[..n])).await.is_err() { client_gone = true; break },
                _ => stderr = None,
            },
            m = source.next() => match m {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => match b[0] {
                    0 => if let Some(i) = stdin.as_mut() {
                        if i.write_all(&b[1..]).await.is_err() { stdin = None; }
                    },
                    255 if v5 && b.get(1) == Some(&0) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => { client_gone = true; break },
                Some(Ok(_)) => {}
            },
        }
    }
    if client_gone {
        signal_group(pid, rustix::process::Signal::KILL);
        let _ = child.wait().await;
        return;
    }
    drop(stdin);
    let code = match child.wait().await {
        Ok(s) => s.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
        }),
        Err(_) => 1,
    };
    let status = serde_json::to_vec(&exit_status(code, &command)).unwrap_or_default();
    let _ = sink.send(framed(3, &status)).await;
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.flush().await;
}
