//! The endpoint on `listen_address`: `/metrics` and `/health`, one `GET` per connection
//! (Prometheus and load-balancer probes need nothing more, so no HTTP server crate).

use super::{Metrics, MetricsError};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Binds `addr` and serves `/metrics` and `/health` until the task is dropped; returns
/// the bound address (useful with port 0).
pub async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let bind_error = |source| MetricsError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(answer(sock, metrics.clone()));
        }
    });
    Ok((local, task))
}

async fn answer(mut sock: tokio::net::TcpStream, metrics: Arc<Metrics>) {
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    // Only the request line matters; stop at the end of the headers.
    while got < buf.len() {
        match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
        }
        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let req = String::from_utf8_lossy(&buf[..got]);
    let path = req.split_whitespace().nth(1).unwrap_or("");
    // Query strings (`/metrics?x=y`) are ignored, as Prometheus may add some.
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
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
}
