//! Which controller to connect to next, and when (sans-IO).
//!
//! A router may be given several controller control addresses (controllers sharing one
//! database). [`Rotation`] walks them round robin: every connection attempt that ends
//! (the connect or TLS handshake failed, the hello was not acknowledged, or a
//! connection that was up was lost) moves on to the next address. The backoff (with
//! jitter) is waited only once a whole round — one attempt per address — has ended
//! without a connection coming up, never between the addresses of a round, so a router
//! whose controller died reaches the next one at once. A hello acknowledged resets the
//! backoff and starts a new round; the loss of that connection is the round's first
//! attempt, so a single controller that keeps dropping the router is retried after the
//! minimum backoff, as before there were several.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

use std::time::Duration;

use crate::link::backoff::{Backoff, BackoffConfig};

/// What to do after an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// Connect to the next address at once.
    Now,
    /// A round ended without a connection: wait this long first.
    After(Duration),
}

/// The addresses, the one in use, and the backoff between rounds.
#[derive(Clone, Debug)]
pub struct Rotation {
    addresses: Vec<String>,
    current: usize,
    /// Attempts ended since the last connection came up (or the last backoff).
    ended_in_round: usize,
    /// The address the last acknowledged connection went to.
    last_up: Option<usize>,
    backoff: Backoff,
}

impl Rotation {
    /// A rotation starting at the first of `addresses` (which must not be empty: the
    /// configuration refuses an empty list), with backoff from `min` to `max` (×2 per
    /// failed round, ±20 % jitter).
    pub fn new(addresses: Vec<String>, min: Duration, max: Duration) -> Self {
        Self {
            addresses,
            current: 0,
            ended_in_round: 0,
            last_up: None,
            backoff: Backoff::new(BackoffConfig {
                min,
                max: max.max(min),
                factor: 2.0,
                jitter: 0.2,
            }),
        }
    }

    /// The address to connect to now.
    pub fn address(&self) -> &str {
        self.addresses.get(self.current).map_or("", String::as_str)
    }

    /// The index of [`Self::address`] in the list.
    pub fn index(&self) -> usize {
        self.current
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether the list is empty (never, for a configuration that validated).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// The controller at [`Self::address`] acknowledged the hello. Returns whether this
    /// is a failover: an earlier connection went to another address.
    pub fn up(&mut self) -> bool {
        self.ended_in_round = 0;
        self.backoff.reset();
        let switched = self.last_up.is_some_and(|last| last != self.current);
        self.last_up = Some(self.current);
        switched
    }

    /// The attempt on [`Self::address`] ended (failed, or was lost after
    /// [`Self::up`]): moves on to the next address and says whether to wait first.
    /// `random` is a number in `[0, 1)` for the jitter.
    pub fn ended(&mut self, random: f64) -> Next {
        self.ended_in_round += 1;
        self.current = (self.current + 1) % self.addresses.len().max(1);
        if self.ended_in_round >= self.addresses.len() {
            self.ended_in_round = 0;
            Next::After(self.backoff.next_delay(random))
        } else {
            Next::Now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(n: usize) -> Rotation {
        Rotation::new(
            (0..n).map(|i| format!("c{i}:6262")).collect(),
            Duration::from_millis(100),
            Duration::from_millis(1000),
        )
    }

    #[test]
    fn a_round_of_failures_waits_once_and_the_delay_grows() {
        let mut r = rotation(3);
        assert_eq!(r.address(), "c0:6262");
        assert_eq!(r.ended(0.5), Next::Now);
        assert_eq!(r.address(), "c1:6262");
        assert_eq!(r.ended(0.5), Next::Now);
        assert_eq!(r.address(), "c2:6262");
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(100)));
        assert_eq!(r.address(), "c0:6262");
        assert_eq!(r.ended(0.5), Next::Now);
        assert_eq!(r.ended(0.5), Next::Now);
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(200)));
        // Jitter moves a delay by at most a fifth either way.
        r.ended(0.5);
        r.ended(0.5);
        assert_eq!(r.ended(0.0), Next::After(Duration::from_millis(320)));
    }

    #[test]
    fn a_lost_connection_moves_on_at_once_and_a_failover_is_counted_once() {
        let mut r = rotation(2);
        assert!(!r.up(), "the first connection is no failover");
        // c0 is lost: c1 is tried at once.
        assert_eq!(r.ended(0.5), Next::Now);
        assert_eq!(r.address(), "c1:6262");
        assert!(r.up(), "c1 after c0 is a failover");
        // c1 is lost and c0 refuses: a round, then the minimum backoff (reset by up).
        assert_eq!(r.ended(0.5), Next::Now);
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(100)));
        assert_eq!(r.address(), "c1:6262");
        assert!(!r.up(), "back on the same controller is no failover");
    }

    #[test]
    fn one_address_backs_off_after_every_end_as_before() {
        let mut r = rotation(1);
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(100)));
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(200)));
        assert!(!r.up());
        assert_eq!(r.address(), "c0:6262");
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(100)));
        for _ in 0..10 {
            r.ended(0.5);
        }
        assert_eq!(r.ended(0.5), Next::After(Duration::from_millis(1000)));
    }
}
