//! Weft's link protocol (router <-> router), on the same V2 framing as the edge.
//!
//! This protocol is Weft's own (OpenZiti's fabric protocol is not spoken between Weft
//! routers). Content types are `ContentType::LINK_*`, header ids `HeaderId::LINK_*`:
//!
//! | message | headers | body |
//! |---|---|---|
//! | `LINK_HELLO` | `LINK_ROUTER_ID`, [`LINK_CONNECTION` (u32, absent = 0)], [`LINK_FRAME_COST` (u32, absent = 0)] | empty; answered by a Result (header 2, header 1, [`LINK_FRAME_COST`]) |
//! | `LINK_DATA` | `LINK_CIRCUIT_ID` (u64), `LINK_SEQ` (u64), [`LINK_FLAGS` (u32)] | payload, relayed untouched |
//! | `LINK_CREDIT` | `LINK_CIRCUIT_ID`, `LINK_CREDIT` (u32 bytes consumed), [`LINK_FRAMES` (u32 frames consumed, absent = 0)] | empty |
//! | `LINK_CLOSE` | `LINK_CIRCUIT_ID`, [`LINK_FLAGS` (bit 0: reroute; bit 1: the link stays up)] | reason |
//! | `LINK_HEARTBEAT` | `LINK_STAMP` (u64) | empty; answered by `LINK_HEARTBEAT_ACK` |
//! | `LINK_HEARTBEAT_ACK` | `LINK_STAMP` (the heartbeat's, echoed) | empty |
//! | `LINK_ACK` | `LINK_CIRCUIT_ID`, `LINK_SEQ` (highest received in order) | empty; end to end |
//!
//! Many circuits share one link; each has a credit window so one slow reader never
//! stalls the link (see `docs/wire-format.md`).

use bytes::BytesMut;

use crate::{ContentType, EncodeError, Frame, FrameEncoder, HeaderId, MessageError};

fn u64_header(frame: &Frame, id: HeaderId) -> Result<u64, MessageError> {
    frame
        .require(id)?
        .as_u64()
        .map_err(|error| MessageError::BadHeader { id, error })
}

fn u32_header(frame: &Frame, id: HeaderId) -> Result<u32, MessageError> {
    frame
        .require(id)?
        .as_u32()
        .map_err(|error| MessageError::BadHeader { id, error })
}

/// The optional u32 header `id` of `frame` (0 when absent).
fn optional_u32(frame: &Frame, id: HeaderId) -> Result<u32, MessageError> {
    match frame.header(id) {
        Some(_) => u32_header(frame, id),
        None => Ok(0),
    }
}

/// The optional `LINK_FLAGS` header of `frame` (0 when absent).
fn flags_header(frame: &Frame) -> Result<u32, MessageError> {
    optional_u32(frame, HeaderId::LINK_FLAGS)
}

/// [`LinkData`] flag: the circuit's ingress router is routed and the egress may relay
/// what its host sends (an empty frame that needs no credit, relayed by transit
/// routers). The edge's [`crate::edge::FLAG_FIN`] (bit 0) marks a half-close.
pub const FLAG_START: u32 = 0x2;

/// First frame on a link: the dialing router names itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkHello<'a> {
    /// The dialing router's id (checked against its certificate by the listener).
    pub router_id: &'a str,
    /// Which of the dialer's connections of this link it is, from 0 (a link may be
    /// several connections; an optional `LINK_CONNECTION`, absent = 0).
    pub connection: u32,
    /// What one frame costs the dialer beyond its payload (`LINK_FRAME_COST`, absent =
    /// 0: a router that counts payload bytes only).
    pub frame_cost: u32,
}

impl<'a> LinkHello<'a> {
    /// Parses a link hello.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_HELLO)?;
        let id = HeaderId::LINK_ROUTER_ID;
        let connection = optional_u32(frame, HeaderId::LINK_CONNECTION)?;
        let frame_cost = optional_u32(frame, HeaderId::LINK_FRAME_COST)?;
        Ok(Self {
            router_id: frame
                .require(id)?
                .as_str()
                .map_err(|error| MessageError::BadHeader { id, error })?,
            connection,
            frame_cost,
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::LINK_HELLO, sequence);
        enc.str(HeaderId::LINK_ROUTER_ID, self.router_id);
        if self.connection != 0 {
            enc.u32(HeaderId::LINK_CONNECTION, self.connection);
        }
        if self.frame_cost != 0 {
            enc.u32(HeaderId::LINK_FRAME_COST, self.frame_cost);
        }
        enc.finish(0)
    }
}

