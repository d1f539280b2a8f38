//! At most one log line per interval for an event anyone can cause at any rate (an
//! unauthenticated flood must not turn into a flood of log lines); the line that is
//! written says how many occurrences it stands for.

use std::time::{Duration, Instant};

/// Counts occurrences of one event and says when a line is due.
#[derive(Debug)]
pub(super) struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    unlogged: u64,
}

impl LogThrottle {
    /// A throttle writing at most one line per `interval`.
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            unlogged: 0,
        }
    }

    /// Counts one occurrence at `now`; `Some(n)` when a line is due, `n` being the
    /// occurrences it stands for (this one and those not logged since the last line).
    pub(super) fn hit(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_counts_what_it_stands_for() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(t.hit(t0), Some(1));
        for i in 1..=999 {
            assert_eq!(t.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(t.hit(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(25)), Some(2));
    }
}
