//! A link's health: heartbeats out, acks in, the round trip as the link's latency, and
//! silence as death.
//!
//! Each side sends a heartbeat every [`HealthConfig::interval`] (1 s by default) and
//! answers every heartbeat it receives (the session does that; this module only keeps
//! time). Any frame received is a sign of life; a link that has been silent for
//! [`HealthConfig::dead_after`] (3 s) is dead. OpenZiti heartbeats every 10 s and gives
//! up after 30 s of silence (`router/handler_link/bind.go`); Weft measures continuously
//! so that path costs and reroute follow the network within seconds.
//!
//! Driving contract: after any input, call [`LinkHealth::poll_heartbeat`] and send a
//! heartbeat with each stamp it returns; wake at [`LinkHealth::poll_timeout`]; check
//! [`LinkHealth::is_dead`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Upper bounds (microseconds) of the round-trip histogram's buckets; a last bucket
/// counts the rest (Prometheus `+Inf`).
pub const RTT_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
];

/// Heartbeats waiting for their ack, at most (older ones are forgotten: a peer that
/// answers that late has the link's latency measured by the newer ones).
pub const MAX_OUTSTANDING: usize = 8;

/// Timing of heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between heartbeats.
    pub interval: Duration,
    /// Silence after which the link is dead.
    pub dead_after: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
        }
    }
}

/// One link's heartbeats and latency.
#[derive(Clone, Debug)]
pub struct LinkHealth {
    config: HealthConfig,
    next_heartbeat: Instant,
    last_heard: Instant,
    /// (stamp, sent at), oldest first.
    outstanding: VecDeque<(u64, Instant)>,
    next_stamp: u64,
    smoothed: Option<Duration>,
    last_sample: Option<Duration>,
    samples: u64,
    /// Round trips per bucket of [`RTT_BUCKETS_US`] (not cumulative), the last for the
    /// rest; and their sum in microseconds.
    rtt_counts: [u64; RTT_BUCKETS_US.len() + 1],
    rtt_sum_us: u64,
}

impl LinkHealth {
    /// A link that came up at `now` (that counts as hearing from the peer); the first
    /// heartbeat is due at once.
    pub fn new(config: HealthConfig, now: Instant) -> Self {
        Self {
            config,
            next_heartbeat: now,
            last_heard: now,
            outstanding: VecDeque::with_capacity(MAX_OUTSTANDING),
            next_stamp: 1,
            smoothed: None,
            last_sample: None,
            samples: 0,
            rtt_counts: [0; RTT_BUCKETS_US.len() + 1],
            rtt_sum_us: 0,
        }
    }

    /// A frame (of any kind) arrived from the peer at `now`.
    pub fn handle_received(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// An ack of heartbeat `stamp` arrived at `now`: returns the round trip when the
    /// stamp is one this side sent and is still waiting for (others are ignored).
    pub fn handle_ack(&mut self, now: Instant, stamp: u64) -> Option<Duration> {
        self.handle_received(now);
        let at = self.outstanding.iter().position(|(s, _)| *s == stamp)?;
        let (_, sent) = self.outstanding.remove(at)?;
        // Heartbeats older than the acked one will not be acked sooner; drop them.
        self.outstanding.drain(..at);
        let rtt = now.saturating_duration_since(sent);
        // Smoothed like TCP's SRTT: 7/8 of the old value, 1/8 of the sample.
        self.smoothed = Some(match self.smoothed {
            None => rtt,
            Some(old) => (old * 7 + rtt) / 8,
        });
        self.last_sample = Some(rtt);
        self.samples += 1;
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let bucket = RTT_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(RTT_BUCKETS_US.len());
        if let Some(n) = self.rtt_counts.get_mut(bucket) {
            *n += 1;
        }
        self.rtt_sum_us = self.rtt_sum_us.saturating_add(us);
        Some(rtt)
    }

    /// The stamp of a heartbeat to send now, when one is due; schedules the next.
    pub fn poll_heartbeat(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_heartbeat {
            return None;
        }
        let stamp = self.next_stamp;
        self.next_stamp = self.next_stamp.wrapping_add(1).max(1);
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((stamp, now));
        self.next_heartbeat = now + self.config.interval;
        Some(stamp)
    }

    /// When to wake next: the next heartbeat, or the moment the link would be dead.
    pub fn poll_timeout(&self) -> Instant {
        self.next_heartbeat
            .min(self.last_heard + self.config.dead_after)
    }

    /// Whether nothing has arrived from the peer for [`HealthConfig::dead_after`].
    pub fn is_dead(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_heard) >= self.config.dead_after
    }

    /// The smoothed round trip, once one was measured.
    pub fn latency(&self) -> Option<Duration> {
        self.smoothed
    }

    /// The last round trip measured.
    pub fn last_sample(&self) -> Option<Duration> {
        self.last_sample
    }

