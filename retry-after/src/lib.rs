//! The HTTP `Retry-After` header (RFC 9110 §10.2.3), shared by the registry client and
//! the runner so that both read it the same way. A crate of its own so that the runner
//! does not link the builder for one function.

use std::time::{Duration, SystemTime};

/// `Retry-After` as seconds or as an HTTP date; a date already past means now. `None`
/// for anything else.
pub fn parse(value: &str) -> Option<Duration> {
    parse_at(value, SystemTime::now())
}

/// [`parse`] with dates measured from `now`.
pub fn parse_at(value: &str, now: SystemTime) -> Option<Duration> {
    let s = value.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_dates_and_junk() {
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 10 "), Some(Duration::from_secs(10)));
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        let at = httpdate::parse_http_date(date).unwrap();
        assert_eq!(
            parse_at(date, at - Duration::from_secs(7)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_at(date, at + Duration::from_secs(60)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-1"), None);
    }
}
