//! Byte credit, the flow control every multiplexed leg of the router shares: a stream
//! of an edge connection that speaks Weft's per-stream credit, and a circuit on a link.
//!
//! - [`SendCredit`]: what the receiver still lets this side send. A link is *strict* (a
//!   frame goes only when the credit covers it all: the peer ends the link otherwise);
//!   an SDK stream may be *overdrawn* by one frame (a frame goes while any credit is
//!   left, so a frame larger than the window still moves).
//! - [`Inflow`]: what arrived and is not consumed yet, checked against the window the
//!   sender was given (a sender that exceeds it is broken or hostile).
//! - [`GrantBatch`]: consumed payload gathered until a batch is worth a credit frame.
//!
//! Windows that bound what the router holds count a frame's **charge**, its payload plus
//! [`FRAME_COST`]: what a queued frame costs beyond its payload (queue entries, its own
//! allocation). Counting payload alone let 1-byte frames make a router hold a window of
//! queue entries, about a hundred times the window. An edge stream's credit stays in
//! payload bytes (the SDK's protocol); a link's counts charges when both routers say so
//! in the link hello (`docs/wire-format.md` §7).
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)

/// What one queued frame costs the router beyond its payload, in bytes: its entry in a
/// connection's transmit queue (about 110 bytes), on an end router of a circuit across
/// routers its entry in the held or the unacknowledged queue (48 bytes), a payload
/// copied into its own allocation (small payloads are, see [`detach`]) with the shared
/// header a clone adds; queues grow by doubling, so each entry may stand for twice its
/// size. A test checks the sum stays below it.
pub const FRAME_COST: u64 = 512;

// Short payloads get their own memory (`detach`): the windows' frame cost counts a
// queued frame's own allocation, not the receive buffer a slice would pin.
pub use weft_wire::payload::{COPY_BELOW, detach};

/// What a frame of `len` payload bytes counts against a window that charges
/// `frame_cost` per frame.
pub fn charge(len: usize, frame_cost: u64) -> u64 {
    (len as u64).saturating_add(frame_cost)
}

/// Payload that left a window (or is in it): its bytes and the frames that carried it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Payload bytes.
    pub bytes: u64,
    /// Frames.
    pub frames: u64,
}

impl Drained {
    /// One frame of `len` payload bytes.
    pub fn frame(len: usize) -> Self {
        Self {
            bytes: len as u64,
            frames: 1,
        }
    }

    /// What it counts against a window that charges `frame_cost` per frame.
    pub fn charged(self, frame_cost: u64) -> u64 {
        self.bytes
            .saturating_add(self.frames.saturating_mul(frame_cost))
    }

    /// Adds `other`.
    pub fn add(&mut self, other: Self) {
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.frames = self.frames.saturating_add(other.frames);
    }

    /// Whether nothing is in it.
    pub fn is_empty(self) -> bool {
        self.bytes == 0 && self.frames == 0
    }
}

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

/// What arrived on one circuit and was not consumed yet, against the sender's window
/// (a link's sender also keeps one of what it sent and was not credited yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inflow {
    unconsumed: Drained,
}

impl Inflow {
    /// A frame of `len` bytes arrived; false (and nothing counted) when its charge at
    /// `frame_cost` takes what is unconsumed beyond `window`.
    pub fn receive(&mut self, len: usize, frame_cost: u64, window: u64) -> bool {
        let mut after = self.unconsumed;
        after.add(Drained::frame(len));
        if after.charged(frame_cost) > window {
            return false;
        }
        self.unconsumed = after;
        true
    }

    /// The consumer drained `drained`: returns how much of it this inflow held (a
    /// consumer cannot drain more than arrived).
    pub fn consume(&mut self, drained: Drained) -> Drained {
        let held = Drained {
            bytes: drained.bytes.min(self.unconsumed.bytes),
            frames: drained.frames.min(self.unconsumed.frames),
        };
        self.unconsumed.bytes -= held.bytes;
        self.unconsumed.frames -= held.frames;
        held
    }
}

/// Consumed payload not yet granted back, released a batch at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantBatch {
    pending: Drained,
}

/// A grant for the sender: payload bytes and the frames that carried them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Payload bytes.
    pub bytes: u32,
    /// Frames.
    pub frames: u32,
}

impl GrantBatch {
    /// `drained` more was consumed: returns a grant (at most `u32::MAX` bytes and frames;
    /// the rest stays) once what has gathered charges `batch` at `frame_cost`.
    pub fn add(&mut self, drained: Drained, frame_cost: u64, batch: u64) -> Option<Grant> {
        self.pending.add(drained);
        if self.pending.charged(frame_cost) < batch.max(1) {
            return None;
        }
        let grant = Grant {
            bytes: u32::try_from(self.pending.bytes).unwrap_or(u32::MAX),
            frames: u32::try_from(self.pending.frames).unwrap_or(u32::MAX),
        };
        self.pending.bytes -= u64::from(grant.bytes);
        self.pending.frames -= u64::from(grant.frames);
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
        assert!(f.receive(70, 0, 100));
        assert!(!f.receive(31, 0, 100));
        assert_eq!(f.consume(Drained::frame(500)).bytes, 70);
        assert!(f.receive(100, 0, 100));
    }

    #[test]
    fn an_inflow_that_charges_frames_refuses_many_tiny_ones() {
        let mut f = Inflow::default();
        // A window of 1,000 at 100 per frame holds nine 1-byte frames, not a thousand.
        for _ in 0..9 {
            assert!(f.receive(1, 100, 1_000));
        }
        assert!(!f.receive(1, 100, 1_000));
        let held = f.consume(Drained {
            bytes: 5,
            frames: 20,
        });
        assert_eq!(
            held,
            Drained {
                bytes: 5,
                frames: 9
            }
        );
        assert!(f.receive(1, 100, 1_000));
    }

    #[test]
    fn a_frame_cost_covers_what_a_queued_frame_holds() {
        use std::mem::size_of;
        // A relayed frame on an end router: its transmit entry and its entry in the held
        // or the unacknowledged queue (one at a time), both queues at twice their
        // length after growing by doubling, and a copied payload's allocation (glibc's
        // smallest chunk and the shared header of a cloned `Bytes`).
        let entry =
            size_of::<crate::edge::Transmit>().max(size_of::<crate::link::session::Transmit>());
        let queued = size_of::<(u64, bytes::Bytes, bool)>();
        let allocations = 32 + 48;
        let total = 2 * (entry + queued) + allocations;
        assert!(
            total as u64 <= FRAME_COST,
            "{entry} + {queued} + {allocations}"
        );
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
            let (mut granted, mut frames) = (0u64, 0u64);
            for bytes in &consumed {
                let drained = Drained { bytes: *bytes, frames: 1 };
                if let Some(grant) = g.add(drained, 16, batch) {
                    let grant = Drained {
                        bytes: u64::from(grant.bytes),
                        frames: u64::from(grant.frames),
                    };
                    prop_assert!(grant.charged(16) >= batch);
                    granted += grant.bytes;
                    frames += grant.frames;
                }
            }
            let total: u64 = consumed.iter().sum();
            let all = Drained { bytes: total, frames: consumed.len() as u64 };
            let left = Drained { bytes: total - granted, frames: all.frames - frames };
            prop_assert!(left.charged(16) < batch);
            prop_assert_eq!(g.pending, left);
        }
    }
}
