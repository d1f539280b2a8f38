//! When to dial a lost link again: exponential backoff with jitter, so that routers
//! that lost each other at the same moment do not all dial again at the same moment.
//!
//! OpenZiti backs off from 5 s to 5 min (×1.5) while the peer is connected to the
//! controller (`router/env/config_forwarder.go`); Weft starts lower by default (a lost
//! link costs circuits their shortest path) and takes the bounds from the router's
//! `[link]` configuration.

use std::time::Duration;

/// Backoff settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// The first delay.
    pub min: Duration,
    /// The longest delay (before jitter).
    pub max: Duration,
    /// Growth per failed dial (at least 1).
    pub factor: f64,
    /// Each delay is moved by up to this fraction of itself, either way (0 to 1).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(500),
            max: Duration::from_secs(60),
            factor: 1.5,
            jitter: 0.2,
        }
    }
}

/// The delays between dials of one link.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `config.min`.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            current: config.min,
        }
    }

    /// The delay before the next dial; `random` is a number in `[0, 1)` the caller
    /// draws (so the delay is a pure function of its inputs). Each call grows the next
    /// delay by the factor, up to the maximum.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let scale = 1.0 + jitter * (2.0 * random - 1.0);
        let delay = self.current.mul_f64(scale);
        let grown = self.current.mul_f64(self.config.factor.max(1.0));
        self.current = grown.min(self.config.max).max(self.config.min);
        delay
    }

    /// The link came up: the next loss starts from the minimum again.
    pub fn reset(&mut self) {
        self.current = self.config.min;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_reset() {
        let mut b = Backoff::new(BackoffConfig {
            min: Duration::from_secs(1),
            max: Duration::from_secs(4),
            factor: 2.0,
            jitter: 0.0,
        });
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay(0.3).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 4, 4]);
        b.reset();
        assert_eq!(b.next_delay(0.9), Duration::from_secs(1));
    }

    #[test]
    fn jitter_moves_a_delay_either_way_by_at_most_its_fraction() {
        let config = BackoffConfig {
            min: Duration::from_secs(10),
            jitter: 0.2,
            ..BackoffConfig::default()
        };
        assert_eq!(Backoff::new(config).next_delay(0.0), Duration::from_secs(8));
        assert_eq!(
            Backoff::new(config).next_delay(0.5),
            Duration::from_secs(10)
        );
        assert_eq!(
            Backoff::new(config).next_delay(f64::NAN),
            Duration::from_secs(10)
        );
        assert!(Backoff::new(config).next_delay(0.999_999) < Duration::from_secs(12));
    }

    proptest! {
        #[test]
        fn every_delay_stays_within_the_jittered_bounds(
            min_ms in 1u64..5_000,
            extra_ms in 0u64..100_000,
            factor in 1.0f64..4.0,
            jitter in 0.0f64..1.0,
            draws in proptest::collection::vec(0.0f64..1.0, 1..50),
        ) {
            let config = BackoffConfig {
                min: Duration::from_millis(min_ms),
                max: Duration::from_millis(min_ms + extra_ms),
                factor,
                jitter,
            };
            let mut b = Backoff::new(config);
            for r in draws {
                let d = b.next_delay(r);
                prop_assert!(d >= config.min.mul_f64(1.0 - jitter) - Duration::from_nanos(1));
                prop_assert!(d <= config.max.mul_f64(1.0 + jitter) + Duration::from_nanos(1));
            }
        }
    }
}
