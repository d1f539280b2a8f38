//! Messages between the forwarders of two shards, for circuits whose legs sit on
//! different shards and for the terminator directory every shard keeps.
//!
//! A circuit crossing shards has one record on each: the dialer's shard owns the dial
//! (it chose the terminator and keeps the dial-setup time); the host's shard dials the
//! hosting SDK. Each record holds its one local leg and the other shard's index. The
//! runtime carries these messages over one FIFO queue per ordered shard pair, so a
//! circuit's messages arrive in the order they were sent.
//!
//! Flow control across shards: the source shard counts the bytes it sent toward the far
//! leg and pauses its source connection when a window is full, exactly as for a local
//! circuit; the far shard reports what its leg wrote back in [`CrossMsg::Credit`]s of at
//! least [`credit_batch`] bytes (so one credit answers many frames).

use bytes::Bytes;

use super::{ConnKey, Terminator};
use crate::credit::Drained;
use crate::edge::CircuitId;

/// Bits of a [`ConnKey`] below the shard index: keys are unique router-wide, and a key
/// names the shard that owns its connection.
pub const SHARD_SHIFT: u32 = 48;

impl ConnKey {
    /// The key of connection number `n` of shard `shard`.
    pub fn on_shard(shard: usize, n: u64) -> Self {
        Self(((shard as u64) << SHARD_SHIFT) | (n & ((1 << SHARD_SHIFT) - 1)))
    }

    /// The shard that owns this connection.
    pub fn shard(self) -> usize {
        usize::try_from(self.0 >> SHARD_SHIFT).unwrap_or(usize::MAX)
    }
}

/// Bytes a shard lets its leg write before it credits them to the source shard: an
/// eighth of the window, so the source's count is never more than that behind and a
/// window that filled always drains below its resume mark.
pub fn credit_batch(window: usize) -> usize {
    (window / 8).max(1)
}

/// One message from a shard's forwarder to another's.
#[derive(Debug)]
pub enum CrossMsg {
    /// A terminator of the sender's was confirmed by the controller: dials may choose it.
    TerminatorUp {
        /// Its service.
        service_id: String,
        /// The terminator (its `conn` names the sender's shard).
        terminator: Box<Terminator>,
    },
    /// A terminator announced with `TerminatorUp` is gone.
    TerminatorDown {
        /// Hosting connection.
        conn: ConnKey,
        /// Listener conn id.
        listener: u32,
    },
    /// Dial the SDK hosting `(host_conn, listener)` for `circuit`.
    Dial(Box<CrossDial>),
    /// Route `circuit` across routers (to the shard holding the links).
    MeshDial(Box<MeshDial>),
    /// The host accepted the dial of `circuit` (or, for a dial routed across routers,
    /// the route is up and the far host accepted).
    Accepted {
        /// The circuit.
        circuit: CircuitId,
        /// The host's public key, when the dialer's shard does not know it from the
        /// terminator (a host on another router).
        host_public_key: Option<Bytes>,
        /// The terminator reached, when the controller chose it (a host on another
        /// router), for a sticky dial's reply.
        terminator_id: Option<String>,
    },
    /// The host refused the dial of `circuit` (or was gone).
    Refused {
        /// The circuit.
        circuit: CircuitId,
        /// For the dialer's StateClosed.
        reason: String,
    },
    /// Payload for the receiver's leg of `circuit`.
    Data {
        /// The circuit.
        circuit: CircuitId,
        /// The body, as it arrived from the sending SDK (no copy).
        payload: Bytes,
        /// Half-close.
        fin: bool,
    },
    /// The sender's leg wrote `drained` that came from the receiver's leg.
    Credit {
        /// The circuit.
        circuit: CircuitId,
        /// Payload bytes written and the frames that carried them (the receiver's
        /// window charges each frame [`crate::credit::FRAME_COST`]).
        drained: Drained,
    },
    /// The circuit ended on the sender's side; the receiver closes its leg.
    Close {
        /// The circuit.
        circuit: CircuitId,
        /// The StateClosed body for the receiver's leg.
        reason: String,
    },
}

/// A dial with no terminator on this router, for the shard that holds the links: it
/// asks the controller to route the circuit across routers.
#[derive(Debug)]
pub struct MeshDial {
    /// The circuit (its id was made by the dialer's shard).
    pub circuit: CircuitId,
    /// The request for the controller.
    pub request: weft_wire::control::pb::CircuitRequest,
}

/// A dial for the host of a terminator: sent to the host's shard, or made on this one.
#[derive(Debug)]
pub struct CrossDial {
    /// The circuit (its id was made by the dialer's shard).
    pub circuit: CircuitId,
    /// The hosting connection.
    pub host_conn: ConnKey,
    /// The host's listener conn id.
    pub listener: u32,
    /// Dialer identity name (header 1008).
    pub caller_id: Bytes,
    /// Dialer public key (1003).
    pub public_key: Option<Bytes>,
    /// Application data (1011).
    pub app_data: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_shard() {
        let key = ConnKey::on_shard(3, 17);
        assert_eq!(key.shard(), 3);
        assert_eq!(key.0 & 0xffff, 17);
        assert_eq!(ConnKey(5).shard(), 0);
        // A counter beyond the low bits cannot leak into the shard bits.
        assert_eq!(ConnKey::on_shard(1, u64::MAX).shard(), 1);
    }

    #[test]
    fn the_credit_batch_is_an_eighth_of_the_window_and_never_zero() {
        assert_eq!(credit_batch(4 * 1024 * 1024), 512 * 1024);
        assert_eq!(credit_batch(3), 1);
        assert_eq!(credit_batch(0), 1);
    }
}
