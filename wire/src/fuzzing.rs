//! Entry points shared by the fuzz targets in `fuzz/` and the corpus test that replays
//! their corpus in ordinary `cargo test` runs. Each function panics only on a real bug
//! (a broken invariant), never on bad input.

use bytes::BytesMut;

use crate::edge::EdgeMessage;
use crate::{Decoded, Decoder, Limits};

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

fn check_frame_round_trip(frame: &crate::Frame, limits: &Limits) {
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
