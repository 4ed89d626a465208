//! An entry's health, as gitlab-runner keeps it: GitLab refusing its job requests
//! `unhealthy_requests_limit` times in a row pauses the entry for `unhealthy_interval`,
//! after which it asks again; one accepted request makes it healthy.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct State {
    failures: u32,
    paused_at: Option<Instant>,
}

/// Shared by every request loop of one entry (`request_concurrency`), so that the limit
/// counts the entry's refusals, not each loop's.
#[derive(Debug, Default)]
pub(crate) struct Health {
    state: Mutex<State>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// GitLab answered a job request as it should, or the configuration changed (maybe a new
    /// token or URL): refusals count from zero again.
    pub(crate) fn reset(&self) {
        *self.lock() = State::default();
    }

    /// GitLab refused a job request; true when this refusal reached `limit` and paused
    /// the entry.
    pub(crate) fn refused(&self, limit: u32) -> bool {
        let mut s = self.lock();
        s.failures += 1;
        if s.failures >= limit && s.paused_at.is_none() {
            s.paused_at = Some(Instant::now());
            return true;
        }
        false
    }

    /// How much longer the entry stays paused; `None` once `interval` has passed, which
    /// also gives it a fresh count of refusals.
    pub(crate) fn paused_for(&self, interval: Duration) -> Option<Duration> {
        let mut s = self.lock();
        let left = interval.checked_sub(s.paused_at?.elapsed());
        match left {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                *s = State::default();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_after_limit_and_recovers() {
        let h = Health::default();
        assert!(!h.refused(3));
        assert!(!h.refused(3));
        assert_eq!(h.paused_for(Duration::from_secs(60)), None);
        assert!(h.refused(3));
        assert!(h.paused_for(Duration::from_secs(60)).is_some());
        assert_eq!(h.paused_for(Duration::ZERO), None);
        // The pause is over: the count starts again.
        assert!(!h.refused(3));
        h.reset();
        assert!(!h.refused(2));
    }
}
