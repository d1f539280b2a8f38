//! The client side of the edge protocol, sans-IO: classifies what a router sends and
//! builds what the SDK sends (`docs/wire-format.md`).

use bytes::{Bytes, BytesMut};
use weft_wire::edge::{self, FLAG_FIN};
use weft_wire::{ContentType, EncodeError, Frame, HeaderId, MessageError};

/// What one frame from the router means to the SDK.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// An answer to the request sent with channel sequence `reply_for` (hello result,
    /// StateConnected or StateClosed replies, latency results).
    Reply {
        /// The request's channel sequence.
        reply_for: i32,
        /// The whole answer.
        frame: Frame,
    },
    /// Payload (or a FIN) for connection `conn_id`.
    Data {
        /// The SDK's conn id.
        conn_id: u32,
        /// The body (ciphertext when end-to-end encrypted).
        payload: Bytes,
        /// The peer half-closed after this payload.
        fin: bool,
    },
    /// The router closed `conn_id` (peer closed, session removed, terminator removed).
    Closed {
        /// The SDK's conn id (a stream's, or a listener's).
        conn_id: u32,
        /// Why, as the router said it.
        reason: Bytes,
    },
    /// A dialer reached one of our listeners (spec §4b step 5).
    Dial {
        /// The listener's conn id.
        listener: u32,
        /// The Dial's channel sequence (the DialSuccess / DialFailed reply to it).
        sequence: i32,
        /// The dialer's key-exchange public key, when it wants end-to-end encryption.
        public_key: Option<Bytes>,
        /// The dialer's identity name.
        caller_id: Bytes,
        /// Application data the dialer sent with its dial.
        app_data: Option<Bytes>,
    },
    /// The router measures latency: answer with [`latency_reply`].
    LatencyProbe {
        /// The probe's channel sequence.
        sequence: i32,
        /// The probe time header, echoed back.
        probe_time: Option<Bytes>,
    },
    /// The router grants `bytes` more on `conn_id` (per-stream credit).
    Credit {
        /// The SDK's conn id.
        conn_id: u32,
        /// Bytes granted.
        bytes: u32,
    },
    /// Anything else (logged and dropped; the C SDK ignores unknown messages too).
    Ignored(ContentType),
}

/// Why a frame could not be understood.
pub(crate) type ProtoError = MessageError;

fn header_bytes(frame: &Frame, id: HeaderId) -> Option<Bytes> {
    let value = frame.header(id)?.as_bytes();
    // The header block is a `Bytes`; slice it instead of copying.
    Some(frame.header_block().slice_ref(value))
}

/// Classifies one frame from the router.
pub(crate) fn classify(frame: Frame) -> Result<Inbound, ProtoError> {
    let ct = frame.content_type();
    if ct == ContentType::DATA {
        let data = edge::Data::parse(&frame)?;
        let (conn_id, fin) = (data.conn_id, data.is_fin());
        return Ok(Inbound::Data {
            conn_id,
            fin,
            payload: frame.into_body(),
        });
    }
    if ct == ContentType::DIAL {
        let dial = edge::Dial::parse(&frame)?;
        return Ok(Inbound::Dial {
            listener: dial.conn_id,
            sequence: frame.sequence(),
            public_key: header_bytes(&frame, HeaderId::PUBLIC_KEY),
            caller_id: header_bytes(&frame, HeaderId::CALLER_ID).unwrap_or_default(),
            app_data: header_bytes(&frame, HeaderId::APP_DATA),
        });
    }
    if ct == ContentType::WEFT_CREDIT {
        let credit = edge::Credit::parse(&frame)?;
        return Ok(Inbound::Credit {
            conn_id: credit.conn_id,
            bytes: credit.bytes,
        });
    }
    if ct == ContentType::LATENCY {
        return Ok(Inbound::LatencyProbe {
            sequence: frame.sequence(),
            probe_time: header_bytes(&frame, HeaderId::LATENCY_PROBE_TIME),
        });
    }
    let reply_for = match frame.header(HeaderId::REPLY_FOR) {
        Some(v) => Some(v.as_i32().map_err(|error| MessageError::BadHeader {
            id: HeaderId::REPLY_FOR,
            error,
        })?),
        None => None,
    };
    if let Some(reply_for) = reply_for {
        return Ok(Inbound::Reply { reply_for, frame });
    }
    if ct == ContentType::STATE_CLOSED {
        let closed = edge::StateClosed::parse(&frame)?;
        let conn_id = closed.conn_id;
        return Ok(Inbound::Closed {
            conn_id,
            reason: frame.into_body(),
        });
    }
    Ok(Inbound::Ignored(ct))
}