/// The frame cost a link hello's Result states (`LINK_FRAME_COST`; 0 when absent: the
/// listener counts payload bytes only). The Result is otherwise the edge's
/// [`crate::edge::HelloResult`]; a listener adds the header with
/// [`crate::edge::HelloResult::encode_with_u32`].
pub fn hello_result_frame_cost(frame: &Frame) -> Result<u32, MessageError> {
    optional_u32(frame, HeaderId::LINK_FRAME_COST)
}

/// Payload of one circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkData<'a> {
    /// Circuit id on this link.
    pub circuit_id: u64,
    /// Per-circuit sequence, from 1.
    pub seq: u64,
    /// Flags; [`crate::edge::FLAG_FIN`] marks a half-close, [`FLAG_START`] the start.
    pub flags: u32,
    /// The payload (an edge Data body), relayed untouched.
    pub payload: &'a [u8],
}

impl<'a> LinkData<'a> {
    /// Parses a link data frame.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_DATA)?;
        let flags = flags_header(frame)?;
        Ok(Self {
            circuit_id: u64_header(frame, HeaderId::LINK_CIRCUIT_ID)?,
            seq: u64_header(frame, HeaderId::LINK_SEQ)?,
            flags,
            payload: frame.body(),
        })
    }

    /// Appends only the head; the payload follows in the same vectored write.
    pub fn encode_head(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::LINK_DATA, sequence);
        enc.u64(HeaderId::LINK_CIRCUIT_ID, self.circuit_id)
            .u64(HeaderId::LINK_SEQ, self.seq);
        if self.flags != 0 {
            enc.u32(HeaderId::LINK_FLAGS, self.flags);
        }
        enc.finish(self.payload.len())
    }

    /// Appends the whole frame (copies the payload).
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_head(sequence, out)?;
        out.extend_from_slice(self.payload);
        Ok(())
    }
}

/// Credit returned to a circuit's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkCredit {
    /// Circuit id on this link.
    pub circuit_id: u64,
    /// Payload bytes the receiver consumed since its last credit.
    pub credit: u32,
    /// Frames that carried them (`LINK_FRAMES`, absent = 0).
    pub frames: u32,
}

impl LinkCredit {
    /// Parses a credit frame.
    pub fn parse(frame: &Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_CREDIT)?;
        Ok(Self {
            circuit_id: u64_header(frame, HeaderId::LINK_CIRCUIT_ID)?,
            credit: u32_header(frame, HeaderId::LINK_CREDIT)?,
            frames: optional_u32(frame, HeaderId::LINK_FRAMES)?,
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::LINK_CREDIT, sequence);
        enc.u64(HeaderId::LINK_CIRCUIT_ID, self.circuit_id)
            .u32(HeaderId::LINK_CREDIT, self.credit);
        if self.frames != 0 {
            enc.u32(HeaderId::LINK_FRAMES, self.frames);
        }
        enc.finish(0)
    }
}

/// [`LinkClose`] flag: the circuit's path broke (a link of it was lost); its end
/// routers keep it and ask the controller for another path instead of ending it.
pub const CLOSE_FLAG_REROUTE: u32 = 0x1;

/// [`LinkClose`] flag, beside [`CLOSE_FLAG_REROUTE`]: one connection of a link was
/// lost but the link stays up on another, so the same path will do for the reroute.
pub const CLOSE_FLAG_LINK_UP: u32 = 0x2;

/// A circuit ended on this link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkClose<'a> {
    /// Circuit id on this link.
    pub circuit_id: u64,
    /// Why, for logs and for the StateClosed sent to the SDK.
    pub reason: &'a [u8],
    /// [`CLOSE_FLAG_REROUTE`] when only the path broke (an optional `LINK_FLAGS`).
    pub flags: u32,
}

