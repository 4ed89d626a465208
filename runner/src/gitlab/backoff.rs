//! Exponential back-off for calls GitLab asked us to slow down on.

use std::time::Duration;

/// The longest `Retry-After` obeyed: a wrong header must not park an entry or a job's
/// final state for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Doubles from `base` up to `cap`, each wait drawn between half and all of that (so that
/// runners that failed together do not come back together); [`Backoff::reset`] after a
/// success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `base`, never waits more than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            next: base,
        }
    }

    /// The wait before the next try; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// What GitLab asked for in `Retry-After` (the client caps it at [`MAX_RETRY_AFTER`]),
    /// else [`Backoff::next_delay`]. The back-off grows either way, for when GitLab stops
    /// saying.
    pub fn delay_after(&mut self, retry_after: Option<Duration>) -> Duration {
        let d = self.next_delay();
        retry_after.unwrap_or(d)
    }

    /// Back to `base`.
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let ceilings = [1, 2, 4, 5, 5, 5];
        let got: Vec<_> = ceilings.iter().map(|_| b.next_delay()).collect();
        for (d, c) in got.iter().zip(ceilings) {
            let c = Duration::from_secs(c);
            assert!(*d >= c / 2 && *d <= c, "{d:?} not in [{:?}, {c:?}]", c / 2);
        }
        let mut b2 = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let again: Vec<_> = ceilings.iter().map(|_| b2.next_delay()).collect();
        assert_ne!(got, again, "no jitter");
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_wins_within_bounds() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
        assert_eq!(
            b.delay_after(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert!(b.delay_after(None) <= Duration::from_millis(200));
    }
}
