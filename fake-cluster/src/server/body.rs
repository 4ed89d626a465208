//! Response bodies: whole JSON documents and streams fed from a task.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::status::ApiError;

/// Every response's body type.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// A streamed body: chunks sent by a task; an `Err` aborts the connection mid-stream.
pub(crate) struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// A streamed response and the sender its task writes to.
pub(crate) fn stream(
    content_type: &str,
) -> (Response<Body>, mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let (tx, rx) = mpsc::channel(64);
    let resp = Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private")
        .body(ChannelBody(rx).boxed())
        .unwrap_or_default();
    (resp, tx)
}

/// A whole body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A JSON document with a status code.
pub(crate) fn json(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_default()
}

/// A failure as its `Status`.
pub(crate) fn error(e: &ApiError) -> Response<Body> {
    json(e.code, &e.to_json())
}