/// The outcome of a Connect, Bind or DialSuccess request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConnectReply {
    /// StateConnected, with the peer's key-exchange public key if it sent one, and the
    /// stickiness token (a Connect reply of a `sticky` service).
    Connected(Option<Bytes>, Option<Bytes>),
    /// StateClosed with the router's reason.
    Refused(String),
}

/// Reads the reply to a Connect, Bind or DialSuccess.
pub(crate) fn connect_reply(frame: &Frame) -> Result<ConnectReply, ProtoError> {
    let ct = frame.content_type();
    if ct == ContentType::STATE_CONNECTED {
        edge::StateConnected::parse(frame)?;
        return Ok(ConnectReply::Connected(
            header_bytes(frame, HeaderId::PUBLIC_KEY),
            header_bytes(frame, HeaderId::STICKINESS_TOKEN),
        ));
    }
    if ct == ContentType::STATE_CLOSED {
        let closed = edge::StateClosed::parse(frame)?;
        return Ok(ConnectReply::Refused(
            String::from_utf8_lossy(closed.reason).into_owned(),
        ));
    }
    Err(MessageError::WrongContentType {
        expected: ContentType::STATE_CONNECTED,
        actual: ct,
    })
}

/// Whether a StateClosed reason means the session token was refused: the C SDK's rule
/// (spec §3.3 QUIRK): "Invalid Session", an empty body, or any prefix of it.
pub(crate) fn is_invalid_session(reason: &str) -> bool {
    edge::INVALID_SESSION.starts_with(reason)
}

/// What an unsolicited StateClosed reason tells a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseCause {
    /// The peer closed normally: end of stream.
    PeerClosed,
    /// The controller removed the session.
    Revoked,
    /// Anything else: an error with the reason.
    Failed,
}

/// Classifies a router's close reason. "closed by peer" is Weft's, "close called"
/// Go's (spec §3.3); "session closed"/"session ended" mean revocation (spec §4c).
pub(crate) fn close_cause(reason: &[u8]) -> CloseCause {
    match reason {
        b"closed by peer" | b"close called" => CloseCause::PeerClosed,
        b"session closed" | b"session ended" => CloseCause::Revoked,
        r if r == edge::INVALID_SESSION.as_bytes() => CloseCause::Revoked,
        _ => CloseCause::Failed,
    }
}

/// Encodes a Data head (the payload of `payload_len` bytes follows it).
pub(crate) fn data_head(
    out: &mut BytesMut,
    sequence: i32,
    conn_id: u32,
    seq: u32,
    fin: bool,
    payload_len: usize,
) -> Result<(), EncodeError> {
    let data = edge::Data {
        conn_id,
        seq,
        flags: if fin { FLAG_FIN } else { 0 },
        payload: &[],
    };
    let mut enc = weft_wire::FrameEncoder::new(out, ContentType::DATA, sequence);
    enc.u32(HeaderId::CONN_ID, data.conn_id)
        .u32(HeaderId::SEQ, data.seq);
    if data.flags != 0 {
        enc.u32(HeaderId::FLAGS, data.flags);
    }
    enc.finish(payload_len)
}

