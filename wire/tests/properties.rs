//! Property tests of the V2 codec: round trips, chunking independence, no panics on
//! any input, and limits enforced before allocation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use weft_wire::edge::{Bind, Connect, Credit, Data, Dial, EdgeMessage, Precedence, StateClosed};
use weft_wire::{
    ContentType, DecodeError, Decoded, Decoder, FrameEncoder, HeaderId, Limits, PREFIX_LEN, Prefix,
};

/// A frame as plain data, for generating and comparing.
#[derive(Clone, Debug, PartialEq)]
struct RawFrame {
    content_type: i32,
    sequence: i32,
    headers: Vec<(i32, Vec<u8>)>,
    body: Vec<u8>,
}

fn raw_frame() -> impl Strategy<Value = RawFrame> {
    (
        any::<i32>(),
        any::<i32>(),
        vec((any::<i32>(), vec(any::<u8>(), 0..40)), 0..8),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(content_type, sequence, headers, body)| RawFrame {
            content_type,
            sequence,
            headers,
            body,
        })
}

fn encode(frame: &RawFrame, out: &mut BytesMut) {
    let mut enc = FrameEncoder::new(out, ContentType(frame.content_type), frame.sequence);
    for (id, value) in &frame.headers {
        enc.bytes(HeaderId(*id), value);
    }
    enc.finish_with_body(&frame.body).unwrap();
}

fn to_raw(frame: &weft_wire::Frame) -> RawFrame {
    RawFrame {
        content_type: frame.content_type().0,
        sequence: frame.sequence(),
        headers: frame
            .headers()
            .iter()
            .map(|(id, v)| (id.0, v.as_bytes().to_vec()))
            .collect(),
        body: frame.body().to_vec(),
    }
}

/// Feeds `stream` in pieces cut at `cuts` (positions, any order) and collects frames.
fn decode_chunked(
    stream: &[u8],
    cuts: &[usize],
    limits: Limits,
) -> Result<Vec<RawFrame>, DecodeError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    let mut decoder = Decoder::with_capacity(limits, 16);
    let mut frames = Vec::new();
    for pair in points.windows(2) {
        decoder.extend_from_slice(&stream[pair[0]..pair[1]]);
        while let Decoded::Frame(frame) = decoder.decode()? {
            frames.push(to_raw(&frame));
        }
    }
    Ok(frames)
}