    /// Round trips measured so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Round trips per bucket of [`RTT_BUCKETS_US`] (the last: beyond them), and the
    /// sum of all in microseconds.
    pub fn rtt_histogram(&self) -> ([u64; RTT_BUCKETS_US.len() + 1], u64) {
        (self.rtt_counts, self.rtt_sum_us)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests start their simulated clock once
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn heartbeats_measure_the_round_trip_and_silence_kills() {
        let t0 = Instant::now();
        let mut h = LinkHealth::new(HealthConfig::default(), t0);
        let first = h.poll_heartbeat(t0).expect("due at once");
        assert_eq!(h.poll_heartbeat(t0), None, "one per interval");
        assert_eq!(h.poll_timeout(), t0 + ms(1000));
        assert_eq!(h.handle_ack(t0 + ms(40), first), Some(ms(40)));
        assert_eq!(h.latency(), Some(ms(40)));
        assert_eq!(h.handle_ack(t0 + ms(50), first), None, "an ack counts once");
        assert_eq!(
            h.handle_ack(t0 + ms(50), 999),
            None,
            "unknown stamps are ignored"
        );
        let second = h.poll_heartbeat(t0 + ms(1000)).unwrap();
        assert_ne!(first, second);
        assert_eq!(h.handle_ack(t0 + ms(1120), second), Some(ms(120)));
        // 7/8 × 40 + 1/8 × 120 = 50
        assert_eq!(h.latency(), Some(ms(50)));
        assert_eq!((h.last_sample(), h.samples()), (Some(ms(120)), 2));

        // Then silence: dead 3 s after the last frame heard.
        assert!(!h.is_dead(t0 + ms(4000)));
        assert_eq!(
            h.poll_timeout(),
            t0 + ms(2000),
            "the next heartbeat comes before death"
        );
        assert!(h.is_dead(t0 + ms(4120)));
        // Any frame keeps it alive.
        h.handle_received(t0 + ms(4000));
        assert!(!h.is_dead(t0 + ms(6999)));
    }

    #[test]
    fn unanswered_heartbeats_are_bounded_and_a_late_ack_clears_older_ones() {
        let t0 = Instant::now();
        let mut h = LinkHealth::new(HealthConfig::default(), t0);
        let stamps: Vec<u64> = (0..20)
            .map(|i| h.poll_heartbeat(t0 + ms(1000 * i)).unwrap())
            .collect();
        assert_eq!(h.outstanding.len(), MAX_OUTSTANDING);
        assert_eq!(h.handle_ack(t0 + ms(19_500), stamps[0]), None, "forgotten");
        let rtt = h.handle_ack(t0 + ms(19_500), stamps[15]).unwrap();
        assert_eq!(rtt, ms(4500));
        assert_eq!(h.outstanding.len(), 4, "16..19 still wait");
    }

    proptest! {
        /// Whatever the peer acks and when: at most one heartbeat per interval, every
        /// round trip measured is one that really elapsed, latency stays within the
        /// samples, and the link is dead exactly after `dead_after` of silence.
        #[test]
        fn health_follows_its_definitions(
            steps in proptest::collection::vec((0u64..700, 0u8..4, 0usize..10), 1..200),
        ) {
            let t0 = Instant::now();
            let config = HealthConfig::default();
            let mut h = LinkHealth::new(config, t0);
            let mut now = t0;
            let mut last_heard = t0;
            let mut sent: Vec<(u64, Instant)> = Vec::new();
            let mut last_beat: Option<Instant> = None;
            let (mut min_rtt, mut max_rtt) = (Duration::MAX, Duration::ZERO);
            for (advance, action, pick) in steps {
                now += Duration::from_millis(advance);
                if let Some(stamp) = h.poll_heartbeat(now) {
                    if let Some(prev) = last_beat {
                        prop_assert!(now - prev >= config.interval);
                    }
                    last_beat = Some(now);
                    sent.push((stamp, now));
                }
                match action {
                    0 => {
                        h.handle_received(now);
                        last_heard = now;
                    }
                    1 if !sent.is_empty() => {
                        let (stamp, at) = sent[pick % sent.len()];
                        last_heard = now;
                        if let Some(rtt) = h.handle_ack(now, stamp) {
                            prop_assert_eq!(rtt, now - at);
                            min_rtt = min_rtt.min(rtt);
                            max_rtt = max_rtt.max(rtt);
                        }
                    }
                    _ => {}
                }
                if let Some(latency) = h.latency() {
                    prop_assert!(latency >= min_rtt && latency <= max_rtt);
                }
                prop_assert_eq!(h.is_dead(now), now - last_heard >= config.dead_after);
                prop_assert!(h.poll_timeout() <= last_heard + config.dead_after);
                prop_assert!(h.outstanding.len() <= MAX_OUTSTANDING);
            }
        }
    }
}
