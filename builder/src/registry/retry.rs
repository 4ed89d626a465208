//! When to try a request again and how long to wait first.

use std::time::Duration;

/// Backoff settings taken from the client's configuration.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay before the first retry.
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0-based): exponential, or what the registry
    /// asked for in `Retry-After`, capped either way so a hostile header cannot stall a build.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .checked_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
            .unwrap_or(self.max);
        retry_after.unwrap_or(exp).min(self.max)
    }
}

/// Statuses worth another try: overload and gateway failures are usually over soon.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport error is worth another try (reset, refused, timed out, cut body).
pub fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

/// `Retry-After` as seconds or as an HTTP date (a date already past means now).
pub fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    kiln_retry_after::parse(value?.to_str().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            retries: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(p.delay(0, None), Duration::from_millis(100));
        assert_eq!(p.delay(2, None), Duration::from_millis(400));
        assert_eq!(p.delay(10, None), Duration::from_secs(1));
        assert_eq!(p.delay(40, None), Duration::from_secs(1));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(1)
        );
        let h = reqwest::header::HeaderValue::from_static("2");
        assert_eq!(parse_retry_after(Some(&h)), Some(Duration::from_secs(2)));
        let junk = reqwest::header::HeaderValue::from_static("soon");
        assert_eq!(parse_retry_after(Some(&junk)), None);
    }
}
