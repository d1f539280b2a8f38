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

/// Replays the committed corpora of `decode_frame` and `control_link` (fuzz/corpus/)
/// through the same entry points, so every input the fuzzer found interesting stays a
/// regression test in ordinary test runs.
#[cfg(test)]
mod corpus {

    use std::path::PathBuf;

    #[test]
    fn decode_frame_corpus() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_frame");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            super::decode_stream(&data);
            inputs += 1;
        }
        assert!(
            inputs >= 20,
            "corpus at {} has only {inputs} inputs",
            dir.display()
        );
    }

    #[test]
    fn control_link_corpus() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_link");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            super::control_and_link(&data);
            inputs += 1;
        }
        assert!(
            inputs >= 10,
            "corpus at {} has only {inputs} inputs",
            dir.display()
        );
    }

    /// One of each control and link message, as the router and controller send them: each
    /// round-trips through the fuzz entry point; with `WEFT_WRITE_SEEDS=1` they are written
    /// as the seed corpus of `control_link`.
    #[test]
    fn control_link_seeds_round_trip() {
        use crate::control::{ControlMessage, pb};
        use crate::link::{
            LinkClose, LinkCredit, LinkData, LinkHeartbeat, LinkHeartbeatAck, LinkHello,
        };
        use bytes::BytesMut;
        let api = pb::ApiSession {
            id: "a1".into(),
            token: "tok".into(),
            identity_id: "i1".into(),
            identity_name: "alice".into(),
            cert_fingerprints: vec!["ab".repeat(20)],
            expires_at_unix_ms: 1_700_000_000_000,
        };
        let session = pb::Session {
            id: "s1".into(),
            token: "stok".into(),
            api_session_id: "a1".into(),
            service_id: "svc".into(),
            r#type: pb::SessionType::Dial as i32,
            identity_id: "i1".into(),
        };
        let access = pb::RouterAccess {
            id: "i1".into(),
            router_ids: vec!["r1".into(), "r2".into()],
        };
        let terminator = pb::Terminator {
            id: "t1".into(),
            service_id: "svc".into(),
            router_id: "r1".into(),
            cost: 3,
            host_public_key: vec![7; 32],
            ..Default::default()
        };
        let mut seeds: Vec<BytesMut> = Vec::new();
        let mut push = |encode: &dyn Fn(&mut BytesMut)| {
            let mut out = BytesMut::from(&[7u8][..]);
            encode(&mut out);
            seeds.push(out);
        };
        push(&|o| {
            pb::RouterHello {
                router_id: "r1".into(),
                version: "0.1.0".into(),
                edge_listeners: vec!["tls://localhost:3022".into()],
                ..Default::default()
            }
            .encode_frame(1, None, o)
            .unwrap();
        });
        push(&|o| {
            pb::HelloAck {
                controller_id: "c".into(),
                version: "0.1.0".into(),
            }
            .encode_frame(2, Some(1), o)
            .unwrap();
        });
        push(&|o| {
            pb::StateSync {
                revision: 4,
                api_sessions: vec![api.clone()],
                sessions: vec![session.clone()],
                terminators: vec![terminator.clone()],
                identity_routers: vec![access.clone()],
                service_routers: vec![access.clone()],
                ..Default::default()
            }
            .encode_frame(3, None, o)
            .unwrap();
        });
        push(&|o| {
            pb::StateUpdate {
                revision: 5,
                api_sessions_added: vec![api.clone()],
                sessions_removed: vec!["s0".into()],
                identity_routers_upserted: vec![access.clone()],
                service_routers_removed: vec!["svc".into()],
                ..Default::default()
            }
            .encode_frame(4, None, o)
            .unwrap();
        });
        push(&|o| {
            pb::CreateTerminatorRequest {
                session_id: "s1".into(),
                address: "1:7".into(),
                cost: 1,
                host_public_key: vec![9; 32],
                ..Default::default()
            }
            .encode_frame(5, None, o)
            .unwrap();
        });
        push(&|o| {
            pb::CreateTerminatorResponse {
                terminator: Some(terminator.clone()),
            }
            .encode_frame(6, Some(5), o)
            .unwrap();
        });
        push(&|o| {
            pb::RemoveTerminatorRequest {
                terminator_id: "t1".into(),
            }
            .encode_frame(7, None, o)
            .unwrap();
        });
        push(&|o| {
            pb::ErrorReply {
                code: "NOT_FOUND".into(),
                message: "no such session".into(),
            }
            .encode_frame(8, Some(7), o)
            .unwrap();
        });
        push(&|o| {
            LinkHello {
                router_id: "r1",
                connection: 1,
                frame_cost: 256,
            }
            .encode(1, o)
            .unwrap()
        });
        push(&|o| {
            LinkData {
                circuit_id: 9,
                seq: 1,
                flags: 1,
                payload: b"payload",
            }
            .encode(2, o)
            .unwrap();
        });
        push(&|o| {
            LinkCredit {
                circuit_id: 9,
                credit: 65_536,
                frames: 4,
            }
            .encode(3, o)
            .unwrap();
        });
        push(&|o| {
            LinkClose {
                circuit_id: 9,
                reason: b"closed by peer",
                flags: 0,
            }
            .encode(4, o)
            .unwrap();
        });
        push(&|o| LinkHeartbeat { stamp: 123_456_789 }.encode(5, o).unwrap());
        push(&|o| {
            LinkHeartbeatAck { stamp: 123_456_789 }
                .encode(6, o)
                .unwrap()
        });
        assert_eq!(seeds.len(), 14);
        for seed in &seeds {
            // Each seed is one whole frame after the chunking byte.
            let mut d = crate::Decoder::new(crate::Limits::DEFAULT);
            d.extend_from_slice(&seed[1..]);
            assert!(matches!(d.decode(), Ok(crate::Decoded::Frame(_))));
            super::control_and_link(seed);
        }
        if std::env::var_os("WEFT_WRITE_SEEDS").is_some() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control_link");
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
            }
        }
    }
}