impl<'a> LinkClose<'a> {
    /// Parses a close frame.
    pub fn parse(frame: &'a Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_CLOSE)?;
        let flags = flags_header(frame)?;
        Ok(Self {
            circuit_id: u64_header(frame, HeaderId::LINK_CIRCUIT_ID)?,
            reason: frame.body(),
            flags,
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut enc = FrameEncoder::new(out, ContentType::LINK_CLOSE, sequence);
        enc.u64(HeaderId::LINK_CIRCUIT_ID, self.circuit_id);
        if self.flags != 0 {
            enc.u32(HeaderId::LINK_FLAGS, self.flags);
        }
        enc.finish_with_body(self.reason)
    }
}

/// End to end (relayed by transit routers): the circuit's end router that sends it
/// received the other end's payload up to and including sequence `seq`, which the
/// other end may drop from its retransmit buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkAck {
    /// Circuit id.
    pub circuit_id: u64,
    /// The highest payload sequence received in order.
    pub seq: u64,
}

impl LinkAck {
    /// Parses an ack.
    pub fn parse(frame: &Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_ACK)?;
        Ok(Self {
            circuit_id: u64_header(frame, HeaderId::LINK_CIRCUIT_ID)?,
            seq: u64_header(frame, HeaderId::LINK_SEQ)?,
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::LINK_ACK, sequence)
            .u64(HeaderId::LINK_CIRCUIT_ID, self.circuit_id)
            .u64(HeaderId::LINK_SEQ, self.seq)
            .finish(0)
    }
}

/// A heartbeat: the receiver echoes `stamp` in a [`LinkHeartbeatAck`] at once, so the
/// sender measures the link's round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkHeartbeat {
    /// Opaque to the receiver (the sender's clock, say).
    pub stamp: u64,
}

impl LinkHeartbeat {
    /// Parses a heartbeat.
    pub fn parse(frame: &Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_HEARTBEAT)?;
        Ok(Self {
            stamp: u64_header(frame, HeaderId::LINK_STAMP)?,
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::LINK_HEARTBEAT, sequence)
            .u64(HeaderId::LINK_STAMP, self.stamp)
            .finish(0)
    }
}

/// The answer to a [`LinkHeartbeat`]: its stamp, echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkHeartbeatAck {
    /// The heartbeat's stamp.
    pub stamp: u64,
}

impl LinkHeartbeatAck {
    /// Parses a heartbeat ack.
    pub fn parse(frame: &Frame) -> Result<Self, MessageError> {
        frame.expect_type(ContentType::LINK_HEARTBEAT_ACK)?;
        Ok(Self {
            stamp: u64_header(frame, HeaderId::LINK_STAMP)?,
        })
    }

    /// Appends the frame.
    pub fn encode(&self, sequence: i32, out: &mut BytesMut) -> Result<(), EncodeError> {
        FrameEncoder::new(out, ContentType::LINK_HEARTBEAT_ACK, sequence)
            .u64(HeaderId::LINK_STAMP, self.stamp)
            .finish(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoded, Decoder, Limits};

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Ok(Decoded::Frame(f)) = d.decode() {
            out.push(f);
        }
        out
    }

    #[test]
    fn a_hello_names_its_connection_and_an_old_one_means_the_first() {
        let mut buf = BytesMut::new();
        LinkHello {
            router_id: "r1",
            connection: 2,
            frame_cost: 256,
        }
        .encode(1, &mut buf)
        .unwrap();
        LinkHello {
            router_id: "r1",
            connection: 0,
            frame_cost: 0,
        }
        .encode(2, &mut buf)
        .unwrap();
        let frames = decode_all(&buf);
        let first = LinkHello::parse(&frames[0]).unwrap();
        assert_eq!((first.connection, first.frame_cost), (2, 256));
        // Connection 0 and no frame cost are sent without their headers, as a hello
        // before several connections per link (and frame charges) was.
        assert!(frames[1].header(HeaderId::LINK_CONNECTION).is_none());
        assert!(frames[1].header(HeaderId::LINK_FRAME_COST).is_none());
        let old = LinkHello::parse(&frames[1]).unwrap();
        assert_eq!((old.connection, old.frame_cost), (0, 0));
    }

