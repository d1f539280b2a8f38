//! Byte credit, the flow control every multiplexed leg of the router shares: a stream
//! of an edge connection that speaks Weft's per-stream credit, and a circuit on a link.
//!
//! - [`SendCredit`]: what the receiver still lets this side send. A link is *strict* (a
//!   frame goes only when the credit covers it all: the peer ends the link otherwise);
//!   an SDK stream may be *overdrawn* by one frame (a frame goes while any credit is
//!   left, so a frame larger than the window still moves).
//! - [`Inflow`]: what arrived and is not consumed yet, checked against the window the
//!   sender was given (a sender that exceeds it is broken or hostile).
//! - [`GrantBatch`]: consumed bytes gathered until a batch is worth a credit frame.
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

/// What this side may still send on one stream or circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendCredit {
    available: i64,
    /// The most credit may reach (grants beyond it are clamped); `None`: unbounded.
    cap: Option<i64>,
    overdraft: bool,
}

impl SendCredit {
    /// Strict credit starting at `window`, never above it.
    pub fn strict(window: u64) -> Self {
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        Self {
            available: window,
            cap: Some(window),
            overdraft: false,
        }
    }

    /// Credit starting at `window` that one frame may overdraw.
    pub fn overdrawable(window: u64) -> Self {
        Self {
            available: i64::try_from(window).unwrap_or(i64::MAX),
            cap: None,
            overdraft: true,
        }
    }

    /// Whether a payload of `len` bytes may go now.
    pub fn fits(&self, len: usize) -> bool {
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        match self.overdraft {
            true => len == 0 || self.available > 0,
            false => len <= self.available,
        }
    }

    /// A payload of `len` bytes went.
    pub fn spend(&mut self, len: usize) {
        self.available = self
            .available
            .saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// The receiver granted `bytes` more.
    pub fn grant(&mut self, bytes: u64) {
        let more = self
            .available
            .saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.available = self.cap.map_or(more, |cap| more.min(cap));
    }

    /// Bytes that may go now (0 when overdrawn).
    pub fn available(&self) -> u64 {
        u64::try_from(self.available).unwrap_or(0)
    }
}

/// What arrived on one circuit and was not consumed yet, against the sender's window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inflow {
    unconsumed: u64,
}

impl Inflow {
    /// `len` bytes arrived; false (and nothing counted) when they exceed `window`.
    pub fn receive(&mut self, len: u64, window: u64) -> bool {
        if self.unconsumed.saturating_add(len) > window {
            return false;
        }
        self.unconsumed += len;
        true
    }

    /// The consumer drained `bytes`: returns how many of them this inflow held (a
    /// consumer cannot drain more than arrived).
    pub fn consume(&mut self, bytes: u64) -> u64 {
        let bytes = bytes.min(self.unconsumed);
        self.unconsumed -= bytes;
        bytes
    }
}

/// Consumed bytes not yet granted back, released a batch at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantBatch {
    pending: u64,
}

impl GrantBatch {
    /// `bytes` more were consumed: returns a grant (at most `u32::MAX` bytes; the rest
    /// stays) once `batch` bytes have gathered.
    pub fn add(&mut self, bytes: u64, batch: u64) -> Option<u32> {
        self.pending = self.pending.saturating_add(bytes);
        if self.pending < batch.max(1) {
            return None;
        }
        let grant = u32::try_from(self.pending).unwrap_or(u32::MAX);
        self.pending -= u64::from(grant);
        Some(grant)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn strict_credit_needs_the_whole_frame_and_stays_within_the_window() {
        let mut c = SendCredit::strict(100);
        assert!(c.fits(100) && !c.fits(101));
        c.spend(60);
        assert!(!c.fits(41) && c.fits(40));
        c.grant(1_000);
        assert_eq!(c.available(), 100, "never above the window");
    }

    #[test]
    fn overdrawable_credit_lets_one_frame_past_and_then_waits() {
        let mut c = SendCredit::overdrawable(100);
        assert!(c.fits(1_000));
        c.spend(1_000);
        assert!(
            !c.fits(1) && c.fits(0),
            "an empty frame (a FIN) always goes"
        );
        assert_eq!(c.available(), 0);
        c.grant(900);
        assert!(!c.fits(1), "still overdrawn by 0");
        c.grant(1);
        assert!(c.fits(1));
    }

    #[test]
    fn an_inflow_refuses_past_the_window_and_consumes_only_what_arrived() {
        let mut f = Inflow::default();
        assert!(f.receive(70, 100));
        assert!(!f.receive(31, 100));
        assert_eq!(f.consume(500), 70);
        assert!(f.receive(100, 100));
    }

    proptest! {
        /// Every consumed byte is granted back exactly once, in batches of at least
        /// `batch` (but the last, which waits).
        #[test]
        fn grants_add_up_to_what_was_consumed(
            consumed in proptest::collection::vec(0u64..5_000, 0..200),
            batch in 1u64..10_000,
        ) {
            let mut g = GrantBatch::default();
            let mut granted = 0u64;
            for bytes in &consumed {
                if let Some(grant) = g.add(*bytes, batch) {
                    prop_assert!(u64::from(grant) >= batch);
                    granted += u64::from(grant);
                }
            }
            let total: u64 = consumed.iter().sum();
            prop_assert!(total - granted < batch);
            prop_assert_eq!(granted + g.pending, total);
        }
    }
}
