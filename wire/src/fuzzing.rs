//! Entry points shared by the fuzz targets in `fuzz/` and the corpus test that replays
//! their corpus in ordinary `cargo test` runs. Each function panics only on a real bug
//! (a broken invariant), never on bad input.

use bytes::BytesMut;

use crate::control::{ControlMessage, pb};
use crate::edge::EdgeMessage;
use crate::link::{LinkClose, LinkCredit, LinkData, LinkHeartbeat, LinkHeartbeatAck, LinkHello};
use crate::{Decoded, Decoder, Frame, Limits};

/// Feeds `data` to a decoder in chunks whose sizes come from the input itself, decodes
/// every frame, parses each as an edge message, and checks that a parsed message
/// re-encodes to a frame that parses to the same message.
pub fn decode_stream(data: &[u8]) {
    let Some((&chunk_seed, stream)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_headers_len: 4096,
        max_body_len: 64 * 1024,
        max_header_entries: 32,
    };
    let mut decoder = Decoder::with_capacity(limits, 256);
    let chunk = usize::from(chunk_seed % 64) + 1;
    for piece in stream.chunks(chunk) {
        decoder.extend_from_slice(piece);
        loop {
            match decoder.decode() {
                Ok(Decoded::Frame(frame)) => check_frame_round_trip(&frame, &limits),
                Ok(Decoded::NeedMore { additional }) => {
                    assert!(additional > 0, "NeedMore must ask for at least one byte");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

fn check_frame_round_trip(frame: &Frame, limits: &Limits) {
    let mut out = BytesMut::new();
    if frame.encode(&mut out).is_err() {
        return;
    }
    let mut again = Decoder::new(*limits);
    again.extend_from_slice(&out);
    match again.decode() {
        Ok(Decoded::Frame(copy)) => assert_eq!(&copy, frame, "frame round trip"),
        other => panic!("re-encoded frame did not decode: {other:?}"),
    }
    let Ok(message) = EdgeMessage::parse(frame) else {
        return;
    };
    let mut out = BytesMut::new();
    if message.encode(frame.sequence(), &mut out).is_err() {
        return;
    }
    // Re-encoding may add headers with their canonical width, so allow the larger
    // header block of the canonical form.
    let mut again = Decoder::new(Limits {
        max_headers_len: u32::MAX,
        max_body_len: u32::MAX,
        max_header_entries: u16::MAX,
    });
    again.extend_from_slice(&out);
    let Ok(Decoded::Frame(copy)) = again.decode() else {
        panic!("re-encoded {:?} did not decode", frame.content_type());
    };
    let reparsed = EdgeMessage::parse(&copy);
    assert_eq!(reparsed.as_ref(), Ok(&message), "message round trip");
}

/// Decodes `data` as a stream of frames (chunked as [`decode_stream`] does) and parses
/// each as every control-channel message (protobuf bodies) and every link message; each
/// message that parses must re-encode to a frame that parses to the same message.
pub fn control_and_link(data: &[u8]) {
    let Some((&chunk_seed, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::with_capacity(Limits::DEFAULT, 256);
    let chunk = usize::from(chunk_seed % 64) + 1;
    for piece in stream.chunks(chunk) {
        decoder.extend_from_slice(piece);
        loop {
            match decoder.decode() {
                Ok(Decoded::Frame(frame)) => {
                    control_round_trip::<pb::RouterHello>(&frame);
                    control_round_trip::<pb::HelloAck>(&frame);
                    control_round_trip::<pb::StateSync>(&frame);
                    control_round_trip::<pb::StateUpdate>(&frame);
                    control_round_trip::<pb::CreateTerminatorRequest>(&frame);
                    control_round_trip::<pb::CreateTerminatorResponse>(&frame);
                    control_round_trip::<pb::RemoveTerminatorRequest>(&frame);
                    control_round_trip::<pb::ErrorReply>(&frame);
                    link_round_trip(&frame);
                }
                Ok(Decoded::NeedMore { additional }) => {
                    assert!(additional > 0, "NeedMore must ask for at least one byte");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

/// The one frame in `bytes`.
fn reframe(bytes: &[u8]) -> Frame {
    let mut again = Decoder::new(Limits {
        max_headers_len: u32::MAX,
        max_body_len: u32::MAX,
        max_header_entries: u16::MAX,
    });
    again.extend_from_slice(bytes);
    match again.decode() {
        Ok(Decoded::Frame(frame)) => frame,
        other => panic!("a re-encoded message did not decode: {other:?}"),
    }
}

fn control_round_trip<M: ControlMessage + PartialEq + std::fmt::Debug>(frame: &Frame) {
    let Ok(message) = M::decode_frame(frame) else {
        return;
    };
    let mut out = BytesMut::new();
    if message
        .encode_frame(frame.sequence(), None, &mut out)
        .is_err()
    {
        return;
    }
    let copy = reframe(&out);
    assert_eq!(
        M::decode_frame(&copy).as_ref(),
        Ok(&message),
        "control round trip"
    );
}

fn link_round_trip(frame: &Frame) {
    let mut out = BytesMut::new();
    let seq = frame.sequence();
    if let Ok(m) = LinkHello::parse(frame) {
        if m.encode(seq, &mut out).is_ok() {
            assert_eq!(LinkHello::parse(&reframe(&out)).as_ref(), Ok(&m));
        }
    } else if let Ok(m) = LinkData::parse(frame) {
        if m.encode(seq, &mut out).is_ok() {
            assert_eq!(LinkData::parse(&reframe(&out)).as_ref(), Ok(&m));
        }
    } else if let Ok(m) = LinkCredit::parse(frame) {
        if m.encode(seq, &mut out).is_ok() {
            assert_eq!(LinkCredit::parse(&reframe(&out)).as_ref(), Ok(&m));
        }
    } else if let Ok(m) = LinkClose::parse(frame) {
        if m.encode(seq, &mut out).is_ok() {
            assert_eq!(LinkClose::parse(&reframe(&out)).as_ref(), Ok(&m));
        }
    } else if let Ok(m) = LinkHeartbeat::parse(frame) {
        if m.encode(seq, &mut out).is_ok() {
            assert_eq!(LinkHeartbeat::parse(&reframe(&out)).as_ref(), Ok(&m));
        }
    } else if let Ok(m) = LinkHeartbeatAck::parse(frame) {
        if m.encode(seq, &mut out).is_ok() {
            assert_eq!(LinkHeartbeatAck::parse(&reframe(&out)).as_ref(), Ok(&m));
        }
    }
}