    #[test]
    fn a_hello_result_states_the_frame_cost_and_an_old_one_none() {
        use crate::edge::HelloResult;
        let result = HelloResult {
            success: true,
            reply_for: 1,
            version: None,
            connection_id: None,
            message: b"",
        };
        let mut buf = BytesMut::new();
        let cost = Some((HeaderId::LINK_FRAME_COST, 256));
        result.encode_with_u32(-1, cost, &mut buf).unwrap();
        result.encode(-1, &mut buf).unwrap();
        let frames = decode_all(&buf);
        assert_eq!(hello_result_frame_cost(&frames[0]).unwrap(), 256);
        assert!(HelloResult::parse(&frames[0]).unwrap().success);
        assert_eq!(hello_result_frame_cost(&frames[1]).unwrap(), 0);
    }

    #[test]
    fn a_credit_counts_its_frames_and_an_old_one_none() {
        let mut buf = BytesMut::new();
        let old = LinkCredit {
            circuit_id: 1,
            credit: 10,
            frames: 0,
        };
        old.encode(1, &mut buf).unwrap();
        let frames = decode_all(&buf);
        assert!(frames[0].header(HeaderId::LINK_FRAMES).is_none());
        assert_eq!(LinkCredit::parse(&frames[0]).unwrap(), old);
    }

    #[test]
    fn link_messages_round_trip() {
        let mut buf = BytesMut::new();
        LinkHello {
            router_id: "r1",
            connection: 0,
            frame_cost: 256,
        }
        .encode(1, &mut buf)
        .unwrap();
        let data = LinkData {
            circuit_id: u64::MAX,
            seq: 5,
            flags: 1,
            payload: b"abc",
        };
        data.encode(2, &mut buf).unwrap();
        let credit = LinkCredit {
            circuit_id: 7,
            credit: 65536,
            frames: 3,
        };
        credit.encode(3, &mut buf).unwrap();
        let close = LinkClose {
            circuit_id: 7,
            reason: b"bye",
            flags: 0,
        };
        close.encode(4, &mut buf).unwrap();
        LinkHeartbeat {
            stamp: u64::MAX - 1,
        }
        .encode(5, &mut buf)
        .unwrap();
        LinkHeartbeatAck { stamp: 42 }.encode(6, &mut buf).unwrap();
        let frames = decode_all(&buf);
        assert_eq!(frames.len(), 6);
        assert_eq!(
            LinkHeartbeat::parse(&frames[4]).unwrap().stamp,
            u64::MAX - 1
        );
        assert_eq!(LinkHeartbeatAck::parse(&frames[5]).unwrap().stamp, 42);
        assert!(
            LinkHeartbeat::parse(&frames[5]).is_err(),
            "an ack is no heartbeat"
        );
        assert_eq!(LinkHello::parse(&frames[0]).unwrap().router_id, "r1");
        assert_eq!(LinkHello::parse(&frames[0]).unwrap().connection, 0);
        assert_eq!(LinkData::parse(&frames[1]).unwrap(), data);
        assert_eq!(LinkCredit::parse(&frames[2]).unwrap(), credit);
        assert_eq!(LinkClose::parse(&frames[3]).unwrap(), close);
        assert!(LinkData::parse(&frames[2]).is_err());
    }

    #[test]
    fn acks_and_reroutable_closes_round_trip() {
        let mut buf = BytesMut::new();
        let ack = LinkAck {
            circuit_id: 9,
            seq: 1 << 40,
        };
        ack.encode(1, &mut buf).unwrap();
        let close = LinkClose {
            circuit_id: 9,
            reason: b"path lost",
            flags: CLOSE_FLAG_REROUTE,
        };
        close.encode(2, &mut buf).unwrap();
        let frames = decode_all(&buf);
        assert_eq!(LinkAck::parse(&frames[0]).unwrap(), ack);
        assert_eq!(LinkClose::parse(&frames[1]).unwrap(), close);
        assert!(LinkAck::parse(&frames[1]).is_err());
    }
}