/// Encodes the answer to a latency probe (Go's LatencyHandler reply, spec §6).
pub(crate) fn latency_reply(
    out: &mut BytesMut,
    sequence: i32,
    probe_sequence: i32,
    probe_time: Option<&[u8]>,
) -> Result<(), EncodeError> {
    edge::LatencyReply {
        reply_for: probe_sequence,
        probe_time,
    }
    .encode(sequence, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::{Decoded, Decoder, Limits};

    fn decoded(build: impl FnOnce(&mut BytesMut)) -> Frame {
        let mut out = BytesMut::new();
        build(&mut out);
        let mut dec = Decoder::new(Limits::DEFAULT);
        dec.extend_from_slice(&out);
        match dec.decode().unwrap() {
            Decoded::Frame(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_and_fin_are_classified_by_conn_id() {
        let f = decoded(|o| {
            data_head(o, 9, 7, 3, false, 4).unwrap();
            o.extend_from_slice(b"ping");
        });
        match classify(f).unwrap() {
            Inbound::Data {
                conn_id: 7,
                payload,
                fin: false,
            } => assert_eq!(&payload[..], b"ping"),
            other => panic!("{other:?}"),
        }
        let f = decoded(|o| data_head(o, 10, 7, 4, true, 0).unwrap());
        assert!(matches!(
            classify(f).unwrap(),
            Inbound::Data { fin: true, .. }
        ));
    }

    #[test]
    fn replies_are_matched_by_reply_for_and_read() {
        let f = decoded(|o| {
            edge::StateConnected {
                conn_id: 1,
                seq: 0,
                reply_for: Some(5),
                public_key: Some(&[9; 32]),
                stickiness_token: None,
            }
            .encode(-1, o)
            .unwrap();
        });
        let Inbound::Reply { reply_for, frame } = classify(f).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(reply_for, 5);
        assert_eq!(
            connect_reply(&frame).unwrap(),
            ConnectReply::Connected(Some(Bytes::from_static(&[9; 32])), None)
        );
        // A sticky service's reply names the terminator reached.
        let f = decoded(|o| {
            edge::StateConnected {
                conn_id: 1,
                seq: 0,
                reply_for: Some(6),
                public_key: None,
                stickiness_token: Some(b"t-1"),
            }
            .encode(-1, o)
            .unwrap();
        });
        let Inbound::Reply { frame, .. } = classify(f).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(
            connect_reply(&frame).unwrap(),
            ConnectReply::Connected(None, Some(Bytes::from_static(b"t-1")))
        );

        let f = decoded(|o| {
            edge::StateClosed {
                conn_id: 1,
                seq: 0,
                reply_for: Some(6),
                reason: b"Invalid Session",
            }
            .encode(-1, o)
            .unwrap();
        });
        let Inbound::Reply { frame, .. } = classify(f).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(
            connect_reply(&frame).unwrap(),
            ConnectReply::Refused("Invalid Session".into())
        );
    }

    #[test]
    fn unsolicited_close_dial_and_probe() {
        let f = decoded(|o| {
            edge::StateClosed {
                conn_id: 3,
                seq: 2,
                reply_for: None,
                reason: b"session closed",
            }
            .encode(8, o)
            .unwrap();
        });
        let Inbound::Closed { conn_id, reason } = classify(f).unwrap() else {
            panic!()
        };
        assert_eq!((conn_id, close_cause(&reason)), (3, CloseCause::Revoked));

        let f = decoded(|o| {
            edge::Dial {
                conn_id: 4,
                seq: 0,
                caller_id: b"alice",
                public_key: Some(&[1; 32]),
                app_data: Some(b"{\"hint\":1}"),
                session_token: b"tok",
            }
            .encode(11, o)
            .unwrap();
        });
        let Inbound::Dial {
            listener,
            sequence,
            public_key,
            caller_id,
            app_data,
        } = classify(f).unwrap()
        else {
            panic!()
        };
        assert_eq!((listener, sequence), (4, 11));
        assert_eq!(public_key.unwrap().len(), 32);
        assert_eq!(&caller_id[..], b"alice");
        assert_eq!(app_data.as_deref(), Some(&b"{\"hint\":1}"[..]));

        let f = decoded(|o| {
            edge::LatencyProbe {
                probe_time: Some(&7u64.to_le_bytes()),
            }
            .encode(12, o)
            .unwrap();
        });
        let Inbound::LatencyProbe {
            sequence,
            probe_time,
        } = classify(f).unwrap()
        else {
            panic!()
        };
        let reply = decoded(|o| latency_reply(o, 13, sequence, probe_time.as_deref()).unwrap());
        let parsed = edge::LatencyReply::parse(&reply).unwrap();
        assert_eq!(parsed.reply_for, 12);
        assert_eq!(parsed.probe_time, Some(&7u64.to_le_bytes()[..]));
    }

    #[test]
    fn close_reasons_and_invalid_session_prefixes() {
        assert_eq!(close_cause(b"closed by peer"), CloseCause::PeerClosed);
        assert_eq!(close_cause(b"session ended"), CloseCause::Revoked);
        assert_eq!(close_cause(b"peer is gone"), CloseCause::Failed);
        assert!(is_invalid_session("Invalid Session"));
        assert!(is_invalid_session(""));
        assert!(is_invalid_session("Inv"));
        assert!(!is_invalid_session(
            "service has no terminators on this router"
        ));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let f = decoded(|o| {
            weft_wire::FrameEncoder::new(o, ContentType::DATA, 1)
                .finish(0)
                .unwrap();
        });
        assert!(classify(f).is_err(), "Data without a conn id");
        let f = decoded(|o| {
            weft_wire::FrameEncoder::new(o, ContentType::STATE_CONNECTED, 1)
                .bytes(HeaderId::REPLY_FOR, &[1])
                .finish(0)
                .unwrap();
        });
        assert!(classify(f).is_err(), "short reply-for header");
    }
}