fn edge_message() -> impl Strategy<Value = (i32, Vec<u8>)> {
    let bytes = || vec(any::<u8>(), 0..48);
    let opt = || proptest::option::of(vec(any::<u8>(), 0..48));
    let precedence = prop_oneof![
        Just(Precedence::Default),
        Just(Precedence::Required),
        Just(Precedence::Failed)
    ];
    let connect = (
        any::<u32>(),
        any::<u32>(),
        opt(),
        opt(),
        opt(),
        opt(),
        bytes(),
    )
        .prop_map(|(conn_id, seq, caller, pk, ti, app, token)| {
            let mut out = BytesMut::new();
            Connect {
                conn_id,
                seq,
                caller_id: caller.as_deref(),
                public_key: pk.as_deref(),
                terminator_identity: ti.as_deref(),
                app_data: app.as_deref(),
                stickiness_token: None,
                session_token: &token,
            }
            .encode(1, &mut out)
            .unwrap();
            out.to_vec()
        });
    let bind = (
        any::<u32>(),
        opt(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(precedence),
        bytes(),
    )
        .prop_map(|(conn_id, pk, cost, precedence, token)| {
            let mut out = BytesMut::new();
            Bind {
                conn_id,
                seq: 0,
                caller_id: Some(b"host"),
                public_key: pk.as_deref(),
                terminator_identity: None,
                cost,
                precedence,
                session_token: &token,
            }
            .encode(2, &mut out)
            .unwrap();
            out.to_vec()
        });
    let data = (any::<u32>(), any::<u32>(), any::<u32>(), bytes()).prop_map(
        |(conn_id, seq, flags, payload)| {
            let mut out = BytesMut::new();
            Data {
                conn_id,
                seq,
                flags,
                payload: &payload,
            }
            .encode(3, &mut out)
            .unwrap();
            out.to_vec()
        },
    );
    let closed = (any::<u32>(), proptest::option::of(any::<i32>()), bytes()).prop_map(
        |(conn_id, reply_for, reason)| {
            let mut out = BytesMut::new();
            StateClosed {
                conn_id,
                seq: 0,
                reply_for,
                reason: &reason,
            }
            .encode(4, &mut out)
            .unwrap();
            out.to_vec()
        },
    );
    let dial = (any::<u32>(), bytes(), opt(), opt(), bytes()).prop_map(
        |(conn_id, caller, pk, app, token)| {
            let mut out = BytesMut::new();
            Dial {
                conn_id,
                seq: 0,
                caller_id: &caller,
                public_key: pk.as_deref(),
                app_data: app.as_deref(),
                session_token: &token,
            }
            .encode(5, &mut out)
            .unwrap();
            out.to_vec()
        },
    );
    let credit = (any::<u32>(), any::<u32>()).prop_map(|(conn_id, bytes)| {
        let mut out = BytesMut::new();
        Credit { conn_id, bytes }.encode(6, &mut out).unwrap();
        out.to_vec()
    });
    prop_oneof![connect, bind, data, closed, dial, credit].prop_map(|bytes| (0, bytes))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn encode_then_decode_is_identity(frame in raw_frame()) {
        let mut wire = BytesMut::new();
        encode(&frame, &mut wire);
        let frames = decode_chunked(&wire, &[], Limits::DEFAULT).unwrap();
        prop_assert_eq!(frames, vec![frame]);
    }

    #[test]
    fn any_chunking_decodes_the_same(
        frames in vec(raw_frame(), 1..6),
        cuts in vec(any::<usize>(), 0..40),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut wire);
        }
        let whole = decode_chunked(&wire, &[], Limits::DEFAULT).unwrap();
        let chunked = decode_chunked(&wire, &cuts, Limits::DEFAULT).unwrap();
        prop_assert_eq!(&whole, &frames);
        prop_assert_eq!(chunked, frames);
    }

    #[test]
    fn decode_never_panics(
        bytes in vec(any::<u8>(), 0..600),
        cuts in vec(any::<usize>(), 0..10),
        valid_prefix in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if valid_prefix && bytes.len() >= 4 {
            // Give random bytes the real magic so the header parser is reached too.
            bytes[..4].copy_from_slice(&weft_wire::MAGIC_V2);
        }
        let limits = Limits { max_headers_len: 256, max_body_len: 256, max_header_entries: 8 };
        if let Ok(frames) = decode_chunked(&bytes, &cuts, limits) {
            for f in frames {
                prop_assert!(f.body.len() <= 256);
            }
        }
    }

    #[test]
    fn over_limit_lengths_are_rejected_before_allocation(
        headers_len in any::<u32>(),
        body_len in any::<u32>(),
        max_headers_len in 0u32..100_000,
        max_body_len in 0u32..2_000_000,
    ) {
        let limits = Limits { max_headers_len, max_body_len, max_header_entries: 64 };
        let prefix = Prefix { content_type: ContentType::DATA, sequence: 1, headers_len, body_len };
        let mut decoder = Decoder::with_capacity(limits, PREFIX_LEN);
        decoder.extend_from_slice(&prefix.to_bytes());
        let capacity_before = decoder.buffer_mut().capacity();
        let result = decoder.decode();
        if headers_len > max_headers_len {
            prop_assert_eq!(result, Err(DecodeError::HeadersTooLong { len: headers_len, max: max_headers_len }));
            prop_assert_eq!(decoder.buffer_mut().capacity(), capacity_before);
        } else if body_len > max_body_len {
            prop_assert_eq!(result, Err(DecodeError::BodyTooLong { len: body_len, max: max_body_len }));
            prop_assert_eq!(decoder.buffer_mut().capacity(), capacity_before);
        } else {
            let complete = headers_len == 0 && body_len == 0;
            prop_assert_eq!(matches!(result, Ok(Decoded::Frame(_))), complete);
            // Growth is bounded by the announced (accepted) frame length.
            prop_assert!(decoder.buffer_mut().capacity() <= 2 * prefix.frame_len() + 64);
        }
    }

    #[test]
    fn typed_edge_messages_round_trip((_, wire) in edge_message()) {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        decoder.extend_from_slice(&wire);
        let Ok(Decoded::Frame(frame)) = decoder.decode() else {
            return Err(TestCaseError::fail("no frame"));
        };
        let msg = EdgeMessage::parse(&frame).unwrap();
        let mut again = BytesMut::new();
        msg.encode(frame.sequence(), &mut again).unwrap();
        prop_assert_eq!(&again[..], &wire[..]);
    }
}
