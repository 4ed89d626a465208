//! Waiting for a daemon: `GET /_ping` with the client certificate until it answers OK or a
//! deadline passes. A refused certificate or a wrong host name is final at once; "nothing
//! listens" and "not ready" are retried, and the timeout names the last of them.

use super::client::{DockerClient, Ping};
use super::DindError;
use std::time::{Duration, Instant};

/// How long one `/_ping` may take before it counts as "not ready".
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Pings `client`'s daemon until it answers, for at most `deadline`.
///
/// # Errors
/// [`DindError::Tls`] (certificate refused, wrong host name, untrusted server) and
/// [`DindError::BadHost`]/[`DindError::Connect`] at once; [`DindError::Timeout`] holding the
/// last [`DindError::NothingListens`] or [`DindError::NotReady`] when the deadline passes.
pub async fn wait_ready(client: &DockerClient, deadline: Duration) -> Result<Ping, DindError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        let attempt = tokio::time::timeout(left.min(PING_TIMEOUT), client.ping()).await;
        let err = match attempt {
            Ok(Ok(ping)) => return Ok(ping),
            Ok(Err(e)) if !e.is_transient() => return Err(e),
            Ok(Err(e)) => e,
            Err(_) => DindError::NotReady {
                host: client.endpoint().to_string(),
                detail: format!(
                    "no answer to /_ping within {}s",
                    left.min(PING_TIMEOUT).as_secs_f32()
                ),
            },
        };
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(DindError::Timeout {
                host: client.endpoint().to_string(),
                waited: start.elapsed(),
                last: Box::new(err),
            });
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dind::DockerEndpoint;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_socket_nobody_listens_on_times_out_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let ep = DockerEndpoint::parse(
            &format!("unix://{}", dir.path().join("none.sock").display()),
            None,
        )
        .unwrap();
        let client = DockerClient::new(ep).unwrap();
        let start = Instant::now();
        let e = rt()
            .block_on(wait_ready(&client, Duration::from_millis(400)))
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(400));
        assert!(start.elapsed() < Duration::from_secs(3));
        let DindError::Timeout { last, .. } = &e else {
            panic!("{e}")
        };
        assert!(matches!(**last, DindError::NothingListens { .. }), "{e}");
        let text = crate::error_chain::chain_line(&e);
        assert!(text.contains("was not ready within"), "{text}");
        assert!(text.contains("nothing listens at unix://"), "{text}");
    }

    #[test]
    fn a_listener_that_never_answers_is_not_ready() {
        let rt = rt();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds connections without a word, like a daemon still starting up.
        let _hold = rt.spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let ep = DockerEndpoint::parse(&format!("tcp://{addr}"), None).unwrap();
        let client = DockerClient::new(ep).unwrap();
        let e = rt
            .block_on(wait_ready(&client, Duration::from_millis(600)))
            .unwrap_err();
        let DindError::Timeout { last, .. } = &e else {
            panic!("{e}")
        };
        assert!(matches!(**last, DindError::NotReady { .. }), "{e}");
    }
}
